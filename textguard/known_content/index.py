"""Matching messages against the hash lists: an immutable index, and a reloader for long-running services.

`KnownContentIndex.match(normalized_text)` costs, per message:
- the canonical form and up to 1 + MAX_SEGMENTS SHA-256 digests (the message and its sentences), each a
  dict lookup: a few microseconds for chat-length text;
- when the index holds MinHash entries and the canonical text has at least MIN_FUZZY_CHARS characters:
  the message's MinHash (128 x its distinct 5-character shingles, ~0.1-0.5 ms for chat messages, ~5 ms
  for the 10,000-character maximum), then one vectorised comparison with every MinHash entry, about
  0.05 microseconds per entry (0.5 ms for 10,000 entries). A linear scan is exact and fast enough for
  text lists of tens of thousands of entries; larger lists would want LSH banding (see
  docs/known-content.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textguard.errors import DataError
from textguard.known_content.exchange import HashEntry
from textguard.known_content.fingerprint import (
    EXACT,
    FUZZY,
    MAX_FUZZY_DISTANCE,
    MINHASH_SLOTS,
    canonical_text,
    exact_keys,
    minhash,
)
from textguard.known_content.store import HashList, HashListStore, read_list_file

logger = logging.getLogger(__name__)

#: Most matches reported for one message (the closest first).
MAX_MATCHES = 16
#: `HashMatch.kind` of a SHA-256 match.
KIND_EXACT = "exact"
#: `HashMatch.kind` of a MinHash match.
KIND_FUZZY = FUZZY


@dataclass(frozen=True)
class HashMatch:
    """A message matched a listed fingerprint.

    `kind` is "exact" (SHA-256 of the canonical text, or of one of its sentences; distance 0) or
    "minhash" (distance: MinHash slots that differ, 0..MAX_FUZZY_DISTANCE of 128).
    """

    list_id: str
    list_version: int
    kind: str
    hash_id: str
    distance: int
    label: str | None


@dataclass(frozen=True)
class ListSummary:
    list_id: str
    version: int
    updated_at: str
    exact: int
    fuzzy: int


@dataclass(frozen=True)
class _Listing:
    list_id: str
    list_version: int
    hash_id: str
    label: str | None


class KnownContentIndex:
    """An immutable lookup structure over hash lists; safe to share between threads."""

    def __init__(
        self, lists: Iterable[HashList], *, source: Path | None = None, fingerprint: str = ""
    ) -> None:
        self.source = source
        self.fingerprint = fingerprint
        self._lists = tuple(sorted(lists, key=lambda hash_list: hash_list.list_id))
        self._exact: dict[str, list[_Listing]] = {}
        fuzzy_listings: list[_Listing] = []
        signatures: list[bytes] = []
        for hash_list in self._lists:
            for entry in hash_list.entries:
                listing = _Listing(hash_list.list_id, hash_list.version, entry.hash_id, entry.label)
                if entry.hash_type == EXACT:
                    self._exact.setdefault(entry.hash_value, []).append(listing)
                else:
                    fuzzy_listings.append(listing)
                    signatures.append(bytes.fromhex(entry.hash_value))
        self._fuzzy = tuple(fuzzy_listings)
        self._signatures = np.frombuffer(b"".join(signatures), dtype=np.uint8).reshape(-1, MINHASH_SLOTS)
        self.version = _version(self._lists)

    @classmethod
    def empty(cls) -> KnownContentIndex:
        return cls(())

    @classmethod
    def load(cls, path: str | Path) -> KnownContentIndex:
        """Every list in a store directory, or one list file; DataError naming the file at fault."""
        path = Path(path)
        if path.is_dir():
            fingerprint = store_fingerprint(path)
            return cls(HashListStore(path).lists(), source=path, fingerprint=fingerprint)
        if path.is_file():
            fingerprint = store_fingerprint(path)
            return cls([read_list_file(path)], source=path, fingerprint=fingerprint)
        raise DataError(
            f"hash list store {path} does not exist (create it with `textguard hashes add|import`)"
        )

    def __len__(self) -> int:
        return len(self._fuzzy) + sum(len(listings) for listings in self._exact.values())

    @property
    def lists(self) -> list[ListSummary]:
        return [
            ListSummary(
                item.list_id,
                item.version,
                item.updated_at,
                exact=sum(entry.hash_type == EXACT for entry in item.entries),
                fuzzy=sum(entry.hash_type == FUZZY for entry in item.entries),
            )
            for item in self._lists
        ]

    def match(self, normalized_text: str) -> list[HashMatch]:
        """Listed fingerprints this message matches, exact ones first, then by distance.

        `normalized_text` must be `textguard.text.normalize()` output: the same canonical form is then
        derived from it as from the listed texts.
        """
        if not self._exact and not self._fuzzy:
            return []
        matches: list[HashMatch] = []
        if self._exact:
            for key in exact_keys(normalized_text):
                for listing in self._exact.get(key, ()):
                    matches.append(_match(listing, KIND_EXACT, 0))
        if self._fuzzy:
            signature = minhash(canonical_text(normalized_text))
            if signature is not None:
                query = np.frombuffer(signature, dtype=np.uint8)
                distances = MINHASH_SLOTS - (self._signatures == query).sum(axis=1, dtype=np.int32)
                for index in np.flatnonzero(distances <= MAX_FUZZY_DISTANCE):
                    matches.append(_match(self._fuzzy[index], KIND_FUZZY, int(distances[index])))
        unique = {(match.list_id, match.hash_id): match for match in reversed(matches)}
        ordered = sorted(
            unique.values(), key=lambda match: (match.kind != KIND_EXACT, match.distance, match.list_id)
        )
        return ordered[:MAX_MATCHES]

    def entries(self) -> list[tuple[str, HashEntry]]:
        return [(item.list_id, entry) for item in self._lists for entry in item.entries]


class KnownContentReloader:
    """The current index of a store, reloaded when its files change (checked at most every interval).

    A store that fails to load on a reload (a hand-edited file with an error) leaves the previous index
    in place, logs the error and keeps it in `last_error`: a bad edit must not switch matching off.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        check_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.check_interval_s = check_interval_s
        self.last_error: str | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._index = KnownContentIndex.load(self.path)  # a bad store at start is an error
        self._checked_at = clock()

    @property
    def index(self) -> KnownContentIndex:
        """The index to match with now; reloads first if the interval passed and the files changed."""
        if self._clock() - self._checked_at >= self.check_interval_s and self._lock.acquire(blocking=False):
            try:
                self._checked_at = self._clock()
                self._reload_if_changed()
            finally:
                self._lock.release()
        return self._index

    def reload(self) -> KnownContentIndex:
        """Reload now, whatever changed; raises DataError (keeping the old index) if the store is bad."""
        with self._lock:
            self._index = KnownContentIndex.load(self.path)
            self.last_error = None
            self._checked_at = self._clock()
            return self._index

    def _reload_if_changed(self) -> None:
        try:
            if store_fingerprint(self.path) == self._index.fingerprint:
                return
            previous = self._index.version
            self._index = KnownContentIndex.load(self.path)
            self.last_error = None
            if self._index.version != previous:
                logger.info("hash lists reloaded from %s: version %s", self.path, self._index.version)
        except (DataError, OSError) as exc:
            if str(exc) != self.last_error:
                logger.error(
                    "hash lists at %s not reloaded, keeping version %s: %s",
                    self.path,
                    self._index.version,
                    exc,
                )
            self.last_error = str(exc)


def store_fingerprint(path: Path) -> str:
    """A cheap digest of what is on disk (names, sizes, modification times): changes with any write."""
    files = (
        [path]
        if path.is_file()
        else sorted(item for item in path.glob("*.json") if not item.name.startswith("."))
    )
    stats = []
    for item in files:
        try:
            stat = os.stat(item)
        except FileNotFoundError:  # replaced between listing and stat: the next check sees the new one
            continue
        stats.append((item.name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()


def _match(listing: _Listing, kind: str, distance: int) -> HashMatch:
    return HashMatch(listing.list_id, listing.list_version, kind, listing.hash_id, distance, listing.label)


def _version(lists: tuple[HashList, ...]) -> str:
    # Content, not just list versions: a hand edit that kept the version number still shows.
    content = [
        [
            item.list_id,
            item.version,
            sorted([entry.hash_type, entry.hash_value, entry.label or ""] for entry in item.entries),
        ]
        for item in lists
    ]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]
