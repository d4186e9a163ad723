"""The prepared-dataset folder: train/validation/test Parquet files + report.json, written and loaded.

Loading is deliberately thin (three Parquet reads wrapped as a `datasets.DatasetDict`, no cache
files), so training and evaluation can call it on every run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textguard.data.dataconfig import SPLITS
from textguard.data.examples import COLUMNS, Example
from textguard.errors import DataError
from textguard.paths import project_root

if TYPE_CHECKING:
    import datasets
    import pyarrow as pa

REPORT_FILE = "report.json"


def default_output_dir(name: str) -> Path:
    """`data/prepared/<name>/` in the checkout (git-ignored)."""
    return project_root() / "data" / "prepared" / name


def arrow_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("text", pa.string()),
            ("labels", pa.list_(pa.string())),
            ("language", pa.string()),
            ("source", pa.string()),
            ("dataset", pa.string()),
            ("split", pa.string()),
        ]
    )


def write_split(rows: list[Example], path: Path) -> dict[str, Any]:
    """Write one split atomically; returns its row count and checksum for the report."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {
        "id": [row.id for row in rows],
        "text": [row.text for row in rows],
        "labels": [list(row.labels) for row in rows],
        "language": [row.language or "und" for row in rows],
        "source": [row.source for row in rows],
        "dataset": [row.dataset for row in rows],
        "split": [row.split for row in rows],
    }
    table = pa.table(columns, schema=arrow_schema())
    partial = path.with_name(path.name + ".partial")
    pq.write_table(table, partial, compression="zstd")
    os.replace(partial, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"rows": len(rows), "sha256": digest}


def write_report(report: dict[str, Any], directory: Path) -> Path:
    path = directory / REPORT_FILE
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def read_report(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / REPORT_FILE
    if not path.is_file():
        raise DataError(
            f"{directory}: not a prepared dataset (no {REPORT_FILE}); run `textguard data prepare` first"
        )
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable report ({exc})") from None
    if not isinstance(loaded, dict):
        raise DataError(f"{path}: the report must be a JSON object")
    return loaded


def read_split_table(directory: str | Path, split: str) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(directory) / f"{split}.parquet"
    if not path.is_file():
        raise DataError(
            f"{path}: missing; a prepared dataset has {', '.join(f'{s}.parquet' for s in SPLITS)}"
        )
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read Parquet ({exc}); prepare the dataset again") from None
    missing = [column for column in COLUMNS if column not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; prepare the dataset again")
    return table.select(list(COLUMNS))


def resolve_prepared_dir(path: str | Path, *, prepare_if_missing: bool = True) -> Path:
    """A prepared folder as given, or the default folder of a data config (prepared on demand)."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        return path
    from textguard.data.dataconfig import load_data_config

    loaded = load_data_config(path)
    directory = default_output_dir(loaded.name)
    if not (directory / REPORT_FILE).is_file():
        if not prepare_if_missing:
            raise DataError(
                f"{directory}: {loaded.name} is not prepared; run `textguard data prepare --config {path}`"
            )
        from textguard.data.prepare import prepare

        prepare(loaded, directory)
    return directory


def load_prepared(path: str | Path, *, prepare_if_missing: bool = True) -> datasets.DatasetDict:
    """Load a prepared folder (or a data config's default folder) as a DatasetDict of three splits."""
    import datasets

    directory = resolve_prepared_dir(path, prepare_if_missing=prepare_if_missing)
    if not directory.is_dir():
        raise DataError(f"{directory}: prepared dataset folder not found; run `textguard data prepare`")
    return datasets.DatasetDict(
        {
            split: datasets.Dataset(read_split_table(directory, split), split=datasets.NamedSplit(split))
            for split in SPLITS
        }
    )
