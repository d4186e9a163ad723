"""A BERT-family sequence classifier for inference, in plain torch: no transformers import.

Importing transformers' model classes costs about 2.7 s on the 2-core machine (its kernel hub and
weight-conversion modules come along), most of the service's cold start. The models textguard trains
are standard encoders whose forward pass is a few dozen lines: `BertForSequenceClassification`
(all-MiniLM-L6-v2, multilingual-e5-small converted to BERT) and `XLMRobertaForSequenceClassification`.
This module runs exactly those from the artefact's `config.json` and safetensors weights, with the same
operators as transformers' SDPA path (logits equal to ~1e-6: tests/integration/test_encoder.py).

`supports(config)` says whether a config is one of them; anything else (another architecture,
relative positions, a decoder) is loaded through transformers by `textguard.backends`. Training and
ONNX export keep using transformers' classes; this module only reads what they saved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: model_type -> (prefix of the encoder's weights, positions start after the padding id)
ARCHITECTURES = {"bert": ("bert", False), "xlm-roberta": ("roberta", True), "roberta": ("roberta", True)}
ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


def supports(config: dict[str, Any]) -> bool:
    """Whether `config` (a config.json) is a classifier this module runs exactly as transformers does."""
    return (
        config.get("model_type") in ARCHITECTURES
        and config.get("hidden_act", "gelu") in ACTIVATIONS
        and config.get("position_embedding_type", "absolute") == "absolute"
        and not config.get("is_decoder", False)
        and not config.get("add_cross_attention", False)
        and config.get("problem_type") == "multi_label_classification"
        and len(config.get("id2label") or {}) > 0
    )


def _uninitialised_embedding(rows: int, width: int) -> nn.Embedding:
    # Its weights are always loaded: a random initialisation of e5's 96M embedding parameters cost a
    # second. (A meta-device build avoids it too, but its first use imports torch._dynamo: 1.3 s.)
    return nn.Embedding(rows, width, _weight=torch.empty(rows, width))


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float, act: str) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.attention_output = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.output = nn.Linear(intermediate, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=eps)
        self.act = ACTIVATIONS[act]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            split(self.query(x)), split(self.key(x)), split(self.value(x)), attn_mask=mask
        )
        attended = attended.transpose(1, 2).reshape(batch, length, hidden)
        x = self.attention_norm(self.attention_output(attended) + x)
        return self.output_norm(self.output(self.act(self.intermediate(x))) + x)


class EncoderClassifier(nn.Module):
    """Embeddings, post-LayerNorm encoder layers, then BERT's pooler + classifier or RoBERTa's head."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        if not supports(config):
            raise ValueError(f"unsupported encoder config (model_type {config.get('model_type')!r})")
        self.prefix, self.roberta_positions = ARCHITECTURES[config["model_type"]]
        hidden, eps = int(config["hidden_size"]), float(config.get("layer_norm_eps", 1e-12))
        labels = len(config["id2label"])
        self.pad_token_id = int(config.get("pad_token_id") or 0)
        self.word_embeddings = _uninitialised_embedding(int(config["vocab_size"]), hidden)
        self.position_embeddings = _uninitialised_embedding(int(config["max_position_embeddings"]), hidden)
        self.token_type_embeddings = _uninitialised_embedding(int(config.get("type_vocab_size", 2)), hidden)
        self.embedding_norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(
            _Layer(
                hidden,
                int(config["num_attention_heads"]),
                int(config["intermediate_size"]),
                eps,
                config.get("hidden_act", "gelu"),
            )
            for _ in range(int(config["num_hidden_layers"]))
        )
        # BERT: pooler (dense + tanh over the first token) then classifier; RoBERTa: dense + tanh, out_proj.
        self.pool = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits [batch, labels]."""
        if self.roberta_positions:  # positions count real tokens only, after the padding id
            real = input_ids.ne(self.pad_token_id).long()
            positions = torch.cumsum(real, dim=1) * real + self.pad_token_id
        else:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = (
            self.word_embeddings(input_ids)
            + self.token_type_embeddings.weight[0]
            + self.position_embeddings(positions)
        )
        x = self.embedding_norm(x)
        mask = attention_mask.bool()[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        return self.classifier(torch.tanh(self.pool(x[:, 0])))

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Take transformers' parameter names; every parameter must be given and every weight used."""
        p = self.prefix
        names = {
            "word_embeddings.weight": f"{p}.embeddings.word_embeddings.weight",
            "position_embeddings.weight": f"{p}.embeddings.position_embeddings.weight",
            "token_type_embeddings.weight": f"{p}.embeddings.token_type_embeddings.weight",
            "embedding_norm.weight": f"{p}.embeddings.LayerNorm.weight",
            "embedding_norm.bias": f"{p}.embeddings.LayerNorm.bias",
        }
        head = (
            {"pool": "classifier.dense", "classifier": "classifier.out_proj"}
            if self.roberta_positions
            else {"pool": f"{p}.pooler.dense", "classifier": "classifier"}
        )
        for ours, theirs in head.items():
            for kind in ("weight", "bias"):
                names[f"{ours}.{kind}"] = f"{theirs}.{kind}"
        for index in range(len(self.layers)):
            theirs = f"{p}.encoder.layer.{index}"
            for ours, part in {
                "query": "attention.self.query",
                "key": "attention.self.key",
                "value": "attention.self.value",
                "attention_output": "attention.output.dense",
                "attention_norm": "attention.output.LayerNorm",
                "intermediate": "intermediate.dense",
                "output": "output.dense",
                "output_norm": "output.LayerNorm",
            }.items():
                for kind in ("weight", "bias"):
                    names[f"layers.{index}.{ours}.{kind}"] = f"{theirs}.{part}.{kind}"
        missing = sorted(theirs for theirs in names.values() if theirs not in weights)
        unused = sorted(set(weights) - set(names.values()) - {f"{p}.embeddings.position_ids"})
        if missing or unused:
            raise ValueError(f"weights do not match the config: missing {missing[:5]}, unused {unused[:5]}")
        self.load_state_dict(
            {ours: weights[theirs] for ours, theirs in names.items()}, strict=True, assign=True
        )


def read_config(directory: Path) -> dict[str, Any]:
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def load(directory: Path, config: dict[str, Any]) -> EncoderClassifier:
    """The classifier of an artefact directory, weights read into memory (never memory-mapped: see
    `textguard.backends.load_classifier`)."""
    from safetensors import safe_open

    # Each tensor is copied out of the mapping (one copy, no intermediate bytes object), so rewriting
    # or truncating the file later cannot change or crash a running server.
    with safe_open(str(directory / "model.safetensors"), framework="pt") as handle:
        weights = {name: handle.get_tensor(name).clone() for name in handle.keys()}  # noqa: SIM118
    model = EncoderClassifier(config)
    model.load_weights({name: tensor.float() for name, tensor in weights.items()})
    return model.eval()
