"""Caption view of a text: what a chat message would look like as a live caption (speech-to-text).

Live captions have no casing, no punctuation, no emoji or links, numbers as words, hesitation fillers
and arbitrary segment breaks. A model trained only on chat misses harmful speech in captions, so a
data config can add a caption copy of a dataset (`CaptionConfig`, `caption_rows`), and robustness
evaluation uses the same view (`textguard.perturb`, kind "caption").

Everything is deterministic for (seed, text): randomness comes from a `random.Random` seeded with a
stable hash of both (`seeded_rng`), never from the global generator, so a prepared dataset is
reproducible across processes and machines.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from pydantic import Field

from textguard.config import StrictModel
from textguard.text import normalize

EmojiMode = Literal["speak", "drop"]
UrlMode = Literal["speak", "drop"]

#: Hesitation fillers per base language; languages not listed use English.
FILLERS: dict[str, tuple[str, ...]] = {
    "en": ("um", "uh", "like", "you know"),
    "fr": ("euh", "ben", "genre", "tu vois"),
    "de": ("äh", "ähm", "also", "halt"),
    "es": ("eh", "este", "o sea", "pues"),
    "pt": ("é", "tipo", "né", "então"),
    "it": ("ehm", "cioè", "tipo", "insomma"),
    "ar": ("يعني", "اه", "طيب"),
    "nl": ("eh", "uhm", "dus", "zeg maar"),
    "tr": ("şey", "yani", "ee", "hani"),
    "ru": ("э", "ну", "типа", "короче"),
    "pl": ("yyy", "no", "jakby"),
    "uk": ("е", "ну", "типу"),
    "id": ("eh", "anu", "gitu"),
    "hi": ("उम", "मतलब", "यानी"),
}

#: The word a captioner writes for a spoken link ("check this link").
LINK_WORDS: dict[str, str] = {
    "en": "link", "fr": "lien", "de": "link", "es": "enlace", "pt": "link", "it": "link",
    "ar": "رابط", "nl": "link", "tr": "bağlantı", "ru": "ссылка", "pl": "link", "uk": "посилання",
}  # fmt: skip

_TLDS = "com|net|org|io|co|me|ly|gg|tv|xyz|info|biz|ru|de|fr|uk|es|it|nl|pt|br|tr|pl|ua|in|us|eu|app|dev"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(
    rf"(?:https?://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:{_TLDS})\b(?:/\S*)?",
    re.IGNORECASE,
)
_MENTION = re.compile(r"(?<!\w)@\w+")
_HASHTAG = re.compile(r"(?<!\w)#(?=\w)")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b", re.IGNORECASE)
# "1,000.5" in English; "1.000,5" where a comma is the decimal mark.
_NUMBER_DECIMAL_POINT = re.compile(r"\d{1,3}(?:,\d{3})+(?![\d,])|\d+(?:\.\d+)?")
_NUMBER_DECIMAL_COMMA = re.compile(r"\d{1,3}(?:\.\d{3})+(?![\d.])|\d+(?:,\d+)?")
_DECIMAL_COMMA_LANGUAGES = frozenset(
    {
        "fr",
        "de",
        "es",
        "pt",
        "it",
        "nl",
        "tr",
        "ru",
        "pl",
        "uk",
        "id",
        "cs",
        "sk",
        "ro",
        "da",
        "sv",
        "no",
        "fi",
    }
)
# Skin tones and flag letters: nobody says them.
_UNSPOKEN_EMOJI = ("EMOJI MODIFIER", "REGIONAL INDICATOR")
_INNER_APOSTROPHE = re.compile(r"(?<=\w)'(?=\w)")
# Spelling out very long digit strings word by word reads like a phone number, which is how people
# say them; num2words would produce sentences ("one hundred quintillion ...").
_MAX_SPELLED_DIGITS = 9


#: Suffix of a caption copy's id: the copy of row "r1" is "r1#caption" (or "r1#caption:<n>").
CAPTION_SUFFIX = "#caption"


class CaptionConfig(StrictModel):
    """Adds a caption copy of a dataset (one row per message, or per caption segment)."""

    enabled: bool = False
    seed: int = 0
    filler_rate: float = Field(0.1, ge=0.0, le=1.0)
    max_words_per_segment: int = Field(15, ge=3, le=200)
    emoji: EmojiMode = "drop"
    urls: UrlMode = "speak"
    # "joined": one caption row per message, same labels (the safe default for training labels).
    # "segments": one row per caption segment; each inherits the message's labels even when the
    # harmful part lands in another segment, so use it for evaluation views, not for training.
    mode: Literal["joined", "segments"] = "joined"


def seeded_rng(seed: int, *parts: str) -> random.Random:
    """A generator that depends only on `seed` and `parts` (not on PYTHONHASHSEED or the process)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(seed).encode())
    for part in parts:
        digest.update(b"\x00" + part.encode("utf-8", "surrogatepass"))
    return random.Random(int.from_bytes(digest.digest(), "big"))


def to_caption_style(
    text: str,
    *,
    language: str = "en",
    seed: int,
    filler_rate: float = 0.1,
    max_words_per_segment: int = 15,
    emoji: EmojiMode = "drop",
    urls: UrlMode = "speak",
) -> list[str]:
    """Caption segments for `text`: lower case, no punctuation, numbers spelled in `language`,
    fillers inserted at `filler_rate` per word, split into segments of at most
    `max_words_per_segment` words (lengths drawn between that minus 3 and that). Deterministic for
    (seed, text, options). Empty list when nothing speakable is left.

    Example: to_caption_style("Meet at 3, OK?", seed=0) -> ["meet at three ok"] (fillers vary).
    """
    if not 0.0 <= filler_rate <= 1.0:
        raise ValueError(f"filler_rate must be between 0 and 1, got {filler_rate}")
    if max_words_per_segment < 1:
        raise ValueError(f"max_words_per_segment must be at least 1, got {max_words_per_segment}")
    rng = seeded_rng(seed, text)
    base = _base_language(language)
    spoken = _speak_links(normalize(text), base, urls)
    spoken = _speak_emoji(spoken, emoji)
    spoken = _speak_numbers(spoken, language)
    words = _words(spoken.lower())
    words = _insert_fillers(words, FILLERS.get(base, FILLERS["en"]), filler_rate, rng)
    return [normalize(" ".join(segment)) for segment in _segments(words, max_words_per_segment, rng)]


def caption_text(
    text: str,
    *,
    language: str = "en",
    seed: int,
    filler_rate: float = 0.1,
    max_words_per_segment: int = 15,
    emoji: EmojiMode = "drop",
    urls: UrlMode = "speak",
) -> str:
    """The caption of `text` as one normalised string (the segments joined by spaces)."""
    segments = to_caption_style(
        text,
        language=language,
        seed=seed,
        filler_rate=filler_rate,
        max_words_per_segment=max_words_per_segment,
        emoji=emoji,
        urls=urls,
    )
    return normalize(" ".join(segments))


def caption_rows(rows: Iterable[Mapping[str, Any]], config: CaptionConfig) -> list[dict[str, Any]]:
    """Caption copies of prepared rows (id, text, language, ...): every other field is kept (split
    included, so a caption never leaks across splits), `source` becomes "caption" and ids get a
    "#caption" (or "#caption:<n>" per segment) suffix, as in textguard.data.caption_view. Rows
    whose caption is empty are skipped. The caller decides whether to call this (`config.enabled`).
    """
    out: list[dict[str, Any]] = []
    for row in rows:
        texts = caption_variants(str(row["id"]), str(row["text"]), str(row.get("language") or "en"), config)
        out.extend({**row, "id": row_id, "text": caption, "source": "caption"} for row_id, caption in texts)
    return out


def caption_variants(row_id: str, text: str, language: str, config: CaptionConfig) -> list[tuple[str, str]]:
    """(id, caption text) for one message: one joined copy, or one per segment in "segments" mode.

    Empty when the message has nothing speakable (e.g. only emoji with emoji="drop").
    """
    segments = to_caption_style(
        text,
        language=language or "en",
        seed=config.seed,
        filler_rate=config.filler_rate,
        max_words_per_segment=config.max_words_per_segment,
        emoji=config.emoji,
        urls=config.urls,
    )
    if config.mode == "joined":
        joined = normalize(" ".join(segments))
        return [(f"{row_id}{CAPTION_SUFFIX}", joined)] if joined else []
    return [(f"{row_id}{CAPTION_SUFFIX}:{index}", segment) for index, segment in enumerate(segments)]


def _base_language(language: str) -> str:
    return language.replace("_", "-").split("-", 1)[0].lower() or "en"


def _speak_links(text: str, language: str, mode: UrlMode) -> str:
    # Addresses are dropped or spoken before anything else, because their dots and digits would
    # otherwise be read as numbers and words.
    spoken = f" {LINK_WORDS.get(language, LINK_WORDS['en'])} " if mode == "speak" else " "
    text = _EMAIL.sub(" ", text)
    text = _URL.sub(spoken, text)
    text = _MENTION.sub(" ", text)
    return _HASHTAG.sub("", text)


def _speak_emoji(text: str, mode: EmojiMode) -> str:
    out: list[str] = []
    previous = ""
    for char in text:
        if not _is_emoji(char):
            out.append(char)
            previous = ""
            continue
        name = unicodedata.name(char, "")
        # Skin tones and repeats are not said again: "👍👍👍🏽" is one "thumbs up sign".
        if mode == "speak" and name and name != previous and not name.startswith(_UNSPOKEN_EMOJI):
            out.append(f" {name.lower()} ")
        else:
            out.append(" ")
        previous = name
    return "".join(out)


def _is_emoji(char: str) -> bool:
    code = ord(char)
    category = unicodedata.category(char)
    return category in ("So", "Sk") and (
        code >= 0x1F000 or 0x2600 <= code <= 0x27BF or 0x2B00 <= code <= 0x2BFF
    )


def _speak_numbers(text: str, language: str) -> str:
    code = _num2words_language(language)
    comma = _base_language(language) in _DECIMAL_COMMA_LANGUAGES

    def spell(number: str, ordinal: bool = False) -> str:
        # To Python's notation: drop thousands separators, decimal mark -> ".".
        plain = number.replace(".", "").replace(",", ".") if comma else number.replace(",", "")
        return _spell_number(plain, code, ordinal)

    text = _TIME.sub(lambda m: f" {spell(m.group(1))} {_minutes(m.group(2), spell)} ", text)
    text = _ORDINAL.sub(lambda m: f" {spell(m.group(1), ordinal=True)} ", text)
    number = _NUMBER_DECIMAL_COMMA if comma else _NUMBER_DECIMAL_POINT
    return number.sub(lambda m: f" {spell(m.group())} ", text)


def _minutes(minutes: str, spell: Callable[[str], str]) -> str:
    return "" if minutes == "00" else spell(minutes.lstrip("0") or "0")


def _spell_number(number: str, code: str, ordinal: bool) -> str:
    from num2words import num2words  # imported on first caption: it loads every language module

    digits = number.replace(".", "")
    if len(digits) > _MAX_SPELLED_DIGITS:
        return " ".join(_spell_number(digit, code, False) for digit in digits)
    value: int | float = float(number) if "." in number else int(number)
    for lang in (code, "en"):
        try:
            return str(num2words(value, lang=lang, to="ordinal" if ordinal else "cardinal"))
        except (NotImplementedError, ValueError, TypeError, OverflowError, KeyError, IndexError):
            continue
    return number


def _num2words_language(language: str) -> str:
    codes = _num2words_codes()
    full = language.replace("-", "_").lower()
    return codes.get(full) or codes.get(full.split("_", 1)[0]) or "en"


@functools.cache
def _num2words_codes() -> dict[str, str]:
    from num2words import CONVERTER_CLASSES

    return {code.lower(): code for code in CONVERTER_CLASSES}


def _words(text: str) -> list[str]:
    # Punctuation and symbols become word breaks, except an apostrophe inside a word (don't, l'eau),
    # which captioners keep.
    text = _INNER_APOSTROPHE.sub("\x00", text)
    kept = "".join(" " if unicodedata.category(char)[0] in "PS" else char for char in text)
    return kept.replace("\x00", "'").split()


def _insert_fillers(words: list[str], fillers: tuple[str, ...], rate: float, rng: random.Random) -> list[str]:
    out: list[str] = []
    for word in words:
        if rate and rng.random() < rate:
            out.extend(rng.choice(fillers).split())
        out.append(word)
    return out


def _segments(words: list[str], max_words: int, rng: random.Random) -> list[list[str]]:
    # Captioners break on timing, not syntax: cut at a seeded length near the maximum.
    shortest = max(1, max_words - 3)
    segments: list[list[str]] = []
    while len(words) > max_words:
        size = rng.randint(shortest, max_words)
        segments.append(words[:size])
        words = words[size:]
    if words:
        segments.append(words)
    return segments
