"""Multi-label losses on logits: BCE with per-label positive weights, and focal loss.

Labels are rare and unbalanced (most chat is benign), so the positive weight per label defaults to
negatives/positives on the training split, capped so that a label with a handful of examples cannot
dominate the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from textguard.training.config import LossConfig


def positive_weights(multi_hot: np.ndarray, cap: float) -> np.ndarray:
    """negatives/positives per label column, clipped to [1, cap] (a label with no positives gets cap)."""
    multi_hot = np.asarray(multi_hot, dtype=np.float64)
    positives = multi_hot.sum(axis=0)
    negatives = len(multi_hot) - positives
    ratio = np.divide(negatives, positives, out=np.full_like(positives, cap), where=positives > 0)
    return np.clip(ratio, 1.0, cap)


@dataclass
class MultiLabelLoss:
    """Callable (logits, targets) -> scalar mean loss; pos_weight is a per-label list or None."""

    kind: str
    pos_weight: list[float] | None
    gamma: float = 2.0

    @classmethod
    def from_config(cls, config: LossConfig, train_multi_hot: np.ndarray) -> MultiLabelLoss:
        weights = None
        if config.pos_weight == "auto":
            weights = positive_weights(train_multi_hot, config.max_pos_weight).tolist()
        return cls(kind=config.kind, pos_weight=weights, gamma=config.gamma)

    def __call__(self, logits: Any, targets: Any) -> Any:
        import torch
        import torch.nn.functional as F

        targets = targets.to(logits.dtype)
        weight = None
        if self.pos_weight is not None:
            weight = torch.tensor(self.pos_weight, dtype=logits.dtype, device=logits.device)
        if self.kind == "bce":
            return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)
        # Focal: down-weight cells the model already gets right. p_t (probability of the true class)
        # is exp(-unweighted BCE), which avoids a second activation path.
        plain = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_true = torch.exp(-plain)
        weighted = (
            F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight, reduction="none")
            if weight is not None
            else plain
        )
        return ((1.0 - p_true) ** self.gamma * weighted).mean()
