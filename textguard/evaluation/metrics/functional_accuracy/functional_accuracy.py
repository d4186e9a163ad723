"""HateCheck-style functional-test accuracy: overall, per functionality, per language, hateful vs not.

An `evaluate` metric module shipped with textguard; load it by path. The arithmetic is
`textguard.evaluation.measures.functional_report`. A case is passed when the model's binary decision
(any label flagged) equals its gold (hateful / non-hateful). "Balanced" accuracy is the mean of the
accuracy on hateful and on non-hateful cases, so flagging everything or nothing scores 50%. Hard
negatives are the functionalities whose name ends in `_nh`, reported on their own, also per language.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate

from textguard.evaluation import measures

_DESCRIPTION = (
    "Functional test-suite accuracy (HateCheck format) overall, per functionality, per language and "
    "per functionality x language."
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
    language: {code: {"accuracy", "balanced_accuracy", "hard_negative_accuracy", "n_cases",
                      "hard_negative_n_cases"}},
    functionality_language: {name: {code: {"accuracy", "n_cases"}}}.
"""


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
        return measures.functional_report(predictions, references, functionality, language)
