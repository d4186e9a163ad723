"""A BERT-family sequence classifier for inference, in plain torch: no transformers import.

Importing transformers' model classes costs about 2.7 s on the 2-core machine (its kernel hub and
weight-conversion modules come along), most of the service's cold start. The models textguard trains
are standard encoders whose forward pass is a few dozen lines: `BertForSequenceClassification`
(all-MiniLM-L6-v2, multilingual-e5-small converted to BERT) and `XLMRobertaForSequenceClassification`.
This module runs exactly those from the artefact's `config.json` and safetensors weights, with the same
operators as transformers' SDPA path (logits equal to ~1e-6 in fp32: tests/integration/test_encoder.py),
and faster on chat traffic: padding is never computed (each sequence attends alone; everything else runs
on the real tokens only), the last layer computes only the first token's row (all the head reads),
query/key/value are one matrix product, bf16 weights are cast and packed once (on the bench texts, one
core, before per-sequence attention: about 1.3x transformers' fp32 path and its bf16 autocast path;
bench/serve_load.py measures the service), and packed products run on bucketed row counts, so oneDNN
reuses the kernels it compiled instead of compiling for nearly every drain (`padded_rows`).

`supports(config)` says whether a config is one of them; anything else (another architecture,
relative positions, a decoder) is loaded through transformers by `textguard.backends`. Training and
ONNX export keep using transformers' classes; scoring after training (calibration, test metrics, the
bf16 parity record) runs through this module, as the artefact will be served.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: model_type -> (prefix of the encoder's weights, positions start after the padding id)
ARCHITECTURES = {"bert": ("bert", False), "xlm-roberta": ("roberta", True), "roberta": ("roberta", True)}
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
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


class _LoadedLinear(nn.Linear):
    """A linear layer whose weights are always loaded (`load_weights`): the random initialisation of
    e5's 50 layers costs 0.1 s of CPU per load (profiler) for nothing."""

    def reset_parameters(self) -> None:
        pass


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float, act: str) -> None:
        super().__init__()
        self.heads = heads
        # Query, key and value in one matrix product (their weights concatenated at load).
        self.qkv = _LoadedLinear(hidden, 3 * hidden)
        self.attention_output = _LoadedLinear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = _LoadedLinear(hidden, intermediate)
        self.output = _LoadedLinear(intermediate, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=eps)
        self.act = act

    def forward(self, x: torch.Tensor, tokens: _Tokens, first_only: bool = False) -> torch.Tensor:
        """x: [real tokens, hidden], the residual stream (fp32). `first_only`: answer each sequence's
        first-token row only, [batch, hidden] (all a classifier reads of the last layer): keys and values
        still come from every token; the query, the attention output and the feed-forward block (most of
        a layer's products) run on one row per sequence."""
        attended = tokens.attend(_linear(self.qkv, x), self.heads, first_only=first_only)
        if first_only:
            x = x.index_select(0, tokens.first)
        x = self.attention_norm(_linear(self.attention_output, attended) + x)
        return self.output_norm(_linear(self.output, _linear(self.intermediate, x, self.act)) + x)


def _linear(layer: nn.Linear, x: torch.Tensor, activation: str | None = None) -> torch.Tensor:
    """`activation(layer(x))` in the layer's dtype: bf16 layers take a bf16 copy of x and answer bf16, as
    autocast does, but with weights cast (and packed for oneDNN) once rather than on every pass."""
    packed = layer.__dict__.get(_PACKED)
    if packed is None:
        out = F.linear(x.to(layer.weight.dtype), layer.weight, layer.bias)
        return ACTIVATIONS[activation](out) if activation else out
    rows = x.shape[0]
    source = _bf16_rows(x, padded_rows(rows))
    out = torch.ops.mkldnn._linear_pointwise(source, packed, layer.bias, "none", [], "")
    # Not fused into the packed product (oneDNN can): GELU before rounding to bf16 moved the demo model's
    # bf16 parity from 0.0113 to 0.0133 (max |prob diff| on 512 validation texts), for no measured gain.
    # Applied before the padding rows are dropped, so oneDNN's GELU sees the same bucketed shapes.
    out = ACTIVATIONS[activation](out) if activation else out
    return out[:rows]


#: Row counts up to this run as they are; above it, packed products round their rows up (`padded_rows`).
EXACT_ROWS = 16


def padded_rows(rows: int) -> int:
    """The row count a packed bf16 product runs at: `rows` up to EXACT_ROWS, then rounded up to one of
    eight steps per power of two (at most 1/8 more rows, all zeros).

    oneDNN builds a primitive, JIT-compiling its kernels, for every new input shape, and keeps 1,024 of
    them. Chat drains run on their real tokens only, so nearly every drain brings a new row count
    (MiniLM, 600 random drains of 1-16 bench texts: 2,444 primitives built, 1.25 ms of compiling per
    text, ONEDNN_VERBOSE=profile_create; served at c=32, a fifth of an inference worker's time). In
    steps, the shapes are few (five primitives per step: four products and GELU; ~90 steps up to 64
    texts of 128 tokens) and stay cached. Rows of a matrix product are computed independently, so the
    real rows' results do not change (bit-identical on the bench texts; tests/integration/
    test_encoder.py)."""
    if rows <= EXACT_ROWS:
        return rows
    step = 1 << (rows.bit_length() - 4)
    return -(-rows // step) * step


def _bf16_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """A contiguous bf16 copy of x ([n, features]) with zero rows appended up to `rows` (x itself where
    it already is one)."""
    if rows == x.shape[0]:
        return x.to(torch.bfloat16).contiguous()
    padded = x.new_empty((rows, x.shape[1]), dtype=torch.bfloat16)
    padded[: x.shape[0]].copy_(x)
    padded[x.shape[0] :].zero_()
    return padded


#: Attribute of a bf16 nn.Linear holding its weight packed in oneDNN's layout for this CPU. Packed once,
#: the matrix products run 1.2-2x faster than `F.linear`, which repacks the weight on every call
#: (measured on an AMX Xeon, one thread, chat-sized batches; bit-identical results).
_PACKED = "packed_weight"


def _pack_for_onednn(layer: nn.Linear) -> None:
    """Pack a bf16 layer's weight for oneDNN where this torch build and CPU can (checked on a small
    product against `F.linear`); otherwise leave it to `F.linear`."""
    mkldnn = torch.ops.mkldnn
    if not (torch.backends.mkldnn.is_available() and hasattr(mkldnn, "_reorder_linear_weight")):
        return
    try:
        packed = mkldnn._reorder_linear_weight(layer.weight.detach(), 64)
        probe = torch.linspace(-1, 1, 3 * layer.in_features).reshape(3, -1).to(torch.bfloat16)
        ours = mkldnn._linear_pointwise(probe, packed, layer.bias, "none", [], "")
        if not torch.equal(ours, F.linear(probe, layer.weight, layer.bias)):
            return
    except (RuntimeError, TypeError, AttributeError):  # an op this build lacks or refuses
        return
    layer.__dict__[_PACKED] = packed


#: How attention meets a batch of sequences of different lengths (everything else runs on the real
#: tokens only). "per-sequence": each sequence attends alone, over its real tokens, with no mask;
#: "padded": the batch is scattered back into [batch, length] and attends at once under a padding mask.
#: The same in fp32 (to ~1e-7); in bf16 their roundings differ slightly, so a bf16 parity record names
#: the layout it was measured with and is served with that one (`textguard.parity`). Per-sequence is
#: the faster on CPU: torch's CPU attention kernel on a padded batch costs 1.5-2.5x more at lengths that
#: are not a multiple of 16, and computes the padding (`bench/encoder_layouts.py`, one thread, bf16:
#: MiniLM 1.02-1.16x at drains of 1-16 texts, 1.50x at 32; e5 up to 1.13x). On a GPU the backend runs
#: the padded layout (one kernel for the batch rather than one per sequence).
ATTENTION_LAYOUTS = ("per-sequence", "padded")

#: Which rows the last layer computes. "first-token": each sequence's first token only, all the pooler
#: reads (keys and values still come from every token; the query, attention output and feed-forward
#: products, most of a layer, run on one row per sequence); "all-tokens": every row, as transformers
#: does (and parity records written before "first-token" existed were measured). Equal in fp32 (to
#: ~6e-8); bf16 rounds a product of one row slightly differently from the same row in a larger product
#: (up to 6e-5 on the bench models), so a bf16 parity record names the mode it was measured with.
#: `bench/encoder_layouts.py --compare last-layer` (one thread, bf16, drains of 1-32 texts): MiniLM
#: 1.04-1.13x per text, e5 1.02-1.07x (its last layer is one of twelve, not six).
LAST_LAYER_ROWS = ("first-token", "all-tokens")


class _Tokens:
    """Where the real tokens of a right-padded batch are.

    Everything but attention runs on the real tokens only ([tokens, hidden]); attention runs on each
    sequence alone, or (the "padded" layout) on the batch scattered back into [batch, length] under a
    mask. Chat messages batched together differ in length (on the bench texts 64% of a batch's
    positions are real), and the matrix products, GELU and LayerNorm then skip the padding instead of
    computing it.
    """

    def __init__(self, attention_mask: torch.Tensor, attention: str = ATTENTION_LAYOUTS[0]) -> None:
        self.batch, self.length = attention_mask.shape
        real = attention_mask.bool()
        if not bool(real[:, 0].all()):
            raise ValueError("every sequence must start with a real token (right padding)")
        counts = real.sum(dim=1)
        #: None when nothing is padding (one sequence, or equal lengths): no scatter, gather or split.
        self.index = None if bool(real.all()) else real.reshape(-1).nonzero().squeeze(1)
        #: Each sequence's number of real tokens, when they attend one at a time.
        self.lengths: list[int] | None = (
            counts.tolist() if attention == ATTENTION_LAYOUTS[0] and self.index is not None else None
        )
        padded = self.index is not None and self.lengths is None
        self.attention_mask = real[:, None, None, :] if padded else None
        #: Row of each sequence's first token in [tokens, hidden].
        self.first = torch.cumsum(counts, dim=0) - counts

    def attend(self, qkv: torch.Tensor, heads: int, first_only: bool = False) -> torch.Tensor:
        """Self-attention: [tokens, 3 * hidden] (query, key, value) -> [tokens, hidden], or with
        `first_only` each sequence's first-token row only -> [batch, hidden]."""
        queries = 1 if first_only else None
        if self.lengths is not None:
            chunks = qkv.split(self.lengths)
            return torch.cat([_attention(chunk.unsqueeze(0), heads, queries=queries)[0] for chunk in chunks])
        attended = _attention(self.pad(qkv), heads, self.attention_mask, queries)
        return attended[:, 0] if first_only else self.unpad(attended)

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """[batch, length, ...] -> [tokens, ...]."""
        flat = padded.reshape(self.batch * self.length, *padded.shape[2:])
        return flat if self.index is None else flat.index_select(0, self.index)

    def pad(self, packed: torch.Tensor) -> torch.Tensor:
        """[tokens, width] -> [batch, length, width], zeros at padding."""
        if self.index is None:
            return packed.view(self.batch, self.length, -1)
        padded = packed.new_zeros(self.batch * self.length, packed.shape[-1])
        padded.index_copy_(0, self.index, packed)
        return padded.view(self.batch, self.length, -1)


def _attention(
    qkv: torch.Tensor, heads: int, mask: torch.Tensor | None = None, queries: int | None = None
) -> torch.Tensor:
    """[batch, length, 3 * hidden] -> [batch, length, hidden], as transformers' SDPA path computes it;
    with `queries`, only the first `queries` positions attend: [batch, queries, hidden]."""
    batch, length, width = qkv.shape
    hidden = width // 3
    q, k, v = qkv.view(batch, length, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4)
    if queries is not None:
        q = q[:, :, :queries]
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attended.transpose(1, 2).reshape(batch, q.shape[2], hidden)


class EncoderClassifier(nn.Module):
    """Embeddings, post-LayerNorm encoder layers, then BERT's pooler + classifier or RoBERTa's head.

    `set_precision(bf16=True)` computes as transformers' model under CPU autocast: matrix products,
    attention, GELU and the head in bf16, the residual stream and LayerNorm in fp32 (on the demo model:
    the same bf16 parity as autocast, 0.0113 max |prob diff| on 512 validation texts).
    """

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
        self.pool = _LoadedLinear(hidden, hidden)
        self.classifier = _LoadedLinear(hidden, labels)
        self._fp32_linears: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        #: One of ATTENTION_LAYOUTS (`set_attention`).
        self.attention = ATTENTION_LAYOUTS[0]
        #: One of LAST_LAYER_ROWS (`set_last_layer`).
        self.last_layer = LAST_LAYER_ROWS[0]

    def set_attention(self, layout: str) -> None:
        """Attend per sequence or over the padded batch (ATTENTION_LAYOUTS)."""
        if layout not in ATTENTION_LAYOUTS:
            raise ValueError(f"unknown attention layout {layout!r}: one of {', '.join(ATTENTION_LAYOUTS)}")
        self.attention = layout

    def set_last_layer(self, rows: str) -> None:
        """Compute the last layer for each sequence's first token only, or for every token
        (LAST_LAYER_ROWS)."""
        if rows not in LAST_LAYER_ROWS:
            raise ValueError(f"unknown last-layer rows {rows!r}: one of {', '.join(LAST_LAYER_ROWS)}")
        self.last_layer = rows

    @property
    def bf16(self) -> bool:
        return self.pool.weight.dtype == torch.bfloat16

    def set_precision(self, bf16: bool) -> None:
        """Run the matrix products on bf16 copies of the linear layers' weights (fp32 ones are kept)."""
        if bf16 == self.bf16:
            return
        for name, module in self.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            if bf16:
                self._fp32_linears[name] = (module.weight, module.bias)
                module.weight = nn.Parameter(module.weight.detach().bfloat16(), requires_grad=False)
                if module.bias is not None:
                    module.bias = nn.Parameter(module.bias.detach().bfloat16(), requires_grad=False)
                if module.weight.device.type == "cpu":
                    _pack_for_onednn(module)
            else:
                module.__dict__.pop(_PACKED, None)
                weight, bias = self._fp32_linears.pop(name)
                module.weight = nn.Parameter(weight, requires_grad=False)
                if bias is not None:  # every layer here has a bias
                    module.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits [batch, labels] (fp32) of a right-padded batch."""
        tokens = _Tokens(attention_mask, self.attention)
        if self.roberta_positions:  # positions count real tokens only, after the padding id
            real = input_ids.ne(self.pad_token_id).long()
            positions = torch.cumsum(real, dim=1) * real + self.pad_token_id
        else:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        x = (
            self.word_embeddings(tokens.unpad(input_ids))
            + self.token_type_embeddings.weight[0]
            + self.position_embeddings(tokens.unpad(positions))
        )
        x = self.embedding_norm(x)
        first_only = self.last_layer == LAST_LAYER_ROWS[0]
        for index, layer in enumerate(self.layers):
            x = layer(x, tokens, first_only=first_only and index == len(self.layers) - 1)
        if not first_only:
            x = x.index_select(0, tokens.first)
        pooled = torch.tanh(_linear(self.pool, x))
        return _linear(self.classifier, pooled).float()

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
        #: our fused parameter -> the parameters concatenated into it (along the output rows)
        fused: dict[str, list[str]] = {}
        for index in range(len(self.layers)):
            theirs = f"{p}.encoder.layer.{index}"
            for kind in ("weight", "bias"):
                fused[f"layers.{index}.qkv.{kind}"] = [
                    f"{theirs}.attention.self.{part}.{kind}" for part in ("query", "key", "value")
                ]
            for ours, part in {
                "attention_output": "attention.output.dense",
                "attention_norm": "attention.output.LayerNorm",
                "intermediate": "intermediate.dense",
                "output": "output.dense",
                "output_norm": "output.LayerNorm",
            }.items():
                for kind in ("weight", "bias"):
                    names[f"layers.{index}.{ours}.{kind}"] = f"{theirs}.{part}.{kind}"
        expected = set(names.values()).union(*fused.values())
        missing = sorted(theirs for theirs in expected if theirs not in weights)
        unused = sorted(set(weights) - expected - {f"{p}.embeddings.position_ids"})
        if missing or unused:
            raise ValueError(f"weights do not match the config: missing {missing[:5]}, unused {unused[:5]}")
        state = {ours: weights[theirs] for ours, theirs in names.items()}
        state.update({ours: torch.cat([weights[part] for part in parts]) for ours, parts in fused.items()})
        self.load_state_dict(state, strict=True, assign=True)


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


def from_transformers(model: Any) -> EncoderClassifier | None:
    """The classifier computing with an in-memory transformers model's weights (shared, not copied,
    except the fused query/key/value), or None when this module does not run its architecture."""
    config = model.config.to_dict()
    if not supports(config):
        return None
    ours = EncoderClassifier(config)
    ours.load_weights({name: tensor.detach().float() for name, tensor in model.state_dict().items()})
    return ours.to(model.device).eval()
