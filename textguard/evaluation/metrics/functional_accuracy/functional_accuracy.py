"""HateCheck-style functional-test accuracy: overall, per functionality, per language, hateful vs not.

An `evaluate` metric module shipped with textguard; load it by path. A case is passed when the model's
binary decision (any label flagged) equals its gold (hateful / non-hateful). "Balanced" accuracy is the
mean of the accuracy on hateful and on non-hateful cases, so flagging everything or nothing scores 50%.
Hard negatives are the functionalities whose name ends in `_nh`, reported on their own.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
import numpy as np

from textguard.evaluation import measures

_DESCRIPTION = (
    "Functional test-suite accuracy (HateCheck format) overall, per functionality and per language."
)
_KWARGS_DESCRIPTION = """
Args:
    predictions: 1 when the model flagged the case (any label), else 0.
    references: 1 when the case is hateful, else 0.
    functionality: the case's functionality (e.g. counter_quote_nh).
    language: the case's language (e.g. en).
Returns:
    accuracy, balanced_accuracy, hateful_accuracy, non_hateful_accuracy, hard_negative_accuracy, n_cases,
    functionality: {name: {"accuracy", "n_cases"}},
    language: {code: {"accuracy", "balanced_accuracy", "n_cases"}}.
"""


def _balanced(correct: np.ndarray, hateful: np.ndarray) -> float:
    parts = [measures.accuracy(correct[group])[0] for group in (hateful, ~hateful) if group.any()]
    return float(np.mean(parts)) if len(parts) == 2 else float("nan")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FunctionalAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int8"),
                    "references": datasets.Value("int8"),
                    "functionality": datasets.Value("string"),
                    "language": datasets.Value("string"),
                }
            ),
            format="numpy",
        )

    def _compute(
        self, predictions: Any, references: Any, functionality: Any, language: Any
    ) -> dict[str, Any]:
        flagged = np.asarray(predictions, dtype=bool)
        hateful = np.asarray(references, dtype=bool)
        functions = np.asarray(functionality, dtype=str)
        languages = np.asarray(language, dtype=str)
        correct = flagged == hateful
        hard_negative = np.char.endswith(functions, "_nh")

        def share(mask: np.ndarray) -> float:
            return float(measures.accuracy(correct[mask])[0]) if mask.any() else float("nan")

        return {
            "accuracy": share(np.ones_like(correct)),
            "balanced_accuracy": _balanced(correct, hateful),
            "hateful_accuracy": share(hateful),
            "non_hateful_accuracy": share(~hateful),
            "hard_negative_accuracy": share(hard_negative),
            "n_cases": float(correct.size),
            "functionality": {
                name: {"accuracy": share(functions == name), "n_cases": float(np.sum(functions == name))}
                for name in sorted(set(functions.tolist()))
            },
            "language": {
                code: {
                    "accuracy": share(languages == code),
                    "balanced_accuracy": _balanced(correct[languages == code], hateful[languages == code]),
                    "n_cases": float(np.sum(languages == code)),
                }
                for code in sorted(set(languages.tolist()))
            },
        }
