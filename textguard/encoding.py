"""Tokenisation: normalised text -> token ids. The one path used by training, evaluation and serving.

Every consumer tokenises through the Rust `tokenizers.Tokenizer` (the backend of a Hugging Face fast
tokenizer, or loaded straight from `tokenizer.json` so the ONNX server never imports transformers),
after `normalize()` and the model spec's text prefix. Padding happens per batch (dynamic padding),
never to max_length.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from textguard.errors import ModelLoadError
from textguard.text import normalize

TOKENIZER_FILE = "tokenizer.json"


def backend_tokenizer(tokenizer: Any) -> Tokenizer:
    """The Rust tokenizer behind a transformers tokenizer (or the object itself)."""
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise ModelLoadError(
            f"{type(tokenizer).__name__} has no fast (Rust) tokenizer; textguard needs a tokenizer.json"
        )
    return backend


def load_tokenizer(directory: Path, max_length: int) -> Tokenizer:
    path = directory / TOKENIZER_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{directory}: {TOKENIZER_FILE} is missing; save the tokenizer with save_pretrained"
        )
    tokenizer = Tokenizer.from_file(str(path))
    _configure(tokenizer, max_length)
    return tokenizer


def _configure(tokenizer: Tokenizer, max_length: int) -> None:
    # Truncation lives on the Rust object; set it only when it differs, because the object is shared
    # between threads in the server and reconfiguring it is not free.
    current = tokenizer.truncation
    if not current or current.get("max_length") != max_length:
        tokenizer.enable_truncation(max_length=max_length)
    if tokenizer.padding is not None:
        tokenizer.no_padding()


def encode(
    texts: Sequence[str], tokenizer: Any, max_length: int, text_prefix: str = ""
) -> dict[str, list[list[int]]]:
    """Normalise, prepend the model's text prefix and tokenise (no padding).

    Returns input_ids and attention_mask lists. `text_prefix` comes from the model spec
    (`ModelSpec.text_prefix`): backbones such as e5 were pretrained on "query: <text>" and read text
    without it noticeably worse. It counts against max_length like any other token.
    """
    backend = backend_tokenizer(tokenizer)
    _configure(backend, max_length)
    encodings = backend.encode_batch(
        [text_prefix + normalize(text) for text in texts], add_special_tokens=True
    )
    return {
        "input_ids": [encoding.ids for encoding in encodings],
        "attention_mask": [encoding.attention_mask for encoding in encodings],
    }


def pad_batch(input_ids: Sequence[Sequence[int]], pad_token_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad one batch to its longest sequence: (ids, mask) as int64 arrays."""
    width = max((len(ids) for ids in input_ids), default=0)
    ids = np.full((len(input_ids), width), pad_token_id, dtype=np.int64)
    mask = np.zeros((len(input_ids), width), dtype=np.int64)
    for row, sequence in enumerate(input_ids):
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
    return ids, mask


def plan_batches(lengths: Sequence[int], max_batch_size: int, max_tokens: int) -> list[list[int]]:
    """Group indices into length-sorted batches bounded by size and by padded tokens (batch x longest).

    Sorting by length before batching avoids paying for padding: ~3x on chat traffic, where most
    messages are short and a few are long.
    """
    order = sorted(range(len(lengths)), key=lambda index: lengths[index])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[index]  # ascending order: the newcomer is the longest so far
        if current and (len(current) >= max_batch_size or (len(current) + 1) * longest > max_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
