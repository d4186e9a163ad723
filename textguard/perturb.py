"""Seeded text perturbations: robustness evaluation and training augmentation.

Each perturbation imitates one way people dodge a filter (leetspeak, look-alike letters, invisible
characters, spaced-out letters, typos) or one channel the model must also work on (live captions).
`normalize()` is designed to undo the first four: normalize(perturb(x, kind)) == normalize(x) for
"zero_width", "homoglyphs" and "leetspeak" on any text (property-tested), and for "spacing" except
in rare layouts where the spaced word sits in a run of other spelled-out letters. An evaluation that
perturbs its test set therefore measures what the normaliser does not fold back (typos, captions)
plus how the model copes.

Deterministic: `perturb(text, kind, seed)` depends only on its arguments.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence

from textguard.caption import caption_text, seeded_rng
from textguard.text import CONFUSABLES, LEET

Perturbation = Callable[[str, random.Random], str]

# Word edges: whitespace or ASCII punctuation, but not @ $ (mentions, prices, leet) and not
# characters normalize() deletes or folds (invisible, marks, other scripts), which could glue the
# word to its neighbour and change how normalize() reads it.
_EDGE = r"\s!\"#%&'()*+,/:;<=>?\[\\\]^`{|}~"
# Whole ASCII words in one case pattern (lower, Title, UPPER) so normalize() can restore the case.
_ASCII_WORD = re.compile(rf"(?:^|(?<=[{_EDGE}.\-]))(?:[a-z]+|[A-Z][a-z]+|[A-Z]+)(?=[{_EDGE}.\-]|$)")
# Words to space out must not touch . - _ either: those join spelled-out letters too.
_SPACEABLE_WORD = re.compile(rf"(?:^|(?<=[{_EDGE}]))[A-Za-z]{{3,}}(?=[{_EDGE}]|$)")
_LETTER_WORD = re.compile(r"[^\W\d_]{3,}")
_INVISIBLE = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad")


def _inverse(table: dict[str, str], keep: Callable[[str], bool]) -> dict[str, tuple[str, ...]]:
    inverse: dict[str, list[str]] = {}
    for source, target in table.items():
        if keep(source):
            inverse.setdefault(target, []).append(source)
    return {target: tuple(sources) for target, sources in inverse.items()}


# Latin letter -> look-alikes from other scripts: the inverse of normalize()'s fold table, so that
# every inserted look-alike folds back to the letter it replaced.
_HOMOGLYPHS = _inverse(CONFUSABLES, lambda char: not unicodedata.name(char).startswith("LATIN"))
# Letter -> leet characters, both cases (normalize() restores the case from the rest of the word).
_LEETIFY = _inverse(LEET, lambda char: True)
_LEETIFY.update({letter.upper(): symbols for letter, symbols in _LEETIFY.items()})


def leetspeak(text: str, rng: random.Random) -> str:
    """Replace inner letters of words with digits/symbols (hello -> h3llo, later -> l@t3r)."""

    def word(match: re.Match[str]) -> str:
        token = match.group()
        # Only inner letters: a leet character at a word's edge is ambiguous (mp3, 4chan), and
        # normalize() rightly leaves it alone. No @ before a dot: that reads as an e-mail address.
        at_ok = not text.startswith(".", match.end())
        inner = [index for index in range(1, len(token) - 1) if token[index] in _LEETIFY]

        def leet(char: str) -> str:
            return rng.choice([symbol for symbol in _LEETIFY[char] if at_ok or symbol != "@"])

        return _replace_some(token, inner, leet, rng)

    return _perturb_some_words(text, _ASCII_WORD, word, rng, min_length=3)


def homoglyphs(text: str, rng: random.Random) -> str:
    """Swap Latin letters for Cyrillic/Greek/Armenian look-alikes, keeping one Latin letter per word
    (a word with no Latin letter left is indistinguishable from a genuine foreign word)."""

    def word(match: re.Match[str]) -> str:
        token = match.group()
        swappable = [index for index, char in enumerate(token) if char in _HOMOGLYPHS]
        if len(swappable) == len(token):
            swappable.remove(rng.choice(swappable))
        return _replace_some(token, swappable, lambda char: rng.choice(_HOMOGLYPHS[char]), rng)

    return _perturb_some_words(text, _ASCII_WORD, word, rng, min_length=2)


def zero_width(text: str, rng: random.Random) -> str:
    """Insert invisible characters (zero-width space/joiners, word joiner, BOM, soft hyphen)."""
    count = rng.randint(1, max(1, len(text) // 4))
    chars = list(text)
    for _ in range(count):
        chars.insert(rng.randint(0, len(chars)), rng.choice(_INVISIBLE))
    return "".join(chars)


def spacing(text: str, rng: random.Random) -> str:
    """Spell words out letter by letter ("see you" -> "s e e  you"), with a double space
    where the word meets its neighbours, as people do when they space words out."""
    matches = list(_SPACEABLE_WORD.finditer(text))
    if not matches:
        return text
    chosen = _choose(matches, rng)
    out: list[str] = []
    position = 0
    for match in chosen:
        start, end = match.span()
        left = " " if start > 0 and text[start - 1].isspace() else ""
        right = " " if end < len(text) and text[end].isspace() else ""
        out.append(text[position:start] + left + " ".join(match.group()) + right)
        position = end
    out.append(text[position:])
    return "".join(out)


def caption(text: str, rng: random.Random) -> str:
    """The live-caption view of the text (English fillers and number words)."""
    return caption_text(text, seed=rng.randrange(2**32))


def typos(text: str, rng: random.Random) -> str:
    """One typo per chosen word: swap two neighbouring letters, drop one or double one."""

    def word(match: re.Match[str]) -> str:
        token = match.group()
        operation = rng.choice(("swap", "drop", "double"))
        swappable = [index for index in range(len(token) - 1) if token[index] != token[index + 1]]
        if operation == "swap" and swappable:
            index = rng.choice(swappable)
            return token[:index] + token[index + 1] + token[index] + token[index + 2 :]
        index = rng.randrange(len(token))
        if operation == "drop":
            return token[:index] + token[index + 1 :]
        return token[:index] + token[index] + token[index:]

    return _perturb_some_words(text, _LETTER_WORD, word, rng, min_length=3)


PERTURBATIONS: dict[str, Perturbation] = {
    "leetspeak": leetspeak,
    "homoglyphs": homoglyphs,
    "zero_width": zero_width,
    "spacing": spacing,
    "caption": caption,
    "typos": typos,
}


def perturb(text: str, kind: str, seed: int = 0) -> str:
    """Apply perturbation `kind` to `text`; the same (text, kind, seed) always gives the same output."""
    function = _lookup(kind)
    return function(text, seeded_rng(seed, kind, text))


def augment(
    texts: Iterable[str], rate: float, kinds: Sequence[str] | None = None, seed: int = 0
) -> list[str]:
    """Return `texts` with round(rate * n) of them, chosen at random, perturbed by a random kind
    from `kinds` (default: all). Order and length are kept; deterministic for (texts, rate, kinds, seed).
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be between 0 and 1, got {rate}")
    kinds = list(PERTURBATIONS) if kinds is None else list(kinds)
    if not kinds:
        raise ValueError(f"kinds must name at least one perturbation; allowed kinds: {_allowed()}")
    for kind in kinds:
        _lookup(kind)
    out = list(texts)
    rng = random.Random(seed)
    for index in sorted(rng.sample(range(len(out)), round(rate * len(out)))):
        out[index] = perturb(out[index], rng.choice(kinds), seed=rng.randrange(2**32))
    return out


def _lookup(kind: str) -> Perturbation:
    try:
        return PERTURBATIONS[kind]
    except KeyError:
        raise ValueError(f"unknown perturbation {kind!r}; allowed kinds: {_allowed()}") from None


def _allowed() -> str:
    return ", ".join(PERTURBATIONS)


def _choose(matches: list[re.Match[str]], rng: random.Random) -> list[re.Match[str]]:
    # About half the candidate words, at least one, in text order.
    chosen = [match for match in matches if rng.random() < 0.5]
    return chosen or [rng.choice(matches)]


def _perturb_some_words(
    text: str,
    pattern: re.Pattern[str],
    change: Callable[[re.Match[str]], str],
    rng: random.Random,
    min_length: int,
) -> str:
    matches = [match for match in pattern.finditer(text) if len(match.group()) >= min_length]
    if not matches:
        return text
    pieces: list[str] = []
    position = 0
    for match in _choose(matches, rng):
        pieces.append(text[position : match.start()] + change(match))
        position = match.end()
    pieces.append(text[position:])
    return "".join(pieces)


def _replace_some(
    token: str, indices: list[int], replacement: Callable[[str], str], rng: random.Random
) -> str:
    # Each candidate letter with probability 0.5, at least one, so the word always changes.
    if not indices:
        return token
    picked = [index for index in indices if rng.random() < 0.5] or [rng.choice(indices)]
    chars = list(token)
    for index in picked:
        chars[index] = replacement(chars[index])
    return "".join(chars)
