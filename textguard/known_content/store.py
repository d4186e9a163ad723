"""Hash lists on disk: one JSON file per list in a store directory, versioned, changed atomically.

`<store>/<list_id>.json` holds `{"format", "list_id", "version", "updated_at", "entries": [...]}`. Every
change (import, add, remove) rewrites one list file through a temporary file and `os.replace`, under an
exclusive lock on `<store>/.lock`, and bumps that list's version by one, so a reader (the service, which
reloads when the files change) sees either the old list or the new one, never half of either, and two
concurrent writers never lose each other's change. Removing every hash of a list keeps the list, empty,
with its version bumped, so a (list id, version) pair recorded in an audit row never names two
different contents.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textguard.errors import DataError
from textguard.known_content.exchange import (
    HashEntry,
    entry_from_fields,
    read_exchange_csv,
    utc_timestamp,
    validate_list_id,
)
from textguard.known_content.fingerprint import fingerprints

STORE_FORMAT = "textguard-hash-list/1"
LOCK_NAME = ".lock"


@dataclass(frozen=True)
class HashList:
    list_id: str
    version: int
    updated_at: str
    entries: tuple[HashEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT,
            "list_id": self.list_id,
            "version": self.version,
            "updated_at": self.updated_at,
            "entries": [entry.to_json() for entry in self.entries],
        }


@dataclass(frozen=True)
class Change:
    """What one command did to one list."""

    list_id: str
    version: int  # the list's version after the change (unchanged when nothing changed)
    added: int = 0
    removed: int = 0
    duplicates: int = 0  # rows already in the list (or repeated in the input): skipped
    added_entries: tuple[HashEntry, ...] = ()


class HashListStore:
    """The hash lists in one directory (created on the first change)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def list_ids(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(path.stem for path in self.directory.glob("*.json") if not path.name.startswith("."))

    def lists(self) -> list[HashList]:
        return [self.get(list_id) for list_id in self.list_ids()]

    def get(self, list_id: str) -> HashList:
        path = self._path(validate_list_id(list_id))
        if not path.is_file():
            known = ", ".join(self.list_ids()) or "none"
            raise DataError(f"no hash list {list_id!r} in {self.directory} (lists: {known})")
        return read_list_file(path)

    def import_file(self, list_id: str, path: Path) -> Change:
        """Add every row of an exchange CSV file to a list (created if new); all rows or none."""
        entries = read_exchange_csv(path, list_id=validate_list_id(list_id))
        return self.add(list_id, entries)

    def add_text(
        self,
        list_id: str,
        text: str,
        *,
        label: str | None = None,
        source: str | None = None,
        note: str | None = None,
    ) -> Change:
        """Hash `text` (normalised, canonical) and list its fingerprints; the text itself is not kept."""
        pairs = fingerprints(text)
        if not pairs:
            raise DataError("the text has no letters or digits after normalisation: nothing to hash")
        now = utc_timestamp(datetime.now(UTC))
        try:
            entries = [
                entry_from_fields(
                    {"hash_type": kind, "hash_value": value, "label": label, "source": source, "note": note},
                    default_added_at=now,
                )
                for kind, value in pairs
            ]
        except ValueError as exc:
            raise DataError(str(exc)) from None
        return self.add(list_id, entries)

    def add(self, list_id: str, entries: Sequence[HashEntry]) -> Change:
        """Add entries to a list (created if new), skipping hashes it already holds."""
        validate_list_id(list_id)
        with self._locked():
            current = self._current(list_id)
            known = {(entry.hash_type, entry.hash_value) for entry in current.entries}
            fresh: list[HashEntry] = []
            for entry in entries:
                key = (entry.hash_type, entry.hash_value)
                if key not in known:
                    known.add(key)
                    fresh.append(entry)
            if not fresh:
                return Change(list_id, current.version, duplicates=len(entries))
            updated = self._write(list_id, current.version + 1, (*current.entries, *fresh))
        return Change(
            list_id,
            updated.version,
            added=len(fresh),
            duplicates=len(entries) - len(fresh),
            added_entries=tuple(fresh),
        )

    def remove(self, list_id: str, hashes: Sequence[str] | None = None) -> Change:
        """Remove the given hashes (values or hash ids) from a list, or all of them; all or none.

        Every given hash must be in the list. With `hashes` None the list keeps existing, empty.
        """
        validate_list_id(list_id)
        with self._locked():
            current = self.get(list_id)
            if hashes is None:
                doomed = set(range(len(current.entries)))
            else:
                doomed = set()
                for given in hashes:
                    wanted = given.strip().lower()
                    found = [
                        index
                        for index, entry in enumerate(current.entries)
                        if wanted in (entry.hash_value, entry.hash_id)
                    ]
                    if not found:
                        raise DataError(f"hash {given[:80]!r} is not in list {list_id!r}: nothing removed")
                    doomed.update(found)
            if not doomed:
                return Change(list_id, current.version)
            kept = tuple(entry for index, entry in enumerate(current.entries) if index not in doomed)
            updated = self._write(list_id, current.version + 1, kept)
        return Change(list_id, updated.version, removed=len(doomed))

    def _current(self, list_id: str) -> HashList:
        path = self._path(list_id)
        if path.is_file():
            return read_list_file(path)
        return HashList(list_id, 0, "", ())

    def _write(self, list_id: str, version: int, entries: tuple[HashEntry, ...]) -> HashList:
        hash_list = HashList(list_id, version, utc_timestamp(datetime.now(UTC)), entries)
        payload = json.dumps(hash_list.to_json(), indent=1, ensure_ascii=False) + "\n"
        _atomic_write(self._path(list_id), payload)
        return hash_list

    def _path(self, list_id: str) -> Path:
        return self.directory / f"{list_id}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / LOCK_NAME, "a", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def read_list_file(path: Path) -> HashList:
    """One list file, fully checked; DataError naming the file and the field at fault."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"hash list {path}: cannot be read as JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != STORE_FORMAT:
        raise DataError(f"hash list {path}: field format must be {STORE_FORMAT!r}")
    list_id = document.get("list_id")
    if not isinstance(list_id, str) or list_id != path.stem:
        raise DataError(
            f"hash list {path}: field list_id must be the file name without .json ({path.stem!r})"
        )
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DataError(f"hash list {path}: field version must be a positive integer")
    updated_at = document.get("updated_at")
    raw_entries = document.get("entries")
    if not isinstance(updated_at, str) or not isinstance(raw_entries, list):
        raise DataError(f"hash list {path}: fields updated_at (a string) and entries (a list) are required")
    entries: list[HashEntry] = []
    for index, raw in enumerate(raw_entries):
        if not isinstance(raw, dict) or not all(isinstance(value, str | None) for value in raw.values()):
            raise DataError(f"hash list {path}: entries[{index}] must be an object of strings")
        try:
            entries.append(entry_from_fields(raw, default_added_at=updated_at))
        except ValueError as exc:
            raise DataError(f"hash list {path}: entries[{index}].{exc}") from None
    return HashList(list_id, version, updated_at, tuple(entries))


def _atomic_write(path: Path, payload: str) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
