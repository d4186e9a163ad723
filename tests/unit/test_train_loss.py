from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from textguard.training.config import LossConfig
from textguard.training.loss import MultiLabelLoss, positive_weights


def test_positive_weights_are_negatives_over_positives_capped() -> None:
    labels = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, 1]], dtype=float)
    # label 0: 3 negatives / 1 positive; label 1: no positives -> cap; label 2: 2/2 -> 1.
    np.testing.assert_allclose(positive_weights(labels, cap=2.5), [2.5, 2.5, 1.0])
    np.testing.assert_allclose(positive_weights(labels, cap=10.0), [3.0, 10.0, 1.0])


def test_bce_matches_torch_with_and_without_weights() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(16, 3), (torch.rand(16, 3) > 0.7).float()
    plain = MultiLabelLoss.from_config(LossConfig(pos_weight="none"), targets.numpy())
    assert plain.pos_weight is None
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert plain(logits, targets).item() == pytest.approx(expected.item())
    weighted = MultiLabelLoss.from_config(LossConfig(pos_weight="auto"), targets.numpy())
    assert weighted(logits, targets).item() > plain(logits, targets).item()


def test_focal_loss_reduces_to_bce_at_gamma_zero_and_discounts_easy_cells() -> None:
    torch.manual_seed(1)
    logits, targets = torch.randn(32, 3) * 3, (torch.rand(32, 3) > 0.5).float()
    bce = MultiLabelLoss("bce", None)(logits, targets)
    assert MultiLabelLoss("focal", None, gamma=0.0)(logits, targets).item() == pytest.approx(bce.item())
    assert MultiLabelLoss("focal", None, gamma=2.0)(logits, targets).item() < bce.item()
    # A confidently right cell contributes almost nothing; a confidently wrong one almost its full BCE.
    easy = MultiLabelLoss("focal", None, gamma=2.0)(torch.tensor([[6.0]]), torch.tensor([[1.0]]))
    hard = MultiLabelLoss("focal", None, gamma=2.0)(torch.tensor([[-6.0]]), torch.tensor([[1.0]]))
    assert easy.item() < 1e-6 and hard.item() == pytest.approx(6.0, rel=0.01)


def test_loss_has_gradients() -> None:
    logits = torch.zeros(4, 3, requires_grad=True)
    MultiLabelLoss("focal", [2.0, 2.0, 2.0])(logits, torch.ones(4, 3)).backward()
    assert logits.grad is not None and bool((logits.grad < 0).all())


def test_the_head_learns_at_its_own_rate(tmp_path: Path) -> None:
    """training.head_learning_rate: pooler and classifier in their own optimizer groups at that rate."""
    from transformers import TrainingArguments

    from textguard.training.hf import TextguardTrainer, is_head_parameter
    from textguard.training.loss import MultiLabelLoss
    from textguard.training.tiny_model import build_tiny_classifier, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer("bert", ["a tiny corpus for the head test"], vocab_size=50)
    model = build_tiny_classifier("bert", tokenizer, hidden_size=8, num_layers=1)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=2e-5, weight_decay=0.01, report_to=[])
    loss = MultiLabelLoss.from_config(LossConfig(), np.zeros((2, 3), dtype=np.float32))
    optimizer = TextguardTrainer(
        model=model, args=args, loss_fn=loss, head_learning_rate=1e-3
    ).create_optimizer()
    by_rate: dict[float, set[str]] = {}
    ids = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        by_rate.setdefault(group["lr"], set()).update(ids[id(p)] for p in group["params"])
    assert by_rate[1e-3] == {n for n, _ in model.named_parameters() if is_head_parameter(n)}
    assert by_rate[1e-3] == {
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
        "classifier.weight",
        "classifier.bias",
    }
    assert by_rate[2e-5] == {n for n, _ in model.named_parameters()} - by_rate[1e-3]
    plain = TextguardTrainer(model=model, args=args, loss_fn=loss).create_optimizer()
    assert {group["lr"] for group in plain.param_groups} == {2e-5}
