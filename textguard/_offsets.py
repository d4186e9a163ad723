"""Offset tracking for `textguard.text`: the step helpers normalize() runs, optionally recording provenance.

Every step of normalize() is a regex substitution, a Unicode normal form, whitespace collapsing or a
one-for-one translation. The helpers here perform exactly that operation and, when given an
`OffsetTracker`, also tell it how each output character derives from the step's input:

- a replacement as long as its match maps character for character (look-alike and leetspeak folding,
  a kept run of marks);
- a replacement that is a prefix of its match (a capped repeat, a letter whose noise marks were
  dropped) maps character for character, and its last character also covers the dropped rest;
- a replacement that is a subsequence of its match (a joined spelled-out word) maps each kept character
  to where it was;
- any other replacement maps every output character to the whole match (never used by normalize(),
  but a safe answer);
- a normal form (NFKC, NFC) is applied segment by segment: a segment starts at every character that
  nothing before it can compose or reorder with, so the segments normalise independently and each
  output character maps to its segment ("ﬁ" -> "fi" both to the ligature, "e" + U+0301 -> "é" to both).

With no tracker the helpers are the plain operations, so normalize() itself pays nothing.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import Literal

Replacement = str | Callable[[re.Match[str]], str]
ComposedForm = Literal["NFC", "NFKC"]

# Hangul vowel and trailing-consonant jamo compose with the syllable before them algorithmically, so
# they appear in no decomposition mapping of the Unicode database.
_HANGUL_V = range(0x1161, 0x1176)
_HANGUL_T = range(0x11A8, 0x11C3)


class OffsetTracker:
    """For each character of the current text, the range of the original text it came from."""

    def __init__(self, length: int) -> None:
        self._starts = list(range(length))
        self._ends = list(range(1, length + 1))

    def __len__(self) -> int:
        return len(self._starts)

    def remap(self, sources: list[tuple[int, int]]) -> None:
        """Replace the text: new character i derives from current characters `sources[i]` (a range)."""
        starts, ends = self._starts, self._ends
        self._starts = [starts[first] for first, _ in sources]
        self._ends = [ends[last - 1] for _, last in sources]

    def truncate(self, length: int) -> None:
        del self._starts[length:], self._ends[length:]

    def spans(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))


def sub(pattern: re.Pattern[str], repl: Replacement, text: str, tracker: OffsetTracker | None) -> str:
    """`pattern.sub(repl, text)`, recording provenance on `tracker` when there is one.

    `repl` is a literal string (no group references) or a function of the match, as in re.sub. Every
    pattern normalize() uses matches at least one character, so finditer sees the matches sub replaces.
    """
    if tracker is None:
        return pattern.sub(repl, text)
    pieces: list[str] = []
    sources: list[tuple[int, int]] = []
    position = 0
    for match in pattern.finditer(text):
        start, end = match.span()
        pieces.append(text[position:start])
        sources.extend((index, index + 1) for index in range(position, start))
        replacement = repl(match) if callable(repl) else repl
        pieces.append(replacement)
        sources.extend(_align(match.group(), replacement, start))
        position = end
    pieces.append(text[position:])
    sources.extend((index, index + 1) for index in range(position, len(text)))
    result = "".join(pieces)
    tracker.remap(sources)
    return result


def _align(matched: str, replacement: str, offset: int) -> list[tuple[int, int]]:
    """Where each character of `replacement` came from inside `matched` (which starts at `offset`)."""
    size = len(matched)
    if len(replacement) == size:
        return [(offset + index, offset + index + 1) for index in range(size)]
    if not replacement:
        return []
    if matched.startswith(replacement):
        kept = len(replacement)
        sources = [(offset + index, offset + index + 1) for index in range(kept - 1)]
        sources.append((offset + kept - 1, offset + size))  # the last kept character stands for the rest
        return sources
    sources = []
    cursor = 0
    for char in replacement:
        found = matched.find(char, cursor)
        if found < 0:
            return [(offset, offset + size)] * len(replacement)
        sources.append((offset + found, offset + found + 1))
        cursor = found + 1
    return sources


def normalize_form(form: ComposedForm, text: str, tracker: OffsetTracker | None) -> str:
    """`unicodedata.normalize(form, text)` for form NFC or NFKC, recording provenance when tracked."""
    result = unicodedata.normalize(form, text)
    if tracker is None or result == text:
        return result  # unchanged text: every character maps to itself
    pieces: list[str] = []
    sources: list[tuple[int, int]] = []
    for start, end in segments(form, text):
        segment = text[start:end]
        normalized = unicodedata.normalize(form, segment)
        pieces.append(normalized)
        if normalized == segment:
            sources.extend((index, index + 1) for index in range(start, end))
        else:
            sources.extend([(start, end)] * len(normalized))
    if "".join(pieces) != result:
        # Not expected (the segmentation follows the Unicode stability rules and is property-tested),
        # but a coarse mapping is still true where a wrong fine one would not be.
        sources = [(0, len(text))] * len(result)
    tracker.remap(sources)
    return result


def segments(form: ComposedForm, text: str) -> Iterator[tuple[int, int]]:
    """Ranges of `text` that normal form `form` (NFC or NFKC) transforms independently of each other."""
    start = 0
    for end in range(1, len(text) + 1):
        if end == len(text) or _starts_segment(text[end], form):
            yield start, end
            start = end


@functools.lru_cache(maxsize=16384)
def _starts_segment(char: str, form: ComposedForm) -> bool:
    """Whether normalising can never merge or reorder `char` with what precedes it."""
    decomposed = unicodedata.normalize("NFKD" if form == "NFKC" else "NFD", char)
    first = decomposed[0]
    return unicodedata.combining(first) == 0 and first not in _composes_backward()


@functools.cache
def _composes_backward() -> frozenset[str]:
    """Characters that canonical composition can merge into the character before them."""
    found = {chr(code) for code in (*_HANGUL_V, *_HANGUL_T)}
    for code in range(0x30000):  # every canonical decomposition lies below U+30000
        mapping = unicodedata.decomposition(chr(code))
        if not mapping or mapping.startswith("<"):
            continue
        parts = mapping.split()
        # Only primary composites count: a composition exclusion never recomposes.
        if len(parts) == 2 and unicodedata.normalize("NFC", chr(code)) == chr(code):
            found.add(chr(int(parts[1], 16)))
    return frozenset(found)


def collapse_whitespace(text: str, tracker: OffsetTracker | None) -> str:
    """`" ".join(text.split())`; each joining space maps to the whitespace run it replaced."""
    words = text.split()  # str.split() splits on exactly what `\s` matches
    result = " ".join(words)
    if tracker is None or result == text:
        return result
    sources: list[tuple[int, int]] = []
    position = 0
    for index, word in enumerate(words):
        start = text.find(word, position)  # text[position:start] is whitespace, so this is the word
        if index:
            sources.append((position, start))
        sources.extend((offset, offset + 1) for offset in range(start, start + len(word)))
        position = start + len(word)
    tracker.remap(sources)
    return result
