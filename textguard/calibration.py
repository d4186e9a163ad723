"""Post-training calibration: one temperature for the logits, then one decision threshold per label.

Pure numpy/scipy, fitted on validation logits. Temperature scaling rescales confidence without changing
any ranking (so PR-AUC is untouched); the thresholds are then chosen on the *calibrated* probabilities,
because that is what `postprocess.probabilities` hands to `postprocess.decide` at serving time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from textguard.evaluation import measures
from textguard.postprocess import sigmoid

ThresholdPolicyName = Literal["max_f1", "target_precision", "max_fpr"]

#: Temperatures outside this range mean the model is broken, not miscalibrated.
TEMPERATURE_BOUNDS = (0.05, 20.0)
DEFAULT_THRESHOLD = 0.5
#: Bins of the calibration report's ECE: the evaluation default, so the two numbers are comparable.
ECE_BINS = measures.DEFAULT_ECE_BINS


def binary_cross_entropy(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean BCE of sigmoid(logits / T) against 0/1 labels, computed from logits (no log(0))."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(labels, dtype=np.float64)
    # log(1 + e^-|z|) + max(z, 0) - z*y  ==  -[y log s(z) + (1-y) log(1 - s(z))]
    return float(np.mean(np.logaddexp(0.0, -np.abs(z)) + np.maximum(z, 0.0) - z * y))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The single temperature T > 0 minimising validation BCE of sigmoid(logits / T)."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    if logits.size == 0:
        return 1.0
    low, high = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    # Search log T: the loss is much better conditioned there than in T itself.
    result = minimize_scalar(
        lambda log_t: binary_cross_entropy(logits, labels, float(np.exp(log_t))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


def calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE over every (text, label) cell (`measures.expected_calibration_error`); 0 for no cells."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    if p.size == 0:
        return 0.0
    y = np.asarray(labels, dtype=np.float64).ravel()
    return float(measures.expected_calibration_error(y, p, n_bins=n_bins)[0])


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    #: Whether the policy's constraint holds on the data the threshold was fitted on.
    met: bool
    precision: float
    recall: float
    fpr: float
    note: str = ""


def _cuts(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, measures.Counts]:
    """Candidate thresholds (midpoints below each distinct score) and the counts when predicting >= it."""
    points = measures.curve(truth, scores)  # tied scores are always decided together
    tp, fp = points.tp[0], points.fp[0]
    cut_scores = np.unique(scores)[::-1]
    positives, negatives = float(truth.sum()), float(len(truth) - truth.sum())
    counts = measures.Counts(tp=tp, fp=fp, fn=positives - tp, tn=negatives - fp)
    # A midpoint between neighbours takes the same decisions on this data and generalises better
    # than sitting exactly on a validation score.
    lower = np.r_[cut_scores[1:], 0.0]
    return (cut_scores + lower) / 2.0, counts


def choose_threshold(
    scores: np.ndarray,
    truth: np.ndarray,
    policy: ThresholdPolicyName,
    value: float | None = None,
    *,
    plateau: float = 0.0,
) -> ThresholdChoice:
    """Threshold for one label under `policy`; predicted positive means score >= threshold.

    - max_f1: maximise F1; with `plateau` > 0, the middle one of the thresholds whose F1 is within
      `plateau` of the best (the other policies ignore `plateau`). Near its top the F1 curve is flat,
      so its argmax on a few hundred positives jumps between distant thresholds from one training seed
      to the next (0.25 and 0.61 for the same recipe); the middle of the near-best range moves far less
      (0.49 and 0.36).
    - target_precision: the lowest threshold (most recall) whose precision is >= value.
    - max_fpr: the lowest threshold whose false-positive rate is <= value.
    """
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    positives, negatives = float(truth.sum()), float(len(truth) - truth.sum())
    if policy in ("target_precision", "max_fpr") and value is None:
        raise ValueError(f"threshold policy {policy} needs a value")
    if positives == 0 or (policy == "max_fpr" and negatives == 0):
        return ThresholdChoice(
            DEFAULT_THRESHOLD, False, 0.0, 0.0, 0.0, "no positives and negatives to fit on"
        )
    thresholds, counts = _cuts(scores, truth)
    # Every cut predicts at least one row and there are positives: precision and recall are defined.
    precision, recall = measures.precision(counts), measures.recall(counts)
    fpr = counts.fp / negatives if negatives else np.zeros_like(counts.fp)
    if policy == "max_f1":
        f1 = measures.f1(counts)
        best = int(np.argmax(f1))  # first maximum = highest threshold among ties: fewer alerts, same F1
        if plateau > 0:
            near_best = np.flatnonzero(f1 >= f1[best] - plateau)  # cuts run from high to low thresholds
            best = int(near_best[(len(near_best) - 1) // 2])  # the middle one (the higher of two)
    else:
        target = float(value)  # type: ignore[arg-type]  # checked above
        ok = precision >= target if policy == "target_precision" else fpr <= target
        if not ok.any():
            # Nothing meets the constraint: switch the label off (predicting nothing has FPR 0, but no
            # precision) rather than silently miss the target.
            note = f"no threshold meets {policy}={target:g}; label switched off"
            return ThresholdChoice(1.0, policy == "max_fpr", 0.0, 0.0, 0.0, note)
        best = int(np.flatnonzero(ok)[-1])  # cuts go from high to low threshold: the last has most recall
    return ThresholdChoice(
        threshold=float(thresholds[best]),
        met=True,
        precision=float(precision[best]),
        recall=float(recall[best]),
        fpr=float(fpr[best]),
    )


@dataclass
class Calibration:
    temperature: float
    thresholds: dict[str, float]
    policy: str
    ece_before: float
    ece_after: float
    bce_before: float
    bce_after: float
    per_label: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Equal-width bins of ece_before / ece_after (the reliability figure draws the same bins).
    ece_bins: int = ECE_BINS

    def spec_fields(self) -> dict[str, Any]:
        """What goes into `ModelSpec` (temperature, thresholds, threshold_policy, calibration)."""
        return {
            "temperature": self.temperature,
            "thresholds": dict(self.thresholds),
            "threshold_policy": self.policy,
            "calibration": {
                "ece_before": self.ece_before,
                "ece_after": self.ece_after,
                "bce_before": self.bce_before,
                "bce_after": self.bce_after,
                "ece_bins": self.ece_bins,
                "per_label": self.per_label,
            },
        }


def policy_label(policy: ThresholdPolicyName, value: float | None, plateau: float = 0.0) -> str:
    label = policy if value is None else f"{policy}={value:g}"
    return f"{label}, plateau {plateau:g}" if plateau > 0 else label


def calibrate(
    logits: np.ndarray,
    labels: np.ndarray,
    label_names: list[str] | tuple[str, ...],
    *,
    policy: ThresholdPolicyName = "max_f1",
    value: float | None = None,
    plateau: float = 0.0,
    temperature: bool = True,
    ece_bins: int = ECE_BINS,
) -> Calibration:
    """Fit temperature (optional) then per-label thresholds on validation logits [n, L] and 0/1 labels."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if logits.shape != labels.shape or logits.ndim != 2 or logits.shape[1] != len(label_names):
        raise ValueError(
            f"logits {logits.shape} and labels {labels.shape} must both be [n, {len(label_names)}]"
        )
    t = fit_temperature(logits, labels) if temperature and len(logits) else 1.0
    before, after = sigmoid(logits), sigmoid(logits / t)
    thresholds: dict[str, float] = {}
    per_label: dict[str, dict[str, Any]] = {}
    for column, name in enumerate(label_names):
        choice = choose_threshold(after[:, column], labels[:, column], policy, value, plateau=plateau)
        thresholds[name] = choice.threshold
        per_label[name] = {
            "threshold": choice.threshold,
            "met": choice.met,
            "precision": choice.precision,
            "recall": choice.recall,
            "fpr": choice.fpr,
            "note": choice.note,
            "ece_before": calibration_error(before[:, column], labels[:, column], ece_bins),
            "ece_after": calibration_error(after[:, column], labels[:, column], ece_bins),
        }
    return Calibration(
        temperature=t,
        thresholds=thresholds,
        policy=policy_label(policy, value, plateau),
        ece_before=calibration_error(before, labels, ece_bins),
        ece_after=calibration_error(after, labels, ece_bins),
        bce_before=binary_cross_entropy(logits, labels),
        bce_after=binary_cross_entropy(logits, labels, t),
        per_label=per_label,
        ece_bins=ece_bins,
    )
