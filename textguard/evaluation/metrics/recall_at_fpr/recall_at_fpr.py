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

_DESCRIPTION = "Per-label, macro and micro recall at a fixed false-positive rate."
_KWARGS_DESCRIPTION = """
Args:
    predictions: scores (probabilities), one list of floats per row.
    references: multi-hot gold labels, same shape.
    max_fpr: the false-positive rate budget (default 0.01).
    label_names: names of the label columns (default label_0, label_1, ...).
Returns:
    recall_at_fpr_<p>pct_<label>, macro_recall_at_fpr_<p>pct, micro_recall_at_fpr_<p>pct.
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
        scores = np.asarray([np.asarray(row) for row in predictions], dtype=np.float64)
        gold = np.asarray([np.asarray(row) for row in references], dtype=bool)
        return measures.recall_at_fpr_metrics(gold, scores, max_fpr, label_names)
