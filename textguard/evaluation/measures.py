"""The one implementation of every metric textguard reports: numpy, weighted, vectorised.

Training (`textguard.training.metrics`, the calibration report), evaluation (the `evaluate` metric
modules in `evaluation/metrics/`, `named_metrics`), the bootstrap behind `compare`, the regression gate
and the figures (`textguard.plots`) all call these functions; none of them computes a metric itself
(tests/unit/test_metric_single_source.py checks it). The metric families: precision / recall / F1
(per label, macro, micro), PR-AUC (average precision) and ROC-AUC, recall at a false-positive rate,
expected calibration error with one binning rule (`bin_index`), accuracy and balanced accuracy
(functional suites).

Every primitive takes row weights of shape [b, n]: one weight vector per bootstrap resample (how many
times each row was drawn), and a single row of ones for the plain estimate. It returns one value per
weight vector. Computing point estimates and confidence intervals with the same code is what keeps a
logged `f1_violent_threat` and its interval in `compare` from ever disagreeing on a definition.

Undefined values are NaN, never 0: recall of a label without positives, precision of a label that was
never predicted, AUCs of a single-class slice. Averages (`macro_*`) skip NaN, so a slice is not punished
for not containing a label; this matches scikit-learn with ``zero_division=np.nan``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Bins of the expected calibration error: the same equal-width rule as textguard.calibration.
DEFAULT_ECE_BINS = 15


def as_weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    """[b, n] float weights; None means one unweighted evaluation."""
    if weights is None:
        return np.ones((1, n), dtype=np.float64)
    weights = np.asarray(weights)
    if weights.dtype not in (np.float32, np.float64):
        # float32 is allowed (the bootstrap's counts are small integers, exact in float32, and half the
        # memory traffic); everything else becomes float64.
        weights = weights.astype(np.float64)
    if weights.ndim == 1:
        weights = weights[None, :]
    if weights.shape[1] != n:
        raise ValueError(f"weights cover {weights.shape[1]} rows, the data has {n}")
    return weights


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def nanmean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over defined values; NaN where none is defined (without numpy's empty-slice warning)."""
    values = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(values)
    return _divide(np.where(defined, values, 0.0).sum(axis=axis), defined.sum(axis=axis))


# -- decisions at fixed thresholds ----------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """Weighted confusion counts, each [b, L]."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    def summed(self) -> Counts:
        """Counts pooled over labels (micro averaging), each [b, 1]."""
        return Counts(*(part.sum(axis=1, keepdims=True) for part in (self.tp, self.fp, self.fn, self.tn)))


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray | None = None) -> Counts:
    """Weighted tp/fp/fn/tn per label for 0/1 matrices [n, L]."""
    truth = np.asarray(y_true).astype(bool)
    pred = np.asarray(y_pred).astype(bool)
    if truth.ndim == 1:
        truth, pred = truth[:, None], pred[:, None]
    w = as_weights(weights, truth.shape[0])
    # One matrix product per cell type: [b, n] @ [n, L]. This is what makes 1000 resamples cheap.
    return Counts(
        tp=(w @ (truth & pred).astype(w.dtype)).astype(np.float64),
        fp=(w @ (~truth & pred).astype(w.dtype)).astype(np.float64),
        fn=(w @ (truth & ~pred).astype(w.dtype)).astype(np.float64),
        tn=(w @ (~truth & ~pred).astype(w.dtype)).astype(np.float64),
    )


def precision(counts: Counts) -> np.ndarray:
    return _divide(counts.tp, counts.tp + counts.fp)


def recall(counts: Counts) -> np.ndarray:
    return _divide(counts.tp, counts.tp + counts.fn)


def f1(counts: Counts) -> np.ndarray:
    # 2TP / (2TP + FP + FN): defined whenever the label occurs or is predicted (as in scikit-learn).
    return _divide(2.0 * counts.tp, 2.0 * counts.tp + counts.fp + counts.fn)


def accuracy(correct: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted share of True in a boolean vector [n]: [b]."""
    w = as_weights(weights, np.asarray(correct).shape[0])
    correct = np.asarray(correct, dtype=w.dtype)
    return _divide(w @ correct, w.sum(axis=1))


def balanced_accuracy(
    correct: np.ndarray, positive: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Mean of the accuracy on positive and on negative rows: [b]. NaN unless both classes occur.

    Flagging everything or nothing scores 0.5, whatever the class balance of a functional suite.
    """
    correct = np.asarray(correct, dtype=bool)
    positive = np.asarray(positive, dtype=bool)
    w = as_weights(weights, correct.shape[0])
    by_class = [accuracy(correct[group], w[:, group]) for group in (positive, ~positive)]
    return (by_class[0] + by_class[1]) / 2.0  # type: ignore[no-any-return]


# -- ranking: PR and ROC curves -------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    """Cumulative weighted (tp, fp), each [b, k], at every distinct score, highest score first.

    Tied scores share one point (a threshold cannot separate them), as in scikit-learn's curves. One
    curve serves PR-AUC, ROC-AUC and recall-at-FPR, so the bootstrap builds it once per label.
    """

    tp: np.ndarray
    fp: np.ndarray


@dataclass(frozen=True)
class CurvePlan:
    """The weight-independent part of a curve: score order, sorted gold, last row of each tie."""

    order: np.ndarray
    sorted_truth: np.ndarray
    last_of_tie: np.ndarray


def curve_plan(y_true: np.ndarray, scores: np.ndarray) -> CurvePlan:
    truth = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    last_of_tie = np.r_[sorted_scores[1:] != sorted_scores[:-1], True] if len(scores) else np.zeros(0, bool)
    return CurvePlan(order, truth[order], last_of_tie)


def curve(
    y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None, plan: CurvePlan | None = None
) -> Curve:
    """The curve under `weights`; pass the `plan` of (y_true, scores) to skip sorting again."""
    plan = plan or curve_plan(y_true, scores)
    w = as_weights(weights, plan.order.shape[0])
    sorted_w = w[:, plan.order]
    total = np.cumsum(sorted_w, axis=1)[:, plan.last_of_tie]
    tp = np.cumsum(sorted_w * plan.sorted_truth, axis=1)[:, plan.last_of_tie]
    return Curve(tp=tp, fp=total - tp)


def _totals(points: Curve) -> tuple[np.ndarray, np.ndarray]:
    """Weighted positives and negatives per resample: [b] each (0 for an empty curve)."""
    if points.tp.shape[1] == 0:
        zeros = np.zeros(points.tp.shape[0])
        return zeros, zeros
    return points.tp[:, -1].astype(np.float64), points.fp[:, -1].astype(np.float64)


def average_precision_of(points: Curve) -> np.ndarray:
    """Area under the PR curve as a step sum, AP = sum_k (R_k - R_{k-1}) P_k: [b]. NaN without positives.

    Written in counts, AP = (1/P) sum_k dTP_k * TP_k / (TP_k + FP_k): wherever dTP_k > 0 the denominator
    is positive, so clamping it away from zero only touches terms that are multiplied by 0 anyway.
    """
    tp, fp = points.tp, points.fp
    positives, _ = _totals(points)
    if tp.shape[1] == 0:
        return np.full(tp.shape[0], np.nan)
    gained = np.diff(tp, axis=1, prepend=0.0)
    precision_at = tp / np.maximum(tp + fp, 1e-12)
    return _divide((gained * precision_at).sum(axis=1, dtype=np.float64), positives)


def roc_auc_of(points: Curve) -> np.ndarray:
    """Area under the ROC curve (trapezoids, ties count half): [b]. NaN unless both classes occur.

    In counts: sum_k dFP_k * (TP_k + TP_{k-1}) / 2, divided by P * N once per resample.
    """
    tp, fp = points.tp, points.fp
    positives, negatives = _totals(points)
    if tp.shape[1] == 0:
        return np.full(tp.shape[0], np.nan)
    spent = np.diff(fp, axis=1, prepend=0.0)
    previous_tp = np.concatenate([np.zeros((tp.shape[0], 1), dtype=tp.dtype), tp[:, :-1]], axis=1)
    area = (spent * (tp + previous_tp)).sum(axis=1, dtype=np.float64) / 2.0
    return _divide(area, positives * negatives)


def recall_at_fpr_of(points: Curve, max_fpr: float) -> np.ndarray:
    """Highest recall of any threshold whose false-positive rate is <= max_fpr: [b].

    This is the operating point a moderation team can afford (e.g. 1% of clean messages flagged), so it
    is reported next to F1 at the model's own thresholds.
    """
    tp, fp = points.tp, points.fp
    positives, negatives = _totals(points)
    if tp.shape[1] == 0:
        return np.full(tp.shape[0], np.nan)
    # A relative tolerance so that an FPR of exactly max_fpr still counts despite rounding.
    budget = (max_fpr * negatives * (1 + 1e-9))[:, None]
    best = np.where(fp <= budget, tp, 0.0).max(axis=1)
    return np.where(negatives > 0, _divide(best, positives), np.nan)


def pr_curve_points(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of the step curve whose area is `average_precision`, for plotting.

    Starts at recall 0; draw it with matplotlib's ``drawstyle="steps-pre"`` so that each precision
    holds over the recall interval it is summed over in AP. Empty arrays without positives.
    """
    points = curve(y_true, scores)
    tp, fp = points.tp[0], points.fp[0]
    positives = tp[-1] if tp.size else 0.0
    if positives <= 0:
        return np.zeros(0), np.zeros(0)
    recall_at = tp / positives
    precision_at = tp / np.maximum(tp + fp, 1e-12)
    return np.r_[0.0, recall_at], np.r_[precision_at[0], precision_at]


def average_precision(
    y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    return average_precision_of(curve(y_true, scores, weights))


def roc_auc(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    return roc_auc_of(curve(y_true, scores, weights))


def recall_at_fpr(
    y_true: np.ndarray, scores: np.ndarray, max_fpr: float, weights: np.ndarray | None = None
) -> np.ndarray:
    return recall_at_fpr_of(curve(y_true, scores, weights), max_fpr)


# -- calibration ----------------------------------------------------------------------------------


def bin_index(probs: np.ndarray, n_bins: int = DEFAULT_ECE_BINS) -> np.ndarray:
    """Equal-width bin of each probability; 1.0 falls into the top bin."""
    probs = np.asarray(probs, dtype=np.float64)
    return np.clip((probs * n_bins).astype(int), 0, n_bins - 1)


def expected_calibration_error(
    y_true: np.ndarray, probs: np.ndarray, weights: np.ndarray | None = None, n_bins: int = DEFAULT_ECE_BINS
) -> np.ndarray:
    """ECE = sum over bins of (bin weight share) x |mean probability - observed frequency|: [b]."""
    truth = np.asarray(y_true, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    w = as_weights(weights, truth.shape[0])
    # float64 throughout: the per-bin gaps of a well-calibrated model are small differences of large sums.
    w = w.astype(np.float64, copy=False)
    onehot = np.zeros((truth.shape[0], n_bins))
    onehot[np.arange(truth.shape[0]), bin_index(probs, n_bins)] = 1.0
    mass = w @ onehot
    gap = np.abs(w @ (onehot * probs[:, None]) - w @ (onehot * truth[:, None]))
    return _divide(gap.sum(axis=1), mass.sum(axis=1))


def reliability_bins(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_ECE_BINS
) -> list[dict[str, float]]:
    """Per non-empty bin: its range, row count, mean probability and observed frequency (for tables)."""
    truth = np.asarray(y_true, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    bins = bin_index(probs, n_bins)
    rows = []
    for index in range(n_bins):
        members = bins == index
        if members.any():
            rows.append(
                {
                    "low": index / n_bins,
                    "high": (index + 1) / n_bins,
                    "count": float(members.sum()),
                    "mean_probability": float(probs[members].mean()),
                    "observed_frequency": float(truth[members].mean()),
                }
            )
    return rows


# -- metric sets over label columns (what the evaluate modules and training report) ------------------


def _label_names(names: Sequence[str] | None, columns: int) -> list[str]:
    return list(names) if names else [f"label_{index}" for index in range(columns)]


def decision_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str] | None = None
) -> dict[str, float]:
    """precision_/recall_/f1_<label>, their macro (mean of defined values) and micro (pooled counts)
    averages, support_<label> (gold positives), predicted_<label> and n_rows, for 0/1 matrices [n, L]."""
    truth = np.asarray(y_true).astype(bool)
    pred = np.asarray(y_pred).astype(bool)
    labels = _label_names(names, truth.shape[1])
    counts = confusion_counts(truth, pred)
    pooled = counts.summed()
    out: dict[str, float] = {"n_rows": float(truth.shape[0])}
    for measure, function in (("precision", precision), ("recall", recall), ("f1", f1)):
        values = function(counts)[0]
        for name, value in zip(labels, values, strict=True):
            out[f"{measure}_{name}"] = float(value)
        out[f"macro_{measure}"] = float(nanmean(values))
        out[f"micro_{measure}"] = float(function(pooled)[0, 0])
    for column, name in enumerate(labels):
        out[f"support_{name}"] = float(truth[:, column].sum())
        out[f"predicted_{name}"] = float(pred[:, column].sum())
    return out


def _per_label_and_averages(
    measure: str,
    function: Callable[[np.ndarray, np.ndarray], np.ndarray],
    truth: np.ndarray,
    scores: np.ndarray,
    labels: list[str],
) -> dict[str, float]:
    values = np.array([function(truth[:, j], scores[:, j])[0] for j in range(len(labels))])
    out = {f"{measure}_{name}": float(value) for name, value in zip(labels, values, strict=True)}
    out[f"macro_{measure}"] = float(nanmean(values))
    # Micro: every (row, label) cell pooled, as scikit-learn's average="micro".
    out[f"micro_{measure}"] = float(function(truth.T.ravel(), scores.T.ravel())[0])
    return out


def ranking_metrics(
    y_true: np.ndarray, scores: np.ndarray, names: Sequence[str] | None = None
) -> dict[str, float]:
    """pr_auc_<label> and roc_auc_<label> with macro and micro averages (NaN where undefined)."""
    truth = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    labels = _label_names(names, truth.shape[1])
    return {
        **_per_label_and_averages("pr_auc", average_precision, truth, scores, labels),
        **_per_label_and_averages("roc_auc", roc_auc, truth, scores, labels),
    }


def recall_at_fpr_metrics(
    y_true: np.ndarray, scores: np.ndarray, max_fpr: float, names: Sequence[str] | None = None
) -> dict[str, float]:
    """recall_at_fpr_<p>pct_<label> with macro and micro averages."""
    from textguard.evaluation.naming import fpr_measure

    if not 0.0 <= max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be within [0, 1], got {max_fpr}")
    truth = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    labels = _label_names(names, truth.shape[1])
    return _per_label_and_averages(
        fpr_measure(max_fpr), lambda y, s: recall_at_fpr(y, s, max_fpr), truth, scores, labels
    )


def calibration_metrics(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_ECE_BINS, names: Sequence[str] | None = None
) -> dict[str, float]:
    """ece_<label>, macro_ece and micro_ece (all cells pooled: the ECE training's calibration reports)."""
    truth = np.asarray(y_true, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    labels = _label_names(names, truth.shape[1])
    return _per_label_and_averages(
        "ece", lambda y, p: expected_calibration_error(y, p, n_bins=n_bins), truth, probs, labels
    )


# -- functional suites ----------------------------------------------------------------------------


def is_hard_negative(functionality: Sequence[str] | np.ndarray) -> np.ndarray:
    """Hard negatives are the functionalities whose name ends in `_nh` (HateCheck's convention)."""
    return np.char.endswith(np.asarray(functionality, dtype=str), "_nh")


def functional_report(
    flagged: np.ndarray, hateful: np.ndarray, functionality: Sequence[str], language: Sequence[str]
) -> dict[str, Any]:
    """Functional-suite accuracy overall, per functionality, per language and per functionality x language.

    A case passes when the binary decision (any label flagged) equals its gold. Undefined values
    (e.g. balanced accuracy of a language with only hateful cases) are NaN.
    """
    flagged = np.asarray(flagged, dtype=bool)
    gold = np.asarray(hateful, dtype=bool)
    functions = np.asarray(functionality, dtype=str)
    languages = np.asarray(language, dtype=str)
    correct = flagged == gold
    hard = is_hard_negative(functions)

    def share(mask: np.ndarray) -> float:
        return float(accuracy(correct[mask])[0]) if mask.any() else float("nan")

    def balanced(mask: np.ndarray) -> float:
        return float(balanced_accuracy(correct[mask], gold[mask])[0])

    function_names = sorted(set(functions.tolist()))
    language_codes = sorted(set(languages.tolist()))
    return {
        "accuracy": share(np.ones_like(correct)),
        "balanced_accuracy": balanced(np.ones_like(correct)),
        "hateful_accuracy": share(gold),
        "non_hateful_accuracy": share(~gold),
        "hard_negative_accuracy": share(hard),
        "n_cases": float(correct.size),
        "functionality": {
            name: {"accuracy": share(functions == name), "n_cases": float(np.sum(functions == name))}
            for name in function_names
        },
        "language": {
            code: {
                "accuracy": share(languages == code),
                "balanced_accuracy": balanced(languages == code),
                "hard_negative_accuracy": share((languages == code) & hard),
                "n_cases": float(np.sum(languages == code)),
                "hard_negative_n_cases": float(np.sum((languages == code) & hard)),
            }
            for code in language_codes
        },
        "functionality_language": {
            name: {
                code: {
                    "accuracy": share((functions == name) & (languages == code)),
                    "n_cases": float(np.sum((functions == name) & (languages == code))),
                }
                for code in language_codes
                if np.any((functions == name) & (languages == code))
            }
            for name in function_names
        },
    }


# -- paired tests ---------------------------------------------------------------------------------


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int, float]:
    """Exact (binomial) McNemar test on paired decisions: (a right & b wrong, a wrong & b right, p-value).

    The exact test is valid for any number of disagreements, unlike the chi-square approximation.
    """
    from scipy.stats import binomtest

    correct_a = np.asarray(correct_a, dtype=bool)
    correct_b = np.asarray(correct_b, dtype=bool)
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return only_a, only_b, 1.0
    return only_a, only_b, float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (controls the family-wise error over the given tests)."""
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        value = min(1.0, (len(p_values) - rank) * p_values[index])
        running = max(running, value)
        adjusted[index] = running
    return adjusted
