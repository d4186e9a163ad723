"""Recall at a fixed false-positive rate: the best recall of a threshold flagging <= `max_fpr` of negatives.

An `evaluate` metric module shipped with textguard; load it by path. It answers "if we can afford to
flag 1% of clean messages, how much harmful content do we catch?", independent of the model's own
thresholds. The reported name encodes the rate: `recall_at_fpr_1pct_<label>` for max_fpr=0.01.
"""

from __future__ import annotations

from typing import Any

import evaluate
import numpy as np

from textguard.evaluation import measures
from textguard.evaluation.metric_info import multilabel_metric_info
from textguard.evaluation.naming import fpr_measure

_DESCRIPTION = "Per-label, macro and micro recall at a fixed false-positive rate."
_KWARGS_DESCRIPTION = """
Args:
    predictions: scores (probabilities), one list of floats per row.
    references: multi-hot gold labels, same shape.
    max_fpr: the false-positive rate budget (default 0.01).
    label_names: names of the label columns (default label_0, label_1, ...).
Returns:
    recall_at_fpr_<p>pct_<label>, macro_recall_at_fpr_<p>pct, micro_recall_at_fpr_<p>pct, and max_fpr.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RecallAtFpr(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return multilabel_metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, predictions="float64")

    def _compute(
        self,
        predictions: Any,
        references: Any,
        max_fpr: float = 0.01,
        label_names: list[str] | None = None,
    ) -> dict[str, float]:
        if not 0.0 <= max_fpr <= 1.0:
            raise ValueError(f"max_fpr must be within [0, 1], got {max_fpr}")
        scores = np.asarray([np.asarray(row) for row in predictions], dtype=np.float64)
        gold = np.asarray([np.asarray(row) for row in references], dtype=bool)
        names = list(label_names) if label_names else [f"label_{i}" for i in range(gold.shape[1])]
        measure = fpr_measure(max_fpr)
        values = np.array(
            [measures.recall_at_fpr(gold[:, j], scores[:, j], max_fpr)[0] for j in range(len(names))]
        )
        out = {f"{measure}_{name}": float(value) for name, value in zip(names, values, strict=True)}
        out[f"macro_{measure}"] = float(measures.nanmean(values))
        out[f"micro_{measure}"] = float(measures.recall_at_fpr(gold.T.ravel(), scores.T.ravel(), max_fpr)[0])
        return out
