"""Logits -> calibrated probabilities -> label decisions. The only place activation and thresholds live."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from textguard.spec import ModelSpec


@dataclass(frozen=True)
class Prediction:
    scores: dict[str, float]
    labels: list[str]


def sigmoid(values: np.ndarray) -> np.ndarray:
    # Numerically stable for large |x|: never exponentiates a positive number.
    values = np.asarray(values, dtype=np.float64)
    out = np.empty_like(values)
    positive = values >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-values[positive]))
    exp_values = np.exp(values[~positive])
    out[~positive] = exp_values / (1.0 + exp_values)
    return out


def probabilities(logits: np.ndarray, spec: ModelSpec, temperature: float | None = None) -> np.ndarray:
    """Calibrated probabilities [n, labels]. The activation follows the spec's problem type."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != len(spec.labels):
        raise ValueError(f"expected logits of shape [n, {len(spec.labels)}], got {logits.shape}")
    if spec.problem_type != "multi_label_classification":
        raise ValueError(f"unsupported problem type {spec.problem_type!r}")
    scale = spec.temperature if temperature is None else temperature
    return sigmoid(logits / scale)


def decide(probs: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Boolean matrix [n, labels]: probability at or above the label's threshold."""
    return np.asarray(probs) >= np.asarray(spec.threshold_list())[None, :]


def to_predictions(probs: np.ndarray, spec: ModelSpec) -> list[Prediction]:
    flags = decide(probs, spec)
    return [
        Prediction(
            scores={label: float(p) for label, p in zip(spec.labels, row, strict=True)},
            labels=[label for label, flag in zip(spec.labels, flag_row, strict=True) if flag],
        )
        for row, flag_row in zip(probs, flags, strict=True)
    ]
