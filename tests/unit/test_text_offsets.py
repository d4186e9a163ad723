"""normalize_with_offsets(): the same text as normalize(), and every character traced to its source."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from textguard._offsets import segments
from textguard.perturb import perturb
from textguard.text import (
    CONFUSABLES,
    LEET,
    MAX_CHARS,
    MAX_INPUT_CHARS,
    NormalizedText,
    normalize,
    normalize_with_offsets,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Every step that changes length or order: invisibles, NFKC expansions (ligatures, ½, ㎏) and
# contractions (decomposed accents, Hangul jamo, Indic two-part vowels), zalgo marks, spelled-out
# letters, repeats, leet digits, look-alikes, curly quotes, surrogates, whitespace runs.
PIECES = [
    "a", "b", "e", "k", "l", "o", "s", "t", "A", "L", "O", "0", "1", "3", "4", "5", "7", "2", "@", "$",
    " ", "  ", "\t", "\n", ".", "-", "_", ",", "!", "!!!!", "oooo", "é", "ß", "ı", "а", "е", "я", "ο", "ʜ",
    "ᴇ", "\u0301", "\u0336", "\u0308", "\u20e3", "\u200b", "\u200d", "\u202e", "\u00ad", "\ufe0f",
    "\ufeff", "\x00", "\x07", "ก", "\u0e48", "ب", "\u064e", "ᄀ", "ᅡ", "\u11a8", "가", "\u0b47", "\u0b3e",
    "ｈ", "𝐡", "ﬁ", "ﬄ", "½", "㎏", "ｶ", "\uff9e", "´", "’", "😀", "\U0001f3fb", "\ud83d", "\udc00",
    "k i l l", "s.h.o.o.t", "h e l l o  t h e r e", "sh00t", "h3llo", "hеllo", "10:30", "com",
]  # fmt: skip
pieces_text = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
any_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec=None), max_size=80),  # lone surrogates included
    pieces_text,
)

_PUNCT = {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u00b4": "'", "\u2800": " "}
_PUNCT.update(dict.fromkeys("\u201c\u201d\u201e\u201f", '"'))


def _could_become(char: str, source: str) -> bool:
    """Whether some chain of normalize()'s folds turns a character of `source` into `char`."""
    visible = "".join(c for c in source if unicodedata.category(c) not in ("Cf", "Cc", "Mn"))
    candidates = set(source) | set(unicodedata.normalize("NFKC", source)) | set(normalize(source))
    candidates |= set(unicodedata.normalize("NFKC", visible))
    candidates |= set(unicodedata.normalize("NFKC", source.translate(str.maketrans(_PUNCT))))
    candidates |= {"\ufffd"} if any("\ud800" <= c <= "\udfff" for c in source) else set()
    candidates |= {CONFUSABLES[c] for c in list(candidates) if c in CONFUSABLES}
    candidates |= {LEET[c] for c in list(candidates) if c in LEET}
    candidates |= {c.upper() for c in list(candidates)}
    candidates |= {" "} if any(c.isspace() for c in candidates) else set()
    composed = unicodedata.normalize("NFC", unicodedata.normalize("NFKC", source))
    return char in candidates or char in composed


def _check(original: str, result: NormalizedText) -> None:
    assert result.text == normalize(original)
    assert len(result.spans) == len(result.text)
    previous = (0, 0)
    for char, (start, end) in zip(result.text, result.spans, strict=True):
        assert 0 <= start < end <= len(original)
        assert start >= previous[0] and end >= previous[1], "offsets must not go backwards"
        assert _could_become(char, original[start:end]), (char, original[start:end])
        previous = (start, end)


@FAST
@given(any_text)
def test_text_is_normalize_and_offsets_are_consistent(text: str) -> None:
    _check(text, normalize_with_offsets(text))


@FAST
@given(pieces_text)
def test_offsets_on_folding_edge_cases(text: str) -> None:
    _check(text, normalize_with_offsets(text))


KINDS = ["plain", "leetspeak", "homoglyphs", "spacing"]
WORDS = st.lists(st.text(alphabet="abcdefghiklmnoprstuwy", min_size=3, max_size=9), min_size=1, max_size=8)


@FAST
@given(WORDS, st.lists(st.sampled_from(KINDS), min_size=8), st.data())
def test_each_obfuscated_word_maps_back_to_exactly_itself(
    words: list[str], kinds: list[str], data: st.DataObject
) -> None:
    pieces, ranges, position = [], [], 0
    for index, (word, kind) in enumerate(zip(words, kinds, strict=False)):
        piece = word if kind == "plain" else perturb(word, kind, seed=index)
        if data.draw(st.booleans()):
            piece = perturb(piece, "zero_width", seed=index)
        core = piece.strip(" \u200b\u200c\u200d\u2060\ufeff\u00ad")  # where the visible word lies
        offset = position + piece.index(core)
        ranges.append((offset, offset + len(core)))
        pieces.append(piece)
        position += len(piece) + 3
    original = "   ".join(pieces)  # wide gaps: spaced-out words stay apart
    result = normalize_with_offsets(original)
    assume(result.text == " ".join(words))  # spacing can read two letter runs as one in rare layouts
    cursor = 0
    for word, expected in zip(words, ranges, strict=True):
        start = result.text.index(word, cursor)
        assert result.original_span(start, start + len(word)) == expected, (original, word)
        cursor = start + len(word)


@pytest.mark.parametrize(
    ("original", "word", "source"),
    [
        ("I w\u200bill sh00t you", "shoot", "sh00t"),
        ("we will k i l l them", "kill", "k i l l"),
        ("we will k.i.l.l them", "kill", "k.i.l.l"),
        ("the ﬁre spreads", "fire", "ﬁre"),
        ("a cafe\u0301 bomb", "café", "cafe\u0301"),
        ("ｓｈｏｏｔ them", "shoot", "ｓｈｏｏｔ"),
        ("ѕhооt them", "shoot", "ѕhооt"),
        ("z̸̢a̷p now", "zap", "z̸̢a̷p"),
        ("shoooooooot them", "shooot", "shoooooooot"),
        ("soon!!!!!!", "!!!", "!!!!!!"),
        ("\u200b\u200bshoot\u200b them", "shoot", "shoot"),
        ("ｶ\uff9eン bomb", "ガン", "ｶ\uff9eン"),
    ],
)
def test_known_tricks_map_back(original: str, word: str, source: str) -> None:
    result = normalize_with_offsets(original)
    start = result.text.index(word)
    first, last = result.original_span(start, start + len(word))
    assert original[first:last] == source


def test_long_input_is_truncated_like_normalize() -> None:
    original = "\u200b" * 10 + "sh00t them all " * (MAX_CHARS // 10)
    result = normalize_with_offsets(original)
    _check(original, result)
    assert len(result.text) == MAX_CHARS
    tail = result.text.rindex("them")
    first, last = result.original_span(tail, tail + 4)
    assert original[first:last] == "them"


def test_input_beyond_the_input_cap_is_ignored() -> None:
    original = "a" * MAX_INPUT_CHARS + " never seen"
    result = normalize_with_offsets(original)
    assert result.text == normalize(original)
    assert all(end <= MAX_INPUT_CHARS for _, end in result.spans)


def test_original_span_rejects_empty_or_outside_ranges() -> None:
    result = normalize_with_offsets("hello")
    with pytest.raises(ValueError, match="outside"):
        result.original_span(2, 2)
    with pytest.raises(ValueError, match="outside"):
        result.original_span(0, 6)


def test_empty_text() -> None:
    assert normalize_with_offsets("") == NormalizedText("", [])
    assert normalize_with_offsets("\u200b \t") == NormalizedText("", [])


@FAST
@given(any_text, st.sampled_from(["NFC", "NFKC"]))
def test_normal_form_segments_normalise_independently(text: str, form: str) -> None:
    # The segmentation behind NFKC/NFC offsets: if it ever merged too little, offsets would fall back
    # to one coarse range, so hold it to the real normal form directly.
    pieces = [unicodedata.normalize(form, text[start:end]) for start, end in segments(form, text)]
    assert "".join(pieces) == unicodedata.normalize(form, text)
