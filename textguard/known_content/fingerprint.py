"""Text fingerprints shared in hash lists: canonical text, its SHA-256, and a MinHash for light edits.

Both hash types are computed from the *canonical form* of a message (version CANONICAL_FORM):

1. `textguard.text.normalize()` (invisible characters, look-alikes, leetspeak, spacing, repeats);
2. `str.casefold()`;
3. NFKD, then every combining mark (categories Mn, Mc, Me) dropped: accents and vowel signs;
4. every run of characters that are neither letters nor digits (punctuation, symbols, emoji,
   whitespace, underscore) replaced by one space; ends stripped.

`sha256`: the SHA-256 of the canonical text's UTF-8 bytes, 64 lowercase hex characters. It matches a
message (or one of its sentences) that is the listed text up to casing, punctuation, spacing and the
evasion tricks normalize() folds.

`minhash`: a 128-slot b-bit MinHash of the set of 5-character shingles of the canonical text, 256
lowercase hex characters (one byte per slot); only for canonical texts of at least MIN_FUZZY_CHARS
characters. The share of equal slots estimates the Jaccard similarity of the two shingle sets, so a
changed word or two in a listed passage still leaves most slots equal, while unrelated text of the same
topic and length shares few (figures in docs/known-content.md). The exact algorithm, so that another
implementation can produce the same values:

    codes     = the canonical text's code points
    shingle_i = fold(codes[i:i+5]) for i in 0 .. len-5, where fold(c) = ((((c0*P + c1)*P + c2)*P + c3)*P + c4)
                with P = 1099511628211, arithmetic mod 2**64, then murmur3's fmix64
    a_k, b_k  = splitmix64(2k+1) | 1, splitmix64(2k+2) for slot k in 0..127 (splitmix64(x): the output
                of the SplitMix64 generator seeded with x, i.e. its mix of x + 0x9E3779B97F4A7C15)
    slot_k    = (min over distinct shingles s of (a_k*s + b_k) mod 2**64) >> 32, lowest 8 bits

The distance of two MinHashes is the number of slots that differ (0..128); a match is a distance of at
most MAX_FUZZY_DISTANCE (at least half the slots equal, an estimated Jaccard similarity of 0.5).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import cache

import numpy as np

from textguard.text import normalize

#: Version of the canonical form above; a change that alters any hash gets new hash type names.
CANONICAL_FORM = 1
EXACT = "sha256"
FUZZY = "minhash"
HASH_TYPES = (EXACT, FUZZY)

MINHASH_SLOTS = 128
SHINGLE_CHARS = 5
#: Shorter canonical texts (slogans) get only the exact hash: measured on public corpora, short
#: texts of one topic share too many shingles for a fuzzy match to be safe (docs/known-content.md).
MIN_FUZZY_CHARS = 50
#: Most slots that may differ for a fuzzy match (half of MINHASH_SLOTS).
MAX_FUZZY_DISTANCE = 64
#: Sentences of a message hashed on their own besides the whole message (bounds the exact lookups).
MAX_SEGMENTS = 32

_NOT_WORD = re.compile(r"[\W_]+")
# Sentence ends in the normalised text: a listed slogan inside a longer message is still found.
_SENTENCE_END = re.compile(r"(?<=[.!?;:\u2026\u3002\uff01\uff1f])\s+")
_HEX = re.compile(r"[0-9a-f]+")

_MASK64 = (1 << 64) - 1
_FOLD_PRIME = np.uint64(1099511628211)


def canonical_text(normalized: str) -> str:
    """The canonical form (steps 2-4 above) of text that normalize() already produced."""
    folded = unicodedata.normalize("NFKD", normalized.casefold())
    if not folded.isascii():
        folded = "".join(char for char in folded if not unicodedata.category(char).startswith("M"))
    return " ".join(_NOT_WORD.sub(" ", folded).split())


def exact_hash(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def exact_keys(normalized: str) -> list[str]:
    """SHA-256 keys to look up for a message: the whole text and each of its first sentences."""
    canonicals = [canonical_text(normalized)]
    sentences = _SENTENCE_END.split(normalized, maxsplit=MAX_SEGMENTS)[:MAX_SEGMENTS]
    if len(sentences) > 1:
        canonicals += [canonical_text(sentence) for sentence in sentences]
    return [exact_hash(text) for text in dict.fromkeys(canonicals) if text]


def minhash(canonical: str, *, min_chars: int = MIN_FUZZY_CHARS) -> bytes | None:
    """The MINHASH_SLOTS-byte MinHash of a canonical text, or None when it is too short to have one.

    `min_chars` exists for measurement (bench/known_content.py shows why short texts get none).
    """
    if len(canonical) < max(min_chars, SHINGLE_CHARS):
        return None
    codes = np.frombuffer(canonical.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint64)
    count = len(codes) - SHINGLE_CHARS + 1
    shingles = np.zeros(count, dtype=np.uint64)
    for offset in range(SHINGLE_CHARS):
        shingles = shingles * _FOLD_PRIME + codes[offset : offset + count]
    shingles = np.unique(_fmix64(shingles))
    multipliers, increments = _permutations()
    slots = np.empty(MINHASH_SLOTS, dtype=np.uint64)
    for start in range(0, MINHASH_SLOTS, 32):  # 32 slots at a time bounds the temporary array
        block = (
            multipliers[start : start + 32, None] * shingles[None, :] + increments[start : start + 32, None]
        )
        slots[start : start + 32] = block.min(axis=1)
    return ((slots >> np.uint64(32)) & np.uint64(0xFF)).astype(np.uint8).tobytes()


def fingerprints(text: str) -> list[tuple[str, str]]:
    """(hash_type, hash_value) pairs for a text to list: its SHA-256 and, if long enough, its MinHash.

    `text` is raw: it is normalised here, exactly as messages are before matching. Empty when nothing
    is left after canonicalisation (only punctuation, emoji or invisible characters).
    """
    canonical = canonical_text(normalize(text))
    if not canonical:
        return []
    pairs = [(EXACT, exact_hash(canonical))]
    signature = minhash(canonical)
    if signature is not None:
        pairs.append((FUZZY, signature.hex()))
    return pairs


def parse_hash_value(hash_type: str, value: str) -> str:
    """The stored form of a hash value (lowercase hex); ValueError saying what is wrong with it."""
    lowered = value.strip().lower()
    expected = 64 if hash_type == EXACT else 2 * MINHASH_SLOTS
    if len(lowered) != expected or not _HEX.fullmatch(lowered):
        raise ValueError(f"a {hash_type} value is {expected} hex characters, got {_preview(value)}")
    return lowered


def _preview(value: str) -> str:
    return repr(value) if len(value) <= 20 else f"{len(value)} characters starting {value[:12]!r}"


def _fmix64(values: np.ndarray) -> np.ndarray:
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> np.uint64(33))


def _splitmix64(seed: int) -> int:
    value = (seed + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


@cache
def _permutations() -> tuple[np.ndarray, np.ndarray]:
    multipliers = [_splitmix64(2 * slot + 1) | 1 for slot in range(MINHASH_SLOTS)]
    increments = [_splitmix64(2 * slot + 2) for slot in range(MINHASH_SLOTS)]
    return np.array(multipliers, dtype=np.uint64), np.array(increments, dtype=np.uint64)
