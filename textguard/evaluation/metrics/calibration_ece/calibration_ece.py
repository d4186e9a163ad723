"""Expected calibration error of multi-label probabilities, per label, macro and micro (all cells pooled).

An `evaluate` metric module shipped with textguard; load it by path. Equal-width bins (15 by default,
the same rule as `textguard.calibration.expected_calibration_error`, so `micro_ece` equals the ECE the
training run logs): ECE = sum over bins of (share of rows in the bin) x |mean probability - frequency|.
"""

from __future__ import annotations

from typing import Any

import evaluate
import numpy as np

from textguard.evaluation import measures
from textguard.evaluation.metric_info import multilabel_metric_info

_DESCRIPTION = "Per-label, macro and micro expected calibration error (equal-width bins)."
_KWARGS_DESCRIPTION = """
Args:
    predictions: probabilities, one list of floats per row.
    references: multi-hot gold labels, same shape.
    n_bins: number of equal-width probability bins (default 15).
    label_names: names of the label columns (default label_0, label_1, ...).
Returns:
    ece_<label>, macro_ece, micro_ece.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CalibrationEce(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return multilabel_metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, predictions="float64")

    def _compute(
        self,
        predictions: Any,
        references: Any,
        n_bins: int = measures.DEFAULT_ECE_BINS,
        label_names: list[str] | None = None,
    ) -> dict[str, float]:
        probs = np.asarray([np.asarray(row) for row in predictions], dtype=np.float64)
        gold = np.asarray([np.asarray(row) for row in references], dtype=np.float64)
        names = list(label_names) if label_names else [f"label_{i}" for i in range(gold.shape[1])]
        values = np.array(
            [
                measures.expected_calibration_error(gold[:, j], probs[:, j], n_bins=n_bins)[0]
                for j in range(len(names))
            ]
        )
        out = {f"ece_{name}": float(value) for name, value in zip(names, values, strict=True)}
        out["macro_ece"] = float(measures.nanmean(values))
        out["micro_ece"] = float(
            measures.expected_calibration_error(gold.ravel(), probs.ravel(), n_bins=n_bins)[0]
        )
        return out
