"""Expected calibration error of multi-label probabilities, per label, macro and micro (all cells pooled).

An `evaluate` metric module shipped with textguard; load it by path. The arithmetic is
`textguard.evaluation.measures.calibration_metrics` (the one ECE and binning rule, also used by training's
calibration report, so `micro_ece` equals the ECE the training run logs): equal-width bins, 15 by default,
ECE = sum over bins of (share of rows in the bin) x |mean probability - frequency|.
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
        return measures.calibration_metrics(gold, probs, n_bins, label_names)
