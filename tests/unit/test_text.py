"""normalize(): evasion folding, what it must leave alone, and its invariants (idempotent, total, bounded)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textguard.text import (
    CONFUSABLES,
    MAX_CHARS,
    MAX_REPEAT,
    NORMALIZER_VERSION,
    normalize,
    normalize_many,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces chosen to hit every folding rule and the places where two rules meet (separators next to
# single letters, leet digits next to look-alikes, marks next to keycaps, Hangul jamo that compose).
PIECES = [
    "a", "b", "e", "l", "o", "s", "t", "A", "L", "O", "0", "1", "3", "4", "5", "7", "2", "9", "@", "$",
    " ", "  ", "\t", "\n", ".", "-", "_", ",", "!", "é", "à", "ß", "ı", "а", "е", "я", "в", "і", "ο", "ʜ",
    "ᴇ", "ʟ", "ᴏ", "\u0301", "\u0336", "\u0308", "\u20e3", "\u200b", "\u200d", "\u202e", "\u00ad", "\ufe0f",
    "\ufeff", "\x00", "\x07", "ก", "\u0e48", "ب", "\u064e", "ᄀ", "ᅡ", "\u0b47", "\u0b3e", "ｈ", "𝐡", "ﬁ",
    "´", "’", "😀", "\U0001f3fb", "\ud83d", "\udc00", "com", "mail", "hello", "10:30",
]  # fmt: skip
pieces_text = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
any_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec=None), max_size=80),  # lone surrogates included
    pieces_text,
)


def test_version_is_bumped() -> None:
    assert NORMALIZER_VERSION == "1.0.0"


@FAST
@given(any_text)
def test_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@FAST
@given(pieces_text)
def test_idempotent_on_folding_edge_cases(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@FAST
@given(any_text)
def test_output_is_clean_and_bounded(text: str) -> None:
    out = normalize(text)
    assert len(out) <= MAX_CHARS
    assert out == out.strip()
    assert "  " not in out
    assert not any(0xD800 <= ord(char) <= 0xDFFF for char in out)
    out.encode("utf-8")  # encodable: no surrogates left


def test_long_input_is_truncated_to_a_fixed_point() -> None:
    text = ("hello there, see you at 10:30 " * 2000) + "e\u0301 a b c"
    out = normalize(text)
    assert len(out) <= MAX_CHARS
    assert normalize(out) == out
    assert normalize("\u200b" * 1_000_000 + "x") == ""  # beyond the input cut: bounded work


def test_normalize_many() -> None:
    assert normalize_many(["a\u200bb", "  x  "]) == ["ab", "x"]
    assert normalize_many(iter([])) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("he\u200bllo", "hello"),
        ("he\u200c\u200d\u2060llo", "hello"),
        ("\ufeffhello", "hello"),
        ("hel\u00adlo", "hello"),
        ("abc\u202edef\u202c", "abcdef"),
        ("left\u2066right\u2069", "leftright"),
        ("nul\x00 and bell\x07", "nul and bell"),
        ("tab\there\r\nnewline", "tab here newline"),
        ("  many    spaces\u00a0\u3000here  ", "many spaces here"),
        ("hello\U000e0041", "hello"),  # tag character
    ],
)
def test_invisible_and_control_characters(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("hеllo", "hello"),  # Cyrillic е
        ("pаypаl", "paypal"),  # Cyrillic а twice
        ("Неllo", "Hello"),  # Cyrillic Н е
        ("ʜᴇʟʟᴏ", "hello"),  # small capitals
        ("ｈｅｌｌｏ ｗｏｒｌｄ", "hello world"),  # full width
        ("𝐡𝐞𝐥𝐥𝐨 𝒘𝒐𝒓𝒍𝒅", "hello world"),  # mathematical bold / bold italic
        ("ⓗⓔⓛⓛⓞ", "hello"),  # circled
        ("ﬁne", "fine"),  # ligature
    ],
)
def test_confusables_fold_to_latin(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_word_of_only_lookalikes_is_left_alone() -> None:
    # Cyrillic ѕ с р е and Greek ο, no Latin letter: indistinguishable from a foreign word, so it is
    # not folded (the price of never touching genuine words); one Latin letter makes it a spoof.
    assert normalize("ѕсοре") == "ѕсοре"
    assert normalize("ѕсοpе") == "scope"


@pytest.mark.parametrize(
    "text",
    [
        "Москва — столица России",
        "Спасибо, увидимся завтра на встрече",
        "Καλημέρα σε όλους",
        "αλφα και ωμεγα",
        "Բարեւ ձեզ",
        "مرحبا بالجميع، هل تسمعونني؟",
        "שלום לכולם",
        "Привет, iPhone и Windows-приложение",
        "и я в шоке, а я в офисе",
    ],
)
def test_genuine_non_latin_words_are_unchanged(text: str) -> None:
    assert normalize(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "café über naïve Ærø façade",
        "Việt Nam vô địch, người Việt",
        "¿Dónde está la sala? Ça va très bien",
        "İstanbul'da ılık bir gün",
        "Straße Schifffahrt WWIII www.example.com",
        "उसने कहा कि वह कल आएगा कुं",
        "ผมจะไปประชุมพรุ่งนี้ ที่",
        "سَّلام عَلَيْكُم",
        "私は会議に参加しています",
        "한국어 텍스트",
    ],
)
def test_legitimate_accents_and_scripts_survive(text: str) -> None:
    assert normalize(text) == text


def test_decomposed_accents_are_recomposed() -> None:
    assert normalize("cafe\u0301") == "café"
    assert normalize("Vie\u0323\u0302t") == "Việt"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("h̸̢͓̫e̶̡͙l̷l̴̨o̵̟", "hello"),  # zalgo
        ("h\u0336e\u0336l\u0336l\u0336o\u0336", "hello"),  # strike-through "font"
        ("h\u0332e\u0332l\u0332l\u0332o\u0332", "hello"),  # underline "font"
        ("\u0301\u0301start", "start"),  # marks with no base
        ("ก" + "\u0e48" * 6 + "x", "กx"),  # zalgo on a script that legitimately stacks marks
    ],
)
def test_noise_marks_are_stripped(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("h e l l o  t h e r e", "hello there"),
        ("h e l l o", "hello"),
        ("h.e.l.l.o", "hello"),
        ("h-e-l-l-o and h_e_l_l_o", "hello and hello"),
        ("say h e l l o, please", "say hello, please"),
        ("h  e  l  l  o", "hello"),  # uniformly wide spacing is still one word
        ("U.S.A. and e.g. this", "USA. and e.g. this"),
        ("a b and I am", "a b and I am"),  # two single letters are not a spelled word
        ("il y a à faire", "il y a à faire"),  # French one-letter words
        ("а я в шоке", "а я в шоке"),  # Russian one-letter words
        ("р у с с к и й", "русский"),  # but a long spelled-out Russian word is joined
        ("1 2 3 4", "1 2 3 4"),  # a list of digits is not a word
        ("h 3 l l o", "hello"),  # spaced and leet at once
    ],
)
def test_spaced_out_letters_are_joined(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("cooooool", "coool"),
        ("noooo way!!!!!!", "nooo way!!!"),
        ("yes!!!", "yes!!!"),
        ("😀😀😀😀😀", "😀😀😀"),
        ("1000000 and 99999", "1000000 and 99999"),  # digits are never capped
    ],
)
def test_repetition_is_capped(raw: str, expected: str) -> None:
    assert normalize(raw) == expected
    assert MAX_REPEAT == 3


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("h3llo fr13nd", "hello friend"),
        ("m@te", "mate"),
        ("n00b", "noob"),
        ("cla$$ic", "classic"),
        ("3xcellent", "excellent"),
        ("H3LLO", "HELLO"),
        ("@h3llo", "@hello"),  # the mention sign stays
        ("g00d m0rn1ng", "good morning"),
    ],
)
def test_leetspeak_is_decoded(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2019",
        "10:30",
        "$5",
        "$5k and 5$",
        "12/05/2024 and 2024-05-12",
        "3rd 1st 4th 10am 5pm 1080p",
        "mp3 covid19 x86 win10",
        "4chan 3d",
        "abc123def b2b h8",
        "@user1 $AAPL",
        "john.d0e@example.com",
        "+44 20 7946 0958",
        "v1.2.3",
    ],
)
def test_numbers_times_prices_are_unchanged(text: str) -> None:
    assert normalize(text) == text


@pytest.mark.parametrize("text", ["ok 👍", "❤ love it", "flags 🇺🇸 🇫🇷", "well done 👏🏽"])
def test_emoji_are_preserved(text: str) -> None:
    assert normalize(text) == text


def test_emoji_presentation_selectors_and_joiners_are_dropped() -> None:
    assert normalize("❤\ufe0f") == "❤"
    assert normalize("👨\u200d👩\u200d👧") == "👨👩👧"
    assert normalize("1\ufe0f\u20e3") == "1\u20e3"  # keycap kept


def test_quotes_are_folded_and_case_is_kept() -> None:
    assert normalize("Don´t say ‘maybe’, say “Yes”") == "Don't say 'maybe', say \"Yes\""


def test_lone_surrogates_are_replaced() -> None:
    assert normalize("a\ud800b\udfffc") == "a\ufffdb\ufffdc"


def test_confusable_table_is_well_formed() -> None:
    import unicodedata

    for char, latin in CONFUSABLES.items():
        assert unicodedata.normalize("NFKC", char) == char, char  # NFKC would fold it first otherwise
        assert latin.isascii() and latin.isalpha() and len(latin) == 1
        assert unicodedata.name(char).split()[0] in {"LATIN", "GREEK", "CYRILLIC", "ARMENIAN"}


def test_every_combining_mark_on_a_non_letter_is_noise() -> None:
    # Guards the character classes built from the running Python's Unicode database (astral marks
    # included): no combining mark may slip through on a base that never carries one.
    import unicodedata

    planes = [*range(0x30000), *range(0xE0000, 0xE1000)]
    marks = [chr(code) for code in planes if unicodedata.category(chr(code)) in ("Mn", "Me")]
    assert len(marks) > 1500
    assert [mark for mark in marks if normalize(f"!{mark}!") != "!!"] == []
