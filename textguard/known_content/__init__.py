"""Known-content matching: hash lists of known TVEC text, shared without the text itself.

Like GIFCT's hash-sharing database and Meta's ThreatExchange do for images and video: a platform lists
fingerprints of known terrorist and violent extremist text (manifesto passages, slogans, propaganda),
imports lists other platforms share in a hash-only CSV format, and every message is matched against them
before the model scores it. See docs/known-content.md for the choice of fingerprints and their measured
behaviour.

- `fingerprint`: canonical text, `sha256` (exact) and `minhash` (light edits) fingerprints;
- `exchange`: the CSV exchange format (import/export), with row-and-field error messages;
- `store`: versioned list files in a directory, changed atomically;
- `index`: `KnownContentIndex.match()` and a reloader for services.
"""

from __future__ import annotations

from textguard.known_content.exchange import HashEntry, read_exchange_csv, write_exchange_csv
from textguard.known_content.fingerprint import CANONICAL_FORM, HASH_TYPES, canonical_text, fingerprints
from textguard.known_content.index import (
    HashMatch,
    KnownContentIndex,
    KnownContentReloader,
    ListSummary,
    store_fingerprint,
)
from textguard.known_content.store import Change, HashList, HashListStore

__all__ = [
    "CANONICAL_FORM",
    "HASH_TYPES",
    "Change",
    "HashEntry",
    "HashList",
    "HashListStore",
    "HashMatch",
    "KnownContentIndex",
    "KnownContentReloader",
    "ListSummary",
    "canonical_text",
    "fingerprints",
    "read_exchange_csv",
    "store_fingerprint",
    "write_exchange_csv",
]
