"""Multi-label precision, recall and F1 at fixed decisions, per label and macro/micro averaged.

An `evaluate` metric module shipped with textguard; load it by path:
`evaluate.load("<package>/textguard/evaluation/metrics/multilabel_classification")`.
Undefined values (recall of a label without positives, precision of a never-predicted label) are NaN
and left out of the macro average, as scikit-learn does with ``zero_division=np.nan``.
"""

from __future__ import annotations

from typing import Any

import evaluate
import numpy as np

from textguard.evaluation import measures
from textguard.evaluation.metric_info import multilabel_metric_info

_DESCRIPTION = "Per-label and macro/micro precision, recall and F1 for multi-hot decisions."
_KWARGS_DESCRIPTION = """
Args:
    predictions: multi-hot decisions, one list of 0/1 per row (label columns in `label_names` order).
    references: multi-hot gold labels, same shape.
    label_names: names of the label columns (default label_0, label_1, ...).
Returns:
    precision_<label>, recall_<label>, f1_<label>, support_<label> (positives), predicted_<label>,
    macro_precision, macro_recall, macro_f1, micro_precision, micro_recall, micro_f1, n_rows.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilabelClassification(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return multilabel_metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, predictions="int8")

    def _compute(
        self, predictions: Any, references: Any, label_names: list[str] | None = None
    ) -> dict[str, float]:
        pred = np.asarray([np.asarray(row) for row in predictions], dtype=bool)
        gold = np.asarray([np.asarray(row) for row in references], dtype=bool)
        return measures.decision_metrics(gold, pred, label_names)
