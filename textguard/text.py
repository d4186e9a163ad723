"""Text normalisation: the one function every text passes through before tokenisation.

Training, evaluation, the server and batch scoring all call `normalize()`, so a model sees at serving
time exactly the kind of text it was trained on. Pure Python and torch-free; a model records the
NORMALIZER_VERSION it was trained with, so bump it whenever the output for some input changes.

What it does, in order (the order is what makes it idempotent, see `_normalize_once`):

1. lone surrogates -> U+FFFD (they cannot be encoded, so they would break tokenisers and JSON);
2. invisible characters removed: format characters (Cf: zero-width space/joiners, bidi controls,
   BOM, soft hyphen, tag characters), control characters other than whitespace, variation
   selectors, the combining grapheme joiner and Hangul fillers. Emoji ZWJ sequences therefore
   fall apart into their parts (one emoji each) and Persian ZWNJ disappears; both read the same;
3. curly quotes -> ASCII quotes, the acute accent used as an apostrophe (don´t) -> ', braille
   blank -> space;
4. Unicode NFKC: full-width forms, mathematical alphanumerics, circled letters, ligatures fold to
   their plain letters;
5. noise combining marks stripped (zalgo, strike-through and underline "fonts"): after NFKC has
   composed every legitimate accent (é, ü, Vietnamese ệ), any combining mark still following a
   Latin/Greek/Cyrillic/Armenian letter or a non-letter is noise and is dropped. After letters of
   other scripts (Arabic harakat, Hebrew niqqud, Thai and Indic vowel signs) marks are kept unless
   more than MAX_MARKS_PER_LETTER are stacked on one letter. Known loss: a few rare orthographies
   that stack an extra mark on a precomposed Latin letter (Yoruba ẹ́) lose that mark;
6. spelled-out words joined: a run of single letters separated by single spaces, dots, dashes or
   underscores ("k i l l", "k.i.l.l") is joined. Longer whitespace inside the run marks a word
   break ("h e l l o  t h e r e" -> "hello there"). A run must have at least 3 letters, more letters
   than digits/symbols, and at least 4 letters when any letter is not ASCII, because Russian
   ("а я в") and French ("y a à") have sequences of three real one-letter words;
7. whitespace collapsed to single spaces, ends stripped;
8. look-alike letters folded to Latin, but only inside a word that already contains a Latin letter
   and whose other non-Latin letters all have a Latin look-alike (the mixed-script spoof of
   Unicode TR39): "hеllo" with a Cyrillic е becomes "hello", while a genuine Russian, Greek or
   Armenian word (no Latin letter) is never touched. Small-capital "fonts" (ʜᴇʟʟᴏ) fold too;
9. leetspeak decoded inside ASCII words that mix letters with 0 1 3 4 5 7 @ $: only when such a
   character sits between two letters (h3llo, m@te, n00b, cla$$ic) or a single leading digit starts a
   word of at least 6 characters (3xcellent). Pure numbers, times, prices, dates, ordinals and
   units (2019, 10:30, $5, 3rd, 10am, 4chan, mp3, covid19), words with the digits 2 6 8 9, @mentions
   and e-mail addresses are left alone. Replacements follow the word's case (H3LLO -> HELLO);
10. runs of more than MAX_REPEAT identical characters (digits excepted) capped at MAX_REPEAT:
   "cooooool" -> "coool", "!!!!!!" -> "!!!". Three rather than two because Roman numerals
   (WWIII), "www" and German compounds (Schifffahrt) legitimately triple a letter; every
   elongation of three or more still maps to a single form;
11. output bounded to MAX_CHARS characters (inputs longer than MAX_INPUT_CHARS are cut first, so a
   pathological message cannot cost more than a bounded amount of work).

Casing is kept: the tokenizer decides whether case matters. Character classes come from the running
Python's Unicode database (UNICODE_VERSION), built once on first use.

`normalize_with_offsets()` runs the very same steps and also records, for every output character, the
range of the original text it came from, so that a span found in normalised text (evidence, a hash
match) can be shown on the message as the user wrote it. Each step tells the tracker how its output
characters derive from its input; normalize() passes no tracker and pays nothing for it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import NamedTuple

from textguard._offsets import OffsetTracker, collapse_whitespace, normalize_form, sub

NORMALIZER_VERSION = "1.0.0"
UNICODE_VERSION = unicodedata.unidata_version

#: Longest normalised output, in characters.
MAX_CHARS = 10_000
#: Inputs are cut to this length before normalising, which bounds the work per message; eight times
#: MAX_CHARS leaves room for heavy invisible padding around a full-length message.
MAX_INPUT_CHARS = 8 * MAX_CHARS
#: Identical characters kept in a row (digits are never capped).
MAX_REPEAT = 3
#: Combining marks kept on one letter of a script that uses stacked marks (Thai, Arabic, Indic...).
MAX_MARKS_PER_LETTER = 4

#: Look-alike letter -> the Latin letter it imitates. Applied only inside mixed-script words (see
#: module docstring). Every key survives NFKC unchanged (NFKC already folds full-width,
#: mathematical and circled letters) and every value is one ASCII letter, so folding keeps length.
CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j",
    "ѕ": "s", "ԁ": "d", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w", "ү": "y", "к": "k",
    "А": "A", "В": "B", "С": "C", "Е": "E", "Н": "H", "І": "I", "Ј": "J", "К": "K", "М": "M",
    "О": "O", "Р": "P", "Ѕ": "S", "Т": "T", "Х": "X", "Ү": "Y", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
    # Greek
    "α": "a", "ο": "o", "ν": "v", "ρ": "p", "τ": "t", "ι": "i", "κ": "k", "υ": "u", "χ": "x",
    "ε": "e", "γ": "y", "η": "n", "ω": "w", "ϳ": "j",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϳ": "J",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "զ": "q", "Ս": "U", "Օ": "O",
    # Latin small capitals and IPA letters used by "fancy font" generators
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ꜰ": "f", "ɢ": "g", "ʜ": "h", "ɪ": "i",
    "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ꞯ": "q", "ʀ": "r",
    "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z", "ɑ": "a", "ɡ": "g",
    "ɩ": "i",
}  # fmt: skip

#: Leetspeak character -> letter. 2 6 8 9 are deliberately absent: they read as numbers far more
#: often than as letters (h8, b2b, 1990s), and a word containing one is left alone.
LEET: dict[str, str] = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}

# Scripts whose accented letters all exist precomposed, so a combining mark left after NFKC is noise.
_STRICT_SCRIPTS = frozenset({"LATIN", "GREEK", "CYRILLIC", "ARMENIAN"})
_KEYCAP = "\u20e3"  # 1️⃣ = "1" + U+20E3: the one mark worth keeping on a non-letter
_KEYCAP_BASES = frozenset("0123456789#*")

_CONFUSABLE_TABLE = str.maketrans(CONFUSABLES)
_UNLEET_LOWER = str.maketrans(LEET)
_UNLEET_UPPER = str.maketrans({key: value.upper() for key, value in LEET.items()})
_PUNCT_TABLE = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u00b4": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',
        "\u2800": " ",
    }
)  # fmt: skip
_PUNCT_TO_FOLD = re.compile("[\u2018\u2019\u201a\u201b\u00b4\u201c\u201d\u201e\u201f\u2800]")
_SURROGATES = re.compile("[\ud800-\udfff]")
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")  # ASCII Cc that str.isspace() rejects
_SPACED_PARTS = re.compile(r"(\s+|[._\-])")
_CONFUSABLE = re.compile("[" + "".join(f"\\U{ord(char):08x}" for char in CONFUSABLES) + "]")
_CONFUSABLE_WORD = re.compile(f"(?<![^\\W_])[^\\W_]*{_CONFUSABLE.pattern}[^\\W_]*")
# A leet character touching an ASCII letter; written leet-character-first so `re` can skip ahead to
# the rare leet characters instead of trying the pattern at every position.
_LEET_HINT = re.compile(r"[013457@$](?:(?<=[A-Za-z].)|(?=[A-Za-z]))")
_LEET_TOKEN = re.compile(r"(?<![^\W_])[A-Za-z0-9@$]+(?![^\W_])")
_LEET_RUN = re.compile(r"[013457@$]+")
_REPEATS = re.compile("(.)" + r"\1" * (MAX_REPEAT - 1) + r"\1+", re.DOTALL)
# Two single characters in a row between separators: cheap test for a possible spelled-out run.
_MAYBE_SPELLED = re.compile(r"[\s._\-](?:[^\W_]|[@$])[\s._\-]+(?:[^\W_]|[@$])(?![^\W_])")


def normalize(text: str) -> str:
    """Fold evasion tricks out of `text` (see module docstring); idempotent, never raises, bounded."""
    return _normalize(text, None)


class NormalizedText(NamedTuple):
    """`normalize(original)` plus where each of its characters came from in `original`.

    `spans[i]` is the half-open range `(start, end)` of the original text that output character `i`
    derives from: one character for most, several for a composed letter ("e" + U+0301 -> "é") or a
    joined run, and for a NFKC expansion ("ﬁ" -> "fi") every output character points at the one source
    character. Starts and ends never decrease along the text. Characters that were dropped (invisible
    characters, noise marks, collapsed whitespace) belong to no output character unless they sit inside
    a composed unit (a letter's own marks) or a capped repeat (the last kept character covers the run).
    """

    text: str
    spans: list[tuple[int, int]]

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The range of the original text behind normalised characters `start:end` (end exclusive)."""
        if not 0 <= start < end <= len(self.text):
            raise ValueError(f"normalised range {start}:{end} is empty or outside 0:{len(self.text)}")
        return self.spans[start][0], self.spans[end - 1][1]


def normalize_with_offsets(text: str) -> NormalizedText:
    """`normalize(text)` and, for every output character, the range of `text` it came from.

    The output string is always exactly `normalize(text)`: the same step functions run, each also
    reporting how its output characters derive from its input (see `textguard._offsets`).
    """
    tracker = OffsetTracker(min(len(text), MAX_INPUT_CHARS))
    normalized = _normalize(text, tracker)
    return NormalizedText(normalized, tracker.spans())


def _normalize(text: str, tracker: OffsetTracker | None) -> str:
    text = _normalize_once(text[:MAX_INPUT_CHARS], tracker)
    if len(text) > MAX_CHARS:
        # Re-normalise the cut text rather than just slicing: a cut can leave half a spelled-out run
        # or a word fragment that normalises differently, and the output must be a fixed point.
        if tracker is not None:
            tracker.truncate(MAX_CHARS)
        text = _normalize_once(text[:MAX_CHARS], tracker)
        if tracker is not None:
            tracker.truncate(MAX_CHARS)
        text = text[:MAX_CHARS]
    return text


def normalize_many(texts: Iterable[str]) -> list[str]:
    return [normalize(text) for text in texts]


def _normalize_once(text: str, tracker: OffsetTracker | None = None) -> str:
    # Each step only removes characters or maps them one to one, and no step can recreate the
    # pattern an earlier step removed; that ordering is what makes normalize idempotent.
    # Steps 1-5 on an ASCII string reduce to deleting control characters.
    text = sub(_ASCII_CONTROLS, "", text, tracker) if text.isascii() else _fold_unicode(text, tracker)
    text = _join_spelled_out(text, tracker)
    text = collapse_whitespace(text, tracker)
    if not text.isascii() and _CONFUSABLE.search(text):
        text = sub(_CONFUSABLE_WORD, _fold_confusable_word, text, tracker)
    if _LEET_HINT.search(text):
        text = sub(_LEET_TOKEN, _decode_leet_token, text, tracker)
    return sub(_REPEATS, _cap_repeat, text, tracker)


def _cap_repeat(match: re.Match[str]) -> str:
    char = match.group(1)
    return match.group() if char.isdigit() else char * MAX_REPEAT  # 1000000 is a number, not noise


def _fold_unicode(text: str, tracker: OffsetTracker | None) -> str:
    tables = _tables()
    text = sub(_SURROGATES, "\ufffd", text, tracker)
    # Invisible characters go before NFKC: "e<ZWSP><U+0301>" must compose to "é" now, not on a
    # second pass.
    text = sub(tables.invisible, "", text, tracker)
    if _PUNCT_TO_FOLD.search(text):
        text = text.translate(_PUNCT_TABLE)  # one character for one: offsets unchanged
    text = normalize_form("NFKC", text, tracker)
    if tables.any_mark.search(text):
        stripped = sub(tables.mark_runs, _strip_noise_marks, text, tracker)
        if stripped != text:
            # Dropping marks can make two characters adjacent that compose (Hangul jamo, Indic
            # two-part vowels); compose them now so the result is already NFC.
            text = normalize_form("NFC", stripped, tracker)
    return text


def _strip_noise_marks(match: re.Match[str]) -> str:
    base, marks = match.group(1), match.group(2)
    if not base or unicodedata.category(base) in ("Mn", "Me"):
        return ""  # marks with nothing to sit on (start of text) are pure noise
    if _stacks_marks(base):
        return match.group() if len(marks) <= MAX_MARKS_PER_LETTER else base
    if base in _KEYCAP_BASES and marks == _KEYCAP:
        return match.group()
    return base


@functools.lru_cache(maxsize=8192)
def _stacks_marks(base: str) -> bool:
    """Whether `base` belongs to a script whose text legitimately carries combining marks."""
    category = unicodedata.category(base)
    if not (category.startswith("L") or category == "Mc"):
        return False
    return _script(base) not in _STRICT_SCRIPTS


@functools.lru_cache(maxsize=8192)
def _script(char: str) -> str:
    # The first word of the Unicode name is the script for letters ("CYRILLIC SMALL LETTER I"); the
    # stdlib has no Script property and this is exact for the scripts the folding cares about.
    return unicodedata.name(char, "").split(" ", 1)[0]


def _is_latin_letter(char: str) -> bool:
    if char.isascii():
        return char.isalpha()
    return char.isalpha() and _script(char) == "LATIN"


def _join_spelled_out(text: str, tracker: OffsetTracker | None) -> str:
    if not _MAYBE_SPELLED.search(text):  # every run of 3+ items has a middle item between separators
        return text
    joined = sub(_tables().spelled_out, _join_spelled_run, text, tracker)
    if joined != text and not joined.isascii():
        # Joining can make Hangul jamo adjacent; compose so the output is already NFC.
        joined = normalize_form("NFC", joined, tracker)
    return joined


def _join_spelled_run(match: re.Match[str]) -> str:
    parts = _SPACED_PARTS.split(match.group())
    items, seps = parts[0::2], parts[1::2]
    # A separator wider than the narrowest one in the run is a word break: "h e l l o  t h e r e".
    widths = [len(sep) if sep[0].isspace() else 1 for sep in seps]
    narrowest = min(widths)
    groups: list[tuple[int, int]] = []
    start = 0
    for index, width in enumerate(widths, start=1):
        if width > narrowest:
            groups.append((start, index))
            start = index
    groups.append((start, len(items)))
    # Neighbouring groups too short to be words are judged together: otherwise "a  b  c d e f" would
    # leave "a b c" behind, which a second pass (now single-spaced) would join.
    blocks: list[tuple[int, int]] = []
    previous_is_word = True
    for start, end in groups:
        is_word = _spells_word(items[start:end])
        if blocks and not is_word and not previous_is_word:
            blocks[-1] = (blocks[-1][0], end)
        else:
            blocks.append((start, end))
        previous_is_word = is_word
    pieces: list[str] = []
    for start, end in blocks:
        if pieces:
            pieces.append(seps[start - 1])
        if _spells_word(items[start:end]):
            pieces.append("".join(items[start:end]))
        else:
            pieces.append(items[start] + "".join(seps[k] + items[k + 1] for k in range(start, end - 1)))
    return "".join(pieces)


def _spells_word(items: list[str]) -> bool:
    letters = [char for char in items if char.isalpha()]
    if len(letters) * 2 <= len(items):
        return False  # mostly digits or symbols: a number, a list, a code
    # Judge letters as they will read after look-alike folding, so that "ᴋ ɪ ʟ" and "k i l" agree.
    latin = all(char.isascii() or (char in CONFUSABLES and _script(char) == "LATIN") for char in letters)
    return len(letters) >= (3 if latin else 4)


def _fold_confusable_word(match: re.Match[str]) -> str:
    word = match.group()
    has_latin = False
    for char in word:
        if char in CONFUSABLES:
            has_latin = has_latin or _script(char) == "LATIN"
        elif _is_latin_letter(char):
            has_latin = True
        elif char.isalpha():
            return word  # a letter of another script with no Latin twin: a genuine non-Latin word
    return word.translate(_CONFUSABLE_TABLE) if has_latin else word


def _decode_leet_token(match: re.Match[str]) -> str:
    token = match.group()
    if not _LEET_HINT.search(token) or any(char in "2689" for char in token):
        return token
    if "@" in token and _followed_by_domain(match):
        return token  # user@example.com
    if match.end() < len(match.string) and match.string[match.end()] == _KEYCAP:
        return token  # 0️⃣ must stay a digit: the keycap mark is only kept on digits
    size = len(token)
    runs = [(run.start(), run.end()) for run in _LEET_RUN.finditer(token)]
    interior = any(start > 0 and end < size for start, end in runs)
    lead = runs[0][1] if runs[0][0] == 0 else 0
    # A lone leading digit before a long word reads as a letter (3xcellent); before a short one
    # it is a number glued to a unit or name (3rd, 10am, 4chan), so it stays.
    lead_is_letter = lead == 1 and token[0].isdigit() and size - 1 >= 5
    if not (interior or lead_is_letter):
        return token
    keep = 0 if lead_is_letter else lead  # an unconverted lead (@mention, $cashtag, 3) stays as is
    upper = all(char.isupper() for char in token if char.isalpha())
    return token[:keep] + token[keep:].translate(_UNLEET_UPPER if upper else _UNLEET_LOWER)


def _followed_by_domain(match: re.Match[str]) -> bool:
    text, end = match.string, match.end()
    return end + 1 < len(text) and text[end] == "." and text[end + 1].isalnum()


class _Tables(NamedTuple):
    invisible: re.Pattern[str]
    any_mark: re.Pattern[str]
    mark_runs: re.Pattern[str]
    spelled_out: re.Pattern[str]


@functools.cache
def _tables() -> _Tables:
    """Character classes derived from the Unicode database; built once, on first use (~0.2 s)."""
    invisible: list[int] = [0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0]  # CGJ, Hangul fillers
    invisible += range(0xFE00, 0xFE10)  # variation selectors
    invisible += range(0xE0100, 0xE01F0)
    marks: list[int] = []  # Mn, Me: characters that stack on the previous one
    spacing_marks: list[int] = []
    skip = set(invisible)
    for code in chain(range(0x30000), range(0xE0000, 0xE1000)):  # no Cf/Cc/M* outside these planes
        if code in skip:
            continue
        char = chr(code)
        category = unicodedata.category(char)
        if category == "Cf" or (category == "Cc" and not char.isspace()):
            invisible.append(code)
        elif category in ("Mn", "Me"):
            marks.append(code)
        elif category == "Mc":
            spacing_marks.append(code)
    mark = _char_class(marks)
    glued = _char_class(sorted(marks + spacing_marks))
    item = r"(?:[^\W_]|[@$])"
    return _Tables(
        # One class (not _char_class): the astral part is a handful of ranges, and a plain class
        # under + runs in re's fast single-character loop.
        invisible=re.compile(f"[{_ranges_body(sorted(invisible))}]+"),
        # A quick superset test: BMP marks (one bitmap lookup) or any historic-script astral
        # character, where every astral mark lives (emoji, at U+1F000 and up, never match).
        any_mark=re.compile(
            f"[{_ranges_body([code for code in marks if code <= 0xFFFF])}\\U00010000-\\U0001efff]"
        ),
        mark_runs=re.compile(f"(.?)({mark}+)", re.DOTALL),
        # Single characters, not glued to a word, an @/$ or a mark, separated by whitespace or one
        # of . - _ : a spelled-out word candidate. _join_spelled_run decides what to join.
        spelled_out=re.compile(
            rf"(?<![^\W_])(?<![@$])(?<!{glued}){item}(?:(?:\s+|[._\-]){item})+(?![^\W_])(?![@$])(?!{glued})"
        ),
    )


def _char_class(codes: list[int]) -> str:
    """A one-character regex atom matching the sorted code points `codes`.

    Split at the BMP: `re` tests a BMP-only class with a bitmap, one lookup per character, but a
    class reaching beyond U+FFFF as a list of ranges scanned in turn (hundreds for the marks), so
    the astral part is only consulted for astral characters.
    """
    bmp = [code for code in codes if code <= 0xFFFF]
    astral = [code for code in codes if code > 0xFFFF]
    atom = f"[{_ranges_body(bmp)}]"
    if astral:
        atom = f"(?:{atom}|(?=[\U00010000-\U0010ffff])[{_ranges_body(astral)}])"
    return atom


def _ranges_body(codes: list[int]) -> str:
    # \U escapes for every code point: no character needs escaping inside the class.
    return "".join(
        f"\\U{first:08x}" if first == last else f"\\U{first:08x}-\\U{last:08x}"
        for first, last in _ranges(codes)
    )


def _ranges(codes: list[int]) -> Iterator[tuple[int, int]]:
    if not codes:
        return
    first = last = codes[0]
    for code in codes[1:]:
        if code == last + 1:
            last = code
            continue
        yield first, last
        first = last = code
    yield first, last
