"""Tokenisation: normalised text -> token ids. The one path used by training, evaluation and serving.

Every consumer tokenises through the Rust `tokenizers.Tokenizer` (the backend of a Hugging Face fast
tokenizer, or loaded straight from `tokenizer.json` so the ONNX server never imports transformers),
after `normalize()` and the model spec's text prefix. Padding happens per batch (dynamic padding),
never to max_length.

Two shapes of the same tokenisation:
- `encode()`: one sequence per text, truncated to max_length. Training uses it (a label belongs to the
  whole text and the model learns from its first max_length tokens).
- `encode_windows()`: every token of every text, in overlapping windows of max_length tokens, each
  window framed like a whole sequence (`[CLS] prefix + slice + [SEP]`). Scoring uses it, so a threat
  after 400 characters of small talk is read, not truncated away. A text that fits in one window gets
  exactly the ids `encode()` gives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


def load_tokenizer(directory: Path, max_length: int, *, truncate: bool = True) -> Tokenizer:
    """The artefact's tokenizer, truncating at max_length (`encode`) or not at all (`encode_windows`)."""
    path = directory / TOKENIZER_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{directory}: {TOKENIZER_FILE} is missing; save the tokenizer with save_pretrained"
        )
    tokenizer = Tokenizer.from_file(str(path))
    if truncate:
        _configure(tokenizer, max_length)
    else:
        tokenizer.no_truncation()
        tokenizer.no_padding()
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


#: Windows overlap by half their length: any run of up to half a window's tokens (a threat phrase a
#: window boundary would cut) lies whole inside one window, behind less than half a window of other
#: text (so a long benign preamble cannot dilute it more than that). Costs ~2x the tokens of the text.
WINDOW_OVERLAP = 0.5


@dataclass(frozen=True)
class EncodedWindows:
    """Windows of several texts, in text order (a text's windows are contiguous, at least one each)."""

    #: Token ids of each window, special tokens included, ready for `pad_batch`.
    input_ids: list[list[int]]
    #: Index of the text each window belongs to.
    owner: list[int]
    #: [start, end) character span of each window's tokens in its text's NORMALISED form.
    spans: list[tuple[int, int]]
    n_texts: int

    def __len__(self) -> int:
        return len(self.input_ids)


def untruncated_copy(tokenizer: Any) -> Tokenizer:
    """A private copy of the tokenizer without truncation or padding, for `encode_windows`.

    A copy, not a reconfiguration: the original may be shared with `encode()` (training, the warm-up),
    which truncates, and flipping the setting on a shared object races between threads.
    """
    copy = Tokenizer.from_str(backend_tokenizer(tokenizer).to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def truncating_copy(tokenizer: Any, max_length: int) -> Tokenizer:
    """A private copy that truncates at max_length, for `encode` (see `untruncated_copy`)."""
    copy = Tokenizer.from_str(backend_tokenizer(tokenizer).to_str())
    _configure(copy, max_length)
    return copy


def special_frame(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a single sequence ([CLS] ... [SEP])."""
    probe = tokenizer.encode("a", add_special_tokens=True)
    content = [index for index, special in enumerate(probe.special_tokens_mask) if not special]
    if not content:
        return list(probe.ids), []
    return list(probe.ids[: content[0]]), list(probe.ids[content[-1] + 1 :])


def encode_windows(
    texts: Sequence[str],
    tokenizer: Tokenizer,
    max_length: int,
    *,
    prefix: str = "",
    overlap: float = WINDOW_OVERLAP,
) -> EncodedWindows:
    """Normalise, tokenise whole texts and cut them into overlapping windows of at most max_length ids.

    `tokenizer` must not truncate (see `untruncated_copy`). `prefix` (a backbone's text prefix such as
    "query: ") is tokenised together with each text, as `encode()` would, and repeated at the start of
    every window. Cost is linear in the text's length: ~(1 + overlap) x its tokens; `normalize()` bounds
    the length (MAX_CHARS), so the number of windows per text is bounded too.
    """
    if tokenizer.truncation is not None or tokenizer.padding is not None:
        raise ValueError("encode_windows needs a tokenizer without truncation: pass untruncated_copy(...)")
    head, tail = special_frame(tokenizer)
    budget = max_length - len(head) - len(tail)
    normalised = [normalize(text) for text in texts]
    encodings = tokenizer.encode_batch([prefix + text for text in normalised], add_special_tokens=False)
    input_ids: list[list[int]] = []
    owner: list[int] = []
    spans: list[tuple[int, int]] = []
    for index, encoding in enumerate(encodings):
        ids, offsets = encoding.ids, encoding.offsets
        # Tokens that start inside the prefix are the prefix's; the rest are the text's.
        split = next((i for i, (start, _) in enumerate(offsets) if start >= len(prefix)), len(ids))
        prefix_ids, content = list(ids[:split]), ids[split:]
        size = budget - len(prefix_ids)
        if size < 1:
            raise ValueError(f"max_length {max_length} leaves no room for text after the special tokens")
        step = max(1, size - int(size * overlap))
        # A window starts every `step` tokens until the text ends, so a phrase of up to
        # size - step + 1 tokens lies whole in some window behind fewer than `step` other tokens.
        starts = list(range(0, len(content), step)) if len(content) > size else [0]
        for start in starts:
            piece = content[start : start + size]
            input_ids.append(head + prefix_ids + list(piece) + tail)
            owner.append(index)
            if piece:
                first, last = offsets[split + start], offsets[split + start + len(piece) - 1]
                spans.append((first[0] - len(prefix), last[1] - len(prefix)))
            else:
                spans.append((0, 0))
    return EncodedWindows(input_ids, owner, spans, len(texts))


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
