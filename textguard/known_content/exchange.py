"""The hash-only CSV exchange format: how hash lists travel between platforms without their content.

A UTF-8 CSV file with a header row. Columns (any order, names case-insensitive):

| column       | required | meaning                                                                       |
|--------------|----------|-------------------------------------------------------------------------------|
| `hash_type`  | yes      | `sha256` or `minhash` (see textguard/known_content/fingerprint.py)            |
| `hash_value` | yes      | 64 (sha256) or 256 (minhash) hex characters                                   |
| `label`      | no       | what the content is, e.g. `extremist_glorification` (letters, digits, _.:/-)  |
| `list_id`    | no       | the list the row belongs to; when given it must equal the list imported into |
| `source`     | no       | who shared the hash, e.g. `gifct` (at most 200 characters)                    |
| `added_at`   | no       | ISO 8601 date or date-time (UTC when no offset); default: the import time     |
| `note`       | no       | free text for moderators, at most 500 characters (never the content itself)   |

Every row is checked before anything is imported: a malformed file raises one DataError naming the
file, the line and the field at fault, and imports nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TextIO

from textguard.errors import DataError
from textguard.known_content.fingerprint import EXACT, HASH_TYPES, parse_hash_value

COLUMNS = ("hash_type", "hash_value", "label", "list_id", "source", "added_at", "note")
REQUIRED_COLUMNS = ("hash_type", "hash_value")
MAX_SOURCE_CHARS = 200
MAX_NOTE_CHARS = 500
#: Largest file `read_exchange_csv` accepts (about 2.5 million sha256 rows).
MAX_FILE_BYTES = 256 * 1024 * 1024

LIST_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Signal types other systems share that are not text fingerprints of ours: say why they cannot import.
_FOREIGN_TYPES = {
    "tlsh": "TLSH is not supported: it is unreliable on chat-length text (docs/known-content.md)",
    "hash_text_tlsh": "TLSH is not supported: it is unreliable on chat-length text (docs/known-content.md)",
    "md5": "md5 is a file hash, not a text fingerprint",
    "pdq": "pdq is an image hash",
    "text_string": "raw text is not accepted: hash lists carry no content",
}


@dataclass(frozen=True)
class HashEntry:
    """One listed fingerprint and what is known about it (never the text itself)."""

    hash_type: str
    hash_value: str
    added_at: str  # ISO 8601 UTC, e.g. 2026-01-31T12:00:00Z
    label: str | None = None
    source: str | None = None
    note: str | None = None

    @property
    def hash_id(self) -> str:
        """Short stable id: `sha256:` + the first 16 hex of the value, `minhash:` + 16 hex of its SHA-256."""
        return hash_id(self.hash_type, self.hash_value)

    def to_json(self) -> dict[str, str | None]:
        return {
            "hash_type": self.hash_type,
            "hash_value": self.hash_value,
            "label": self.label,
            "source": self.source,
            "added_at": self.added_at,
            "note": self.note,
        }


def hash_id(hash_type: str, hash_value: str) -> str:
    digest = hash_value if hash_type == EXACT else hashlib.sha256(hash_value.encode("ascii")).hexdigest()
    return f"{hash_type}:{digest[:16]}"


def validate_list_id(list_id: str) -> str:
    if not LIST_ID.fullmatch(list_id):
        raise DataError(
            f"list id {list_id!r} must be 1-64 lowercase letters, digits, '-' or '_', starting with a "
            "letter or digit"
        )
    return list_id


def utc_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_from_fields(fields: Mapping[str, str | None], *, default_added_at: str) -> HashEntry:
    """A HashEntry from raw field values; ValueError naming the field (as `field: problem`) if one is bad."""
    raw_type = (fields.get("hash_type") or "").strip().lower()
    if raw_type not in HASH_TYPES:
        hint = _FOREIGN_TYPES.get(raw_type, f"expected one of {', '.join(HASH_TYPES)}")
        raise ValueError(f"hash_type: {raw_type or '(empty)'!r} is not a supported hash type ({hint})")
    try:
        value = parse_hash_value(raw_type, fields.get("hash_value") or "")
    except ValueError as exc:
        raise ValueError(f"hash_value: {exc}") from None
    label = _optional(fields, "label")
    if label is not None and not _LABEL.fullmatch(label):
        raise ValueError(f"label: {label[:70]!r} must be 1-64 letters, digits or _ . : / -")
    source = _optional(fields, "source")
    if source is not None:
        _check_free_text("source", source, MAX_SOURCE_CHARS)
    note = _optional(fields, "note")
    if note is not None:
        _check_free_text("note", note, MAX_NOTE_CHARS)
    added = _optional(fields, "added_at")
    added_at = _parse_timestamp(added) if added is not None else default_added_at
    return HashEntry(raw_type, value, added_at, label=label, source=source, note=note)


def read_exchange_csv(path: Path, *, list_id: str, now: datetime | None = None) -> list[HashEntry]:
    """Every row of an exchange file, checked; DataError naming line and field of the first bad one."""
    if not path.is_file():
        raise DataError(f"hash file {path} does not exist")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path}: {size:,} bytes is over the {MAX_FILE_BYTES:,}-byte limit for one import")
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path} line {line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    default_added_at = utc_timestamp(now or datetime.now(UTC))
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    header: list[str] | None = None
    entries: list[HashEntry] = []
    line = 1
    try:
        for record in reader:
            where, line = f"{path} line {line}", reader.line_num + 1  # a record may span lines
            if not record or all(not field.strip() for field in record):
                continue
            if header is None:
                header = _check_header(record, where)
                continue
            if len(record) != len(header):
                raise DataError(f"{where}: {len(record)} fields, the header has {len(header)}")
            fields = dict(zip(header, record, strict=True))
            row_list = (fields.get("list_id") or "").strip()
            if row_list and row_list != list_id:
                raise DataError(
                    f"{where}, field list_id: {row_list!r} is not the list imported into ({list_id!r})"
                )
            try:
                entries.append(entry_from_fields(fields, default_added_at=default_added_at))
            except ValueError as exc:
                raise DataError(f"{where}, field {exc}") from None
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from None
    if header is None:
        raise DataError(f"{path}: empty file (expected a header row: {','.join(COLUMNS)})")
    if not entries:
        raise DataError(f"{path}: a header but no hash rows")
    return entries


def write_exchange_csv(rows: Iterable[tuple[str, HashEntry]], out: TextIO) -> None:
    """Write (list_id, entry) rows in the exchange format, header first."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for list_id, entry in rows:
        writer.writerow(
            [
                entry.hash_type,
                entry.hash_value,
                entry.label or "",
                list_id,
                entry.source or "",
                entry.added_at,
                entry.note or "",
            ]
        )


def _check_header(record: list[str], where: str) -> list[str]:
    names = [name.strip().lower() for name in record]
    for name in names:
        if name not in COLUMNS:
            raise DataError(f"{where}: unknown column {name!r} (columns: {', '.join(COLUMNS)})")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"{where}: column {duplicates[0]!r} appears twice")
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise DataError(f"{where}: missing column {missing[0]!r} (the header row must name it)")
    return names


def _optional(fields: Mapping[str, str | None], name: str) -> str | None:
    value = (fields.get(name) or "").strip()
    return value or None


def _check_free_text(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise ValueError(f"{name}: {len(value)} characters, at most {limit}")
    if _CONTROL.search(value):
        raise ValueError(f"{name}: contains a control character (line breaks and tabs are not allowed)")


def _parse_timestamp(value: str) -> str:
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"added_at: {value[:40]!r} is not an ISO 8601 date or date-time") from None
    return utc_timestamp(moment)
