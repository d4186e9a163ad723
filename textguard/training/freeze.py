"""Freeze parts of a pretrained encoder before fine-tuning (`training.freeze`).

Frozen parameters keep `requires_grad=False`: the Trainer's optimiser skips them (no Adam state, no
update) and autograd skips every gradient that only they would need.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from textguard.errors import ConfigError
from textguard.training.config import FreezeConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    trainable: int

    @property
    def frozen(self) -> int:
        return self.total - self.trainable


def parameter_counts(model: Any) -> ParameterCounts:
    parameters = list(model.parameters())
    return ParameterCounts(
        total=sum(p.numel() for p in parameters),
        trainable=sum(p.numel() for p in parameters if p.requires_grad),
    )


def _encoder_layers(model: Any) -> Any:
    """The encoder layer list: encoder.layer (BERT, XLM-R, DeBERTa) or transformer.layer (DistilBERT)."""
    base = getattr(model, "base_model", model)
    for path in (("encoder", "layer"), ("transformer", "layer")):
        module = base
        for name in path:
            module = getattr(module, name, None)
        if module is not None:
            return module
    return None


def _freeze(module: Any) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(False)


def apply_freeze(model: Any, config: FreezeConfig) -> ParameterCounts:
    """Freeze what `config` asks for; returns the parameter counts afterwards."""
    if config.word_embeddings:
        _freeze(model.get_input_embeddings())
    if config.layers:
        layers = _encoder_layers(model)
        if layers is None:
            raise ConfigError(
                f"training.freeze.layers={config.layers}: {type(model).__name__} has no encoder layer list"
            )
        if config.layers > len(layers):
            raise ConfigError(
                f"training.freeze.layers={config.layers} exceeds the model's {len(layers)} encoder layers"
            )
        _freeze(model.base_model.embeddings)
        for layer in list(layers)[: config.layers]:
            _freeze(layer)
    counts = parameter_counts(model)
    log.info(
        "parameters: %s trainable of %s (%s frozen)",
        f"{counts.trainable:,}",
        f"{counts.total:,}",
        f"{counts.frozen:,}",
    )
    return counts
