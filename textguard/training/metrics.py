"""Multi-label metrics on probabilities the one post-processing path produced.

Used by the Trainer at each evaluation step, for the test split and for the per-language and
per-source tables. Probabilities always come from `textguard.postprocess.probabilities`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from textguard.postprocess import decide, probabilities
from textguard.spec import ModelSpec


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, thresholds: Sequence[float], labels: Sequence[str]
) -> dict[str, float]:
    """The evaluation metric set at the given thresholds, under the names `textguard evaluate` uses.

    precision / recall / F1 per label with macro and micro averages, support_/predicted_<label>,
    n_rows, PR-AUC and ROC-AUC (all from `textguard.evaluation.measures`, the one implementation:
    undefined values are NaN and macro averages skip them), plus `support` (rows) and `positives`
    (rows with any label) for the slice tables and the model card.
    """
    from textguard.evaluation import measures

    y_true = np.asarray(y_true).astype(bool)
    probs = np.asarray(probs, dtype=np.float64)
    predicted = probs >= np.asarray(thresholds)[None, :]
    metrics = {
        **measures.decision_metrics(y_true, predicted, labels),
        **measures.ranking_metrics(y_true, probs, labels),
    }
    metrics["support"] = float(len(y_true))
    metrics["positives"] = float(y_true.any(axis=1).sum())
    return metrics


def finite(metrics: dict[str, float]) -> dict[str, float]:
    """The defined (non-NaN) metrics: what goes into a spec, whose JSON has no NaN."""
    return {key: value for key, value in metrics.items() if math.isfinite(value)}


def spec_metrics(logits: np.ndarray, y_true: np.ndarray, spec: ModelSpec) -> dict[str, float]:
    """Metrics of raw logits under a spec's temperature and thresholds."""
    probs = probabilities(logits, spec)
    return classification_metrics(y_true, probs, spec.threshold_list(), spec.labels)


def sliced_metrics(
    y_true: np.ndarray, probs: np.ndarray, spec: ModelSpec, groups: Sequence[Any], min_support: int = 1
) -> dict[str, dict[str, float]]:
    """`classification_metrics` per group value (e.g. language or source), plus the positive rate."""
    groups_array = np.asarray([str(group) for group in groups])
    table: dict[str, dict[str, float]] = {}
    for value in sorted(set(groups_array.tolist())):
        rows = groups_array == value
        if rows.sum() < min_support:
            continue
        row_metrics = classification_metrics(y_true[rows], probs[rows], spec.threshold_list(), spec.labels)
        row_metrics["flagged_rate"] = float(decide(probs[rows], spec).any(axis=1).mean())
        table[value] = row_metrics
    return table
