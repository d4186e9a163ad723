from __future__ import annotations

import numpy as np
import pytest

from textguard.calibration import (
    binary_cross_entropy,
    calibrate,
    calibration_error,
    choose_threshold,
    fit_temperature,
)
from textguard.postprocess import sigmoid

LABEL_NAMES = ("a", "b", "c")


def synthetic(true_temperature: float, n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z); the model reports z * T, i.e. it is over-confident by T."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, size=(n, len(LABEL_NAMES)))
    labels = (rng.random(z.shape) < sigmoid(z)).astype(float)
    return z * true_temperature, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_temperature_recovers_a_known_temperature(true_temperature: float) -> None:
    logits, labels = synthetic(true_temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.08)
    assert binary_cross_entropy(logits, labels, fitted) <= binary_cross_entropy(logits, labels, 1.0) + 1e-12


def test_temperature_lowers_ece_of_an_overconfident_model() -> None:
    logits, labels = synthetic(3.0)
    result = calibrate(logits, labels, LABEL_NAMES)
    assert result.ece_after < result.ece_before / 3
    assert result.bce_after < result.bce_before
    fields = result.spec_fields()
    assert fields["temperature"] == result.temperature
    assert fields["calibration"]["ece_before"] == result.ece_before
    assert set(fields["thresholds"]) == set(LABEL_NAMES)


def test_ece_is_zero_for_perfect_frequencies_and_large_for_wrong_ones() -> None:
    probs = np.array([0.25] * 4 + [0.75] * 4)
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert calibration_error(probs, labels) == pytest.approx(0.0)
    assert calibration_error(np.ones(4), np.zeros(4)) == pytest.approx(1.0)


def _precision_recall_fpr(
    scores: np.ndarray, truth: np.ndarray, threshold: float
) -> tuple[float, float, float]:
    predicted = scores >= threshold  # the same rule as postprocess.decide
    tp = float(np.sum(predicted & (truth == 1)))
    fp = float(np.sum(predicted & (truth == 0)))
    precision = tp / (tp + fp) if tp + fp else 1.0
    return precision, tp / truth.sum(), fp / (truth == 0).sum()


def _scores(seed: int = 1, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.2).astype(float)
    scores = sigmoid(rng.normal(0, 1, n) + 2.0 * truth - 1.0)
    return scores, truth


@pytest.mark.parametrize("target", [0.6, 0.8, 0.95])
def test_target_precision_meets_its_constraint_with_the_most_recall(target: float) -> None:
    scores, truth = _scores()
    choice = choose_threshold(scores, truth, "target_precision", target)
    assert choice.met
    precision, recall, _ = _precision_recall_fpr(scores, truth, choice.threshold)
    assert precision >= target
    assert recall == pytest.approx(choice.recall)
    # Any lower threshold (one more distinct score) would break the target or add no recall.
    lower = scores[scores < choice.threshold].max()
    lower_precision, lower_recall, _ = _precision_recall_fpr(scores, truth, lower)
    assert lower_precision < target or lower_recall == recall


@pytest.mark.parametrize("max_fpr", [0.01, 0.05, 0.2])
def test_max_fpr_meets_its_constraint(max_fpr: float) -> None:
    scores, truth = _scores(seed=2)
    choice = choose_threshold(scores, truth, "max_fpr", max_fpr)
    _, _, fpr = _precision_recall_fpr(scores, truth, choice.threshold)
    assert choice.met and fpr <= max_fpr
    lower = scores[scores < choice.threshold].max()
    assert _precision_recall_fpr(scores, truth, lower)[2] > max_fpr


def test_max_f1_picks_the_best_f1_threshold() -> None:
    scores, truth = _scores(seed=3)
    choice = choose_threshold(scores, truth, "max_f1")

    def f1(threshold: float) -> float:
        precision, recall, _ = _precision_recall_fpr(scores, truth, threshold)
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    best = max(f1(t) for t in np.unique(scores))
    assert f1(choice.threshold) == pytest.approx(best)


def _f1(scores: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    precision, recall, _ = _precision_recall_fpr(scores, truth, threshold)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def test_max_f1_plateau_takes_the_middle_of_the_near_best_thresholds() -> None:
    scores, truth = _scores(seed=3)
    best = choose_threshold(scores, truth, "max_f1")
    assert choose_threshold(scores, truth, "max_f1", plateau=0.0) == best
    plateau = 0.02
    chosen = choose_threshold(scores, truth, "max_f1", plateau=plateau)
    assert _f1(scores, truth, chosen.threshold) >= _f1(scores, truth, best.threshold) - plateau - 1e-12
    # The middle of the near-best candidates: as many of them above the choice as below it.
    candidates = np.unique(scores)[::-1]
    cuts = (candidates + np.r_[candidates[1:], 0.0]) / 2
    near = [t for t in cuts if _f1(scores, truth, t) >= _f1(scores, truth, best.threshold) - plateau]
    above = sum(t > chosen.threshold for t in near)
    below = sum(t < chosen.threshold for t in near)
    assert len(near) > 10 and abs(above - below) <= 1


def test_max_f1_plateau_is_steadier_across_resampled_validation_sets() -> None:
    # The argmax of a flat-topped F1 curve jumps with the sample; the middle of the plateau moves less.
    scores, truth = _scores(seed=5, n=20_000)
    rng = np.random.default_rng(0)
    argmax, middle = [], []
    for _ in range(20):
        sample = rng.choice(len(scores), 1500, replace=False)
        argmax.append(choose_threshold(scores[sample], truth[sample], "max_f1").threshold)
        middle.append(choose_threshold(scores[sample], truth[sample], "max_f1", plateau=0.02).threshold)
    assert np.std(middle) < np.std(argmax)


def test_unreachable_precision_switches_the_label_off_and_says_so() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    truth = np.array([0.0, 1.0, 0.0, 1.0])
    choice = choose_threshold(scores, truth, "target_precision", 0.99)
    assert not choice.met and choice.threshold == 1.0
    assert "no threshold meets" in choice.note


def test_a_label_without_positives_keeps_the_default_threshold() -> None:
    choice = choose_threshold(np.array([0.2, 0.4]), np.array([0.0, 0.0]), "max_f1")
    assert choice.threshold == 0.5 and not choice.met


def test_calibrate_checks_shapes_and_policy_values() -> None:
    logits, labels = synthetic(1.0, n=50)
    with pytest.raises(ValueError, match="must both be"):
        calibrate(logits[:, :2], labels, LABEL_NAMES)
    with pytest.raises(ValueError, match="needs a value"):
        calibrate(logits, labels, LABEL_NAMES, policy="target_precision")
    untouched = calibrate(logits, labels, LABEL_NAMES, temperature=False, policy="max_fpr", value=0.1)
    assert untouched.temperature == 1.0 and untouched.policy == "max_fpr=0.1"
