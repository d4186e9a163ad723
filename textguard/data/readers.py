"""Readers: one table (CSV, TSV, JSONL, Parquet, a folder of text files, a hub dataset) -> records.

Every record carries its location (file and physical line, or row for binary formats) so that a
later problem with the row (an unknown label value, an empty text) can name where it is. Text
files are decoded in one piece; on a non-UTF-8 byte the exact byte offset and line are reported
for the row and field holding it (lenient runs skip those rows). Readers know nothing about
labels or the taxonomy.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from textguard.data.dataconfig import PathBase, TableSpec
from textguard.data.problems import Location, Problems
from textguard.errors import DataError
from textguard.paths import project_root, resources_dir, shared_datasets_dir

#: Lone surrogates are what `surrogateescape` turns undecodable bytes into.
_SURROGATE = re.compile("[\udc80-\udcff]")


@dataclass
class Record:
    values: dict[str, Any]
    where: Location
    #: 1-based position among the table's records (stable ids use it when the data has none).
    number: int


@dataclass
class Table:
    path: str
    #: Known up front for header-based formats; None for JSONL, where each line has its own keys.
    columns: list[str] | None
    records: Iterator[Record]


def base_dir(base: PathBase, config_dir: Path) -> Path:
    if base == "shared":
        return shared_datasets_dir()
    if base == "project":
        return project_root()
    if base == "resources":
        return resources_dir()
    return config_dir


def resolve_path(path: str, base: PathBase, config_dir: Path) -> Path:
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate
    root = base_dir(base, config_dir)
    if base == "shared" and not root.is_dir():
        raise DataError(
            f"shared datasets folder not found at {root}; set TEXTGUARD_SHARED_DATASETS to where it is"
        )
    return root / candidate


def open_table(
    spec: TableSpec,
    config_dir: Path,
    problems: Problems,
    *,
    required: set[str] | frozenset[str] = frozenset(),
    limit: int | None = None,
) -> Table:
    """Open the table `spec` describes; file-level problems raise DataError here."""
    if spec.kind == "hub":
        return _read_hub(spec, problems, required, limit)
    assert spec.path is not None  # the schema requires a path for every other kind
    path = resolve_path(spec.path, spec.base, config_dir)
    if not path.is_file():
        raise DataError(f"{path}: file not found (kind {spec.kind}, base {spec.base})")
    if spec.kind == "jsonl":
        return Table(str(path), None, _read_jsonl(path, spec, problems, required, limit))
    if spec.kind == "parquet":
        return _read_parquet(path, problems, required, limit)
    delimiter = spec.delimiter or ("\t" if spec.kind == "tsv" else ",")
    if spec.kind == "text_folder":
        assert spec.folder is not None
        folder = resolve_path(spec.folder.path, spec.base, config_dir)
        if not folder.is_dir():
            raise DataError(f"{folder}: text folder not found")
        if spec.delimiter is None and path.suffix == ".tsv":
            delimiter = "\t"
        table = _read_delimited(
            path,
            spec,
            delimiter,
            problems,
            required - {spec.folder.text_column} | {spec.folder.key_column},
            limit,
        )
        columns = [*(table.columns or []), spec.folder.text_column]
        return Table(table.path, columns, _attach_files(table.records, spec, folder, problems))
    return _read_delimited(path, spec, delimiter, problems, required, limit)


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class _Decoded:
    text: str
    #: Byte offset and line of the first undecodable byte, when there is one.
    bad_offset: int | None = None
    bad_line: int | None = None


def _decode(path: Path, raw: bytes, encoding: str) -> _Decoded:
    if raw.startswith(b"\xef\xbb\xbf") and encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        raw = raw[3:]
    try:
        return _Decoded(raw.decode(encoding))
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return _Decoded(raw.decode(encoding, "surrogateescape"), exc.start, line)
    except LookupError:
        raise DataError(f"{path}: unknown encoding {encoding!r}") from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None


def _bad_bytes_message(value: str, decoded: _Decoded, where: Location) -> str:
    match = _SURROGATE.search(value)
    byte = ord(match.group()) - 0xDC00 if match else 0
    if decoded.bad_line == where.number and decoded.bad_offset is not None:
        place = f"at byte offset {decoded.bad_offset}"
    else:
        place = "in this row"
    return f"not valid UTF-8: byte 0x{byte:02x} {place} (re-encode the file as UTF-8 or set encoding)"


def _check_utf8(
    values: dict[str, Any], columns: set[str] | frozenset[str], decoded: _Decoded, where: Location
) -> tuple[str, str] | None:
    """(column, message) for the first required text cell holding undecodable bytes."""
    if decoded.bad_offset is None:
        return None
    for column in sorted(columns):
        value = values.get(column)
        if isinstance(value, str) and _SURROGATE.search(value):
            return column, _bad_bytes_message(value, decoded, where)
    return None


# --------------------------------------------------------------------------- CSV and TSV


def _read_delimited(
    path: Path,
    spec: TableSpec,
    delimiter: str,
    problems: Problems,
    required: set[str] | frozenset[str],
    limit: int | None,
) -> Table:
    decoded = _decode(path, _read_bytes(path), spec.encoding)
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if spec.quoting == "none" else csv.QUOTE_MINIMAL
    reader = csv.reader(
        io.StringIO(decoded.text, newline=""), delimiter=delimiter, quoting=quoting, strict=True
    )
    header_line = 0
    if spec.header:
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: empty file (expected a header row)") from None
        except csv.Error as exc:
            raise DataError(f"{path} line 1: cannot parse the header row ({exc})") from None
        header_line = reader.line_num
    else:
        assert spec.column_names is not None
        header = list(spec.column_names)
    missing = sorted(required - set(header))
    if missing:
        found = ", ".join(repr(name) for name in header)
        raise DataError(f"{path}: missing column(s) {missing}; the file has {found}")
    return Table(
        str(path),
        header,
        _delimited_records(path, reader, header, header_line, decoded, problems, required, limit),
    )


def _delimited_records(
    path: Path,
    reader: Any,
    header: list[str],
    previous_line: int,
    decoded: _Decoded,
    problems: Problems,
    required: set[str] | frozenset[str],
    limit: int | None,
) -> Iterator[Record]:
    number = 0
    while limit is None or number < limit:
        start = previous_line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            detail = str(exc)
            if "unexpected end of data" in detail or "field larger than field limit" in detail:
                detail = (
                    f"unterminated quoted field starting at line {start} ({exc}); the file may be truncated"
                )
            raise DataError(
                f"{path} line {start}: malformed CSV: {detail}. Fix the quoting, or set quoting: none "
                "if quote characters are part of the text"
            ) from None
        previous_line = reader.line_num
        if not row:  # a blank line
            continue
        number += 1
        where = Location(str(path), start)
        if len(row) != len(header):
            problems.report("field_count", where, None, f"expected {len(header)} fields, got {len(row)}")
            continue
        values = dict(zip(header, row, strict=True))
        bad = _check_utf8(values, required, decoded, where)
        if bad is not None:
            problems.report("non_utf8", where, bad[0], bad[1])
            continue
        yield Record(values, where, number)


# --------------------------------------------------------------------------- JSON lines


def _read_jsonl(
    path: Path, spec: TableSpec, problems: Problems, required: set[str] | frozenset[str], limit: int | None
) -> Iterator[Record]:
    raw = _read_bytes(path)
    offset = 0
    number = 0
    lines = raw.split(b"\n")
    for index, line in enumerate(lines):
        line_start, offset = offset, offset + len(line) + 1
        if limit is not None and number >= limit:
            return
        if not line.strip():
            continue
        number += 1
        where = Location(str(path), index + 1)
        try:
            text = line.decode(spec.encoding)
            bad_byte: tuple[int, int] | None = None
        except UnicodeDecodeError as exc:
            text = line.decode(spec.encoding, "surrogateescape")
            bad_byte = (line[exc.start], line_start + exc.start)
        except LookupError:
            raise DataError(f"{path}: unknown encoding {spec.encoding!r}") from None
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            truncated = index == len(lines) - 1 and not raw.endswith(b"\n")
            hint = "; the file looks truncated (last line cut off)" if truncated else ""
            problems.report(
                "invalid_json", where, None, f"invalid JSON ({exc.msg} at column {exc.colno}){hint}"
            )
            continue
        if not isinstance(values, dict):
            problems.report(
                "invalid_json", where, None, f"expected a JSON object, got {type(values).__name__}"
            )
            continue
        missing = sorted(column for column in required if column not in values)
        if missing:
            problems.report("missing_field", where, missing[0], "missing")
            continue
        if bad_byte is not None:
            column = next(
                (key for key, value in values.items() if isinstance(value, str) and _SURROGATE.search(value)),
                None,
            )
            problems.report(
                "non_utf8",
                where,
                column,
                f"not valid UTF-8: byte 0x{bad_byte[0]:02x} at byte offset {bad_byte[1]}",
            )
            continue
        yield Record(values, where, number)


# --------------------------------------------------------------------------- Parquet


def _read_parquet(
    path: Path, problems: Problems, required: set[str] | frozenset[str], limit: int | None
) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        columns = list(parquet.schema_arrow.names)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"{path}: cannot read Parquet ({exc}); the file may be truncated or not Parquet"
        ) from None
    missing = sorted(required - set(columns))
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; the file has {columns}")

    def records() -> Iterator[Record]:
        number = 0
        try:
            for batch in parquet.iter_batches(batch_size=4096):
                for values in batch.to_pylist():
                    if limit is not None and number >= limit:
                        return
                    number += 1
                    yield Record(values, Location(str(path), number, "row"), number)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(
                f"{path} row {number + 1}: cannot read Parquet ({exc}); the file may be truncated"
            ) from None

    return Table(str(path), columns, records())


# --------------------------------------------------------------------------- a folder of text files


def _attach_files(
    records: Iterator[Record], spec: TableSpec, folder: Path, problems: Problems
) -> Iterator[Record]:
    assert spec.folder is not None
    key_column, suffix, text_column = spec.folder.key_column, spec.folder.suffix, spec.folder.text_column
    for record in records:
        key = str(record.values.get(key_column, "")).strip()
        file = folder / f"{key}{suffix}"
        try:
            raw = file.read_bytes()
        except OSError:
            problems.report("missing_file", record.where, key_column, f"text file {file} not found")
            continue
        try:
            record.values[text_column] = raw.decode(spec.encoding)
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            problems.report(
                "non_utf8",
                record.where,
                text_column,
                f"{file} line {line}: not valid UTF-8: "
                f"byte 0x{raw[exc.start]:02x} at byte offset {exc.start}",
            )
            continue
        yield record


# --------------------------------------------------------------------------- hub datasets


def _read_hub(
    spec: TableSpec, problems: Problems, required: set[str] | frozenset[str], limit: int | None
) -> Table:
    """A dataset on the Hugging Face Hub (or in the local datasets cache when offline)."""
    assert spec.hub is not None
    hub = spec.hub
    label = f"hub:{hub.name}" + (f"/{hub.config}" if hub.config else "") + f"[{hub.split}]"
    try:
        import datasets

        dataset = datasets.load_dataset(hub.name, hub.config, split=hub.split, revision=hub.revision)
    except Exception as exc:  # the hub client raises many types (connection, not found, offline)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{label}: cannot load the hub dataset ({type(exc).__name__}: {first}). This machine may be "
            "offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE); download it where the Hub is reachable, "
            "or export it to Parquet/JSONL and point the source at that file"
        ) from None
    columns = list(dataset.column_names)
    missing = sorted(required - set(columns))
    if missing:
        raise DataError(f"{label}: missing column(s) {missing}; the dataset has {columns}")

    def records() -> Iterator[Record]:
        for number, values in enumerate(dataset, start=1):
            if limit is not None and number > limit:
                return
            yield Record(dict(values), Location(label, number, "row"), number)

    return Table(label, columns, records())
