"""Threshold-free ranking quality for multi-label scores: PR-AUC (average precision) and ROC-AUC.

An `evaluate` metric module shipped with textguard; load it by path. Per label, macro (mean over labels
where the value is defined) and micro (all (row, label) cells pooled, as scikit-learn's
``average="micro"``). PR-AUC is the step-sum average precision, not a trapezoid, as in scikit-learn.
"""

from __future__ import annotations

from typing import Any

import evaluate
import numpy as np

from textguard.evaluation import measures
from textguard.evaluation.metric_info import multilabel_metric_info

_DESCRIPTION = "Per-label, macro and micro PR-AUC (average precision) and ROC-AUC for multi-label scores."
_KWARGS_DESCRIPTION = """
Args:
    predictions: scores (probabilities), one list of floats per row.
    references: multi-hot gold labels, same shape.
    label_names: names of the label columns (default label_0, label_1, ...).
Returns:
    pr_auc_<label>, roc_auc_<label>, macro_pr_auc, macro_roc_auc, micro_pr_auc, micro_roc_auc
    (NaN where undefined: no positives, or for ROC-AUC no negatives).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilabelRanking(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return multilabel_metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, predictions="float64")

    def _compute(
        self, predictions: Any, references: Any, label_names: list[str] | None = None
    ) -> dict[str, float]:
        scores = np.asarray([np.asarray(row) for row in predictions], dtype=np.float64)
        gold = np.asarray([np.asarray(row) for row in references], dtype=bool)
        return measures.ranking_metrics(gold, scores, label_names)
