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
        names = list(label_names) if label_names else [f"label_{i}" for i in range(gold.shape[1])]
        counts = measures.confusion_counts(gold, pred)
        per_label = {
            "precision": measures.precision(counts)[0],
            "recall": measures.recall(counts)[0],
            "f1": measures.f1(counts)[0],
        }
        pooled = counts.summed()
        pooled_values = {
            "precision": measures.precision(pooled)[0, 0],
            "recall": measures.recall(pooled)[0, 0],
            "f1": measures.f1(pooled)[0, 0],
        }
        out: dict[str, float] = {"n_rows": float(gold.shape[0])}
        for measure, values in per_label.items():
            for name, value in zip(names, values, strict=True):
                out[f"{measure}_{name}"] = float(value)
            out[f"macro_{measure}"] = float(measures.nanmean(values))
            out[f"micro_{measure}"] = float(pooled_values[measure])
        for column, name in enumerate(names):
            out[f"support_{name}"] = float(gold[:, column].sum())
            out[f"predicted_{name}"] = float(pred[:, column].sum())
        return out
