"""Evidence: the character spans of the original message that drove a label's score, by occlusion.

`explain()` deletes words (or, for long texts, runs of words) from the message one variant at a time,
scores every variant with the caller's own scoring function in one batch, and reports the words whose
removal lowers the label's probability the most, merged into spans of the text as the user wrote it.

Why occlusion and not integrated gradients: it needs nothing but `probabilities_fn`, the caller's one
path from text to probabilities (normalisation, windows, model, temperature), so it works the same on
the torch and the ONNX Runtime backends and measures the decision itself rather than a gradient inside
one window; its cost is a bounded number of extra texts scored in one batch (`max_variants`), which
the caller can shrink further by passing the window that fired; and deleting a word and seeing the
score fall is a faithful, easily checked statement about the model. Its known blind spot: a word the
text repeats ("kill kill kill") or two words that each alone suffice lose little when one goes, so
such evidence may be missing or weak; spans never claim more than what was measured.

Units are words of the normalised text (runs of non-space characters trimmed of punctuation; in
scripts written without spaces, each character with its marks), mapped back to the original through
`normalize_with_offsets()`, so a leetspeak, look-alike or zero-width-split word is deleted, and shown,
as the user typed it. A variant deletes a unit's original characters and keeps everything around it.

Cost: one call of `probabilities_fn` with 1 + n texts when the region has n <= max_variants units;
otherwise two calls: the first deletes runs of ceil(n / (max_variants // 2)) consecutive units, the
second splits the runs whose deletion mattered most into single units (or, when the budget left is
short, into as many smaller runs as it pays for). At most 1 + max_variants texts are scored in all,
each about as long as the region, so a span is a single word whenever the budget allows it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from textguard.text import normalize_with_offsets

ProbabilitiesFn = Callable[[list[str]], np.ndarray]

#: Texts scored per explanation besides the message itself (the cost bound).
DEFAULT_MAX_VARIANTS = 32
#: A unit counts only if deleting it lowers the probability by at least this much...
DEFAULT_MIN_DROP = 0.05
#: ... and by at least this share of the largest drop any unit caused for the label.
DEFAULT_RELATIVE_DROP = 0.3

_TOKEN = re.compile(r"\S+")
# Scripts written without spaces between words: each character (with its marks) is its own unit.
_SPACELESS_PREFIXES = ("CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN")


@dataclass(frozen=True)
class Span:
    """Characters `start:end` of the original text (`text` is that slice) and how much they mattered.

    `weight` is the largest drop in the label's probability that deleting one of the span's units
    (or, for a long text, its run of units) caused.
    """

    start: int
    end: int
    text: str
    weight: float


@dataclass(frozen=True)
class _Unit:
    start: int  # in the original text
    end: int


def explain(
    probabilities_fn: ProbabilitiesFn,
    text: str,
    label_indices: Sequence[int],
    *,
    max_spans: int = 3,
    max_variants: int = DEFAULT_MAX_VARIANTS,
    window: tuple[int, int] | None = None,
    min_drop: float = DEFAULT_MIN_DROP,
    relative_drop: float = DEFAULT_RELATIVE_DROP,
) -> dict[int, list[Span]]:
    """Spans of `text` that drove each label in `label_indices`, strongest first (at most `max_spans`).

    `probabilities_fn(texts)` returns an array [len(texts), n_labels] of probabilities; it is called
    once or twice (see the module docstring) with at most 1 + `max_variants` texts in all. `window`
    is a character range `(start, end)` of `text` (the window that fired, mapped to the original with
    `NormalizedText.original_span`): only it is scored and occluded, which bounds the cost on long
    messages. Spans are always positions in `text` itself.
    """
    labels = list(dict.fromkeys(label_indices))
    if max_variants < 2:
        raise ValueError(f"max_variants must be at least 2, got {max_variants}")
    if max_spans < 1:
        raise ValueError(f"max_spans must be at least 1, got {max_spans}")
    offset, end = window if window is not None else (0, len(text))
    if not 0 <= offset <= end <= len(text):
        raise ValueError(f"window {window} is not a range inside the text (length {len(text)})")
    region = text[offset:end]
    units = _units(region)
    if not labels or not units:
        return {label: [] for label in labels}

    scorer = _Scorer(probabilities_fn, labels)
    if len(units) <= max_variants:
        groups = [[index] for index in range(len(units))]
        drops = scorer.drops(region, [_delete(region, units, group) for group in groups])
    else:
        groups, drops = _coarse_then_fine(scorer, region, units, max_variants)

    result: dict[int, list[Span]] = {}
    for column, label in enumerate(labels):
        label_drops = drops[:, column]
        top = float(label_drops.max(initial=0.0))
        cutoff = max(min_drop, relative_drop * top)
        chosen = [
            (group, float(drop)) for group, drop in zip(groups, label_drops, strict=True) if drop >= cutoff
        ]
        spans = _merge(text, offset, units, chosen)
        result[label] = sorted(spans, key=lambda span: (-span.weight, span.start))[:max_spans]
    return result


class _Scorer:
    """Calls probabilities_fn and turns its rows into probability drops against the unoccluded text."""

    def __init__(self, probabilities_fn: ProbabilitiesFn, labels: list[int]) -> None:
        self._fn = probabilities_fn
        self._labels = labels
        self._base: np.ndarray | None = None

    def drops(self, region: str, variants: list[str]) -> np.ndarray:
        """Drops for each variant; the first call also scores the region itself as the baseline."""
        if self._base is not None and not variants:
            return np.zeros((0, len(self._labels)))
        texts = variants if self._base is not None else [region, *variants]
        probabilities = np.asarray(self._fn(texts), dtype=np.float64)
        if probabilities.ndim != 2 or probabilities.shape[0] != len(texts):
            raise ValueError(
                f"probabilities_fn returned shape {probabilities.shape} for {len(texts)} texts; "
                "expected [texts, labels]"
            )
        if probabilities.shape[1] <= max(self._labels) or min(self._labels) < 0:
            raise ValueError(
                f"label indices {self._labels} outside the {probabilities.shape[1]} labels scored"
            )
        if not np.all(np.isfinite(probabilities)):
            raise ValueError("probabilities_fn returned non-finite probabilities")
        selected = probabilities[:, self._labels]
        if self._base is None:
            self._base, selected = selected[0], selected[1:]
        return self._base[None, :] - selected


def _coarse_then_fine(
    scorer: _Scorer, region: str, units: list[_Unit], max_variants: int
) -> tuple[list[list[int]], np.ndarray]:
    # Pass 1: runs of `size` consecutive units, at most half the budget.
    runs = _chunks(list(range(len(units))), math.ceil(len(units) / (max_variants // 2)))
    run_drops = scorer.drops(region, [_delete(region, units, run) for run in runs])
    # Pass 2: split the runs that mattered most (for any label) with the budget left: into single
    # units where it suffices, else into as many pieces as it pays for. A run whose deletion changed
    # nothing is not worth splitting.
    budget = max_variants - len(runs)
    strongest = run_drops.max(axis=1)
    split: dict[int, list[list[int]]] = {}
    for index in np.argsort(-strongest, kind="stable"):
        run = runs[index]
        if budget < 2 or strongest[index] <= 0:
            break
        if len(run) > 1:
            pieces = min(len(run), budget)
            split[int(index)] = _chunks(run, math.ceil(len(run) / pieces))
            budget -= len(split[int(index)])
    parts = [part for index in sorted(split) for part in split[index]]
    part_drops = iter(scorer.drops(region, [_delete(region, units, part) for part in parts]))
    # Everything measured, in text order: split runs as their parts, the others whole.
    groups: list[list[int]] = []
    rows: list[np.ndarray] = []
    for index, run in enumerate(runs):
        for part in split.get(index, [run]):
            groups.append(part)
            rows.append(next(part_drops) if index in split else run_drops[index])
    return groups, np.stack(rows)


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _units(region: str) -> list[_Unit]:
    """Words of the normalised region, as ranges of the region itself."""
    normalized = normalize_with_offsets(region)
    units: list[_Unit] = []
    for token in _TOKEN.finditer(normalized.text):
        for start, end in _split_token(normalized.text, token.start(), token.end()):
            units.append(_Unit(*normalized.original_span(start, end)))
    return units


def _split_token(text: str, start: int, end: int) -> list[tuple[int, int]]:
    # Trim punctuation at the edges ("tomorrow!" -> "tomorrow"); keep it inside ("don't").
    while start < end and unicodedata.category(text[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(text[end - 1]).startswith("P"):
        end -= 1
    pieces: list[tuple[int, int]] = []
    piece_start = start
    index = start
    while index < end:
        if _spaceless(text[index]):
            if piece_start < index:
                pieces.append((piece_start, index))
            stop = index + 1
            while stop < end and unicodedata.category(text[stop]).startswith("M"):
                stop += 1
            pieces.append((index, stop))
            piece_start = index = stop
        else:
            index += 1
    if piece_start < end:
        pieces.append((piece_start, end))
    return pieces


def _spaceless(char: str) -> bool:
    return unicodedata.name(char, "").startswith(_SPACELESS_PREFIXES)


def _delete(region: str, units: list[_Unit], group: list[int]) -> str:
    """The region without the characters of the units in `group` (what lies between them stays)."""
    pieces: list[str] = []
    position = 0
    for index in group:
        unit = units[index]
        pieces.append(region[position : unit.start])
        position = unit.end
    pieces.append(region[position:])
    return "".join(pieces)


def _merge(text: str, offset: int, units: list[_Unit], chosen: list[tuple[list[int], float]]) -> list[Span]:
    """Join chosen groups that are neighbours in the text (consecutive units) into spans."""
    spans: list[Span] = []
    current: tuple[int, int, float] | None = None  # first unit, last unit, weight
    for group, weight in chosen:  # in text order
        first, last = group[0], group[-1]
        if current is not None and first == current[1] + 1:
            current = (current[0], last, max(current[2], weight))
            continue
        if current is not None:
            spans.append(_span(text, offset, units, current))
        current = (first, last, weight)
    if current is not None:
        spans.append(_span(text, offset, units, current))
    return spans


def _span(text: str, offset: int, units: list[_Unit], run: tuple[int, int, float]) -> Span:
    start, end = offset + units[run[0]].start, offset + units[run[1]].end
    return Span(start=start, end=end, text=text[start:end], weight=round(run[2], 6))
