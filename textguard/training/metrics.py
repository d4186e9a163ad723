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
    """macro/micro F1, per-label F1, precision, recall and PR-AUC (average precision).

    The definitions are `textguard.evaluation.measures`, the ones `textguard evaluate` reports:
    undefined values are NaN (recall of a label without positives, precision of a label never
    predicted, PR-AUC without positives) and macro averages skip them, so a slice is not punished
    for not containing a label.
    """
    from textguard.evaluation import measures

    y_true = np.asarray(y_true).astype(bool)
    probs = np.asarray(probs, dtype=np.float64)
    predicted = probs >= np.asarray(thresholds)[None, :]
    counts = measures.confusion_counts(y_true, predicted)
    f1, precision, recall = (
        measures.f1(counts)[0],
        measures.precision(counts)[0],
        measures.recall(counts)[0],
    )
    pr_auc = np.array([measures.average_precision(y_true[:, k], probs[:, k])[0] for k in range(len(labels))])
    metrics: dict[str, float] = {
        "macro_f1": float(measures.nanmean(f1)),
        "micro_f1": float(measures.f1(counts.summed())[0, 0]),
        "macro_pr_auc": float(measures.nanmean(pr_auc)),
        "support": float(len(y_true)),
        "positives": float(y_true.any(axis=1).sum()),
    }
    for column, label in enumerate(labels):
        metrics[f"f1_{label}"] = float(f1[column])
        metrics[f"precision_{label}"] = float(precision[column])
        metrics[f"recall_{label}"] = float(recall[column])
        metrics[f"pr_auc_{label}"] = float(pr_auc[column])
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
