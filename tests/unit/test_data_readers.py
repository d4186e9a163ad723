"""Each reader kind on small files written to tmp_path, read through a real data config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from textguard.data.dataconfig import load_data_config
from textguard.data.problems import Problems
from textguard.data.sources import load_dataset_rows
from textguard.errors import DataError


def _config(
    tmp_path: Path, source: dict[str, Any], labels: dict[str, Any] | None = None, **extra: Any
) -> Path:
    data = {
        "name": "toy",
        "description": "toy data",
        "license": "CC0-1.0",
        "sources": [{"name": "main", "language": "en", **source}],
        "labels": labels
        or {"rules": [{"column": "label", "map": {"bad": ["hate_dehumanization"], "ok": []}}]},
        **extra,
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _rows(path: Path, strict: bool = True) -> list[tuple[str, str, tuple[str, ...]]]:
    loaded = load_data_config(path)
    examples = load_dataset_rows(loaded, Problems(strict=strict)).examples
    return [(row.id, row.text, row.labels) for row in examples]


def test_csv_reader_maps_labels_and_normalises(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        'id,text,label\n1,"first  row,\nwith a newline",bad\n2,second row,ok\n', encoding="utf-8"
    )
    path = _config(
        tmp_path, {"kind": "csv", "path": str(tmp_path / "a.csv"), "text_column": "text", "id_column": "id"}
    )
    assert _rows(path) == [
        ("toy/1", "first row, with a newline", ("hate_dehumanization",)),
        ("toy/2", "second row", ()),
    ]


def test_tsv_reader_without_header_or_quoting(tmp_path: Path) -> None:
    # GermEval's layout: no header, and a quote character is ordinary text.
    (tmp_path / "a.txt").write_text('a "quoted word\tbad\nplain\tok\n', encoding="utf-8")
    path = _config(
        tmp_path,
        {
            "kind": "tsv",
            "path": str(tmp_path / "a.txt"),
            "header": False,
            "quoting": "none",
            "column_names": ["text", "label"],
            "text_column": "text",
        },
    )
    assert _rows(path) == [
        ("toy/main/1", 'a "quoted word', ("hate_dehumanization",)),
        ("toy/main/2", "plain", ()),
    ]


def test_jsonl_reader_with_label_lists(tmp_path: Path) -> None:
    lines = [
        {"id": "x1", "text": "one", "labels": ["violent_threat"], "language": "de", "source": "caption"},
        {"id": "x2", "text": "two", "labels": [], "language": "pt-BR", "source": "chat"},
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    path = _config(
        tmp_path,
        {
            "kind": "jsonl",
            "path": str(tmp_path / "a.jsonl"),
            "text_column": "text",
            "id_column": "id",
            "language": None,
            "language_column": "language",
            "source_column": "source",
        },
        labels={"rules": [{"from_column": "labels"}]},
    )
    examples = load_dataset_rows(load_data_config(path), Problems()).examples
    assert [(row.id, row.labels, row.language, row.source) for row in examples] == [
        ("toy/x1", ("violent_threat",), "de", "caption"),
        ("toy/x2", (), "pt-BR", "chat"),
    ]


def test_parquet_reader(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["alpha", "beta"], "score": [0.9, 0.1]}), tmp_path / "a.parquet")
    path = _config(
        tmp_path,
        {"kind": "parquet", "path": str(tmp_path / "a.parquet"), "text_column": "text"},
        labels={
            "rules": [{"when": {"column": "score", "op": ">=", "value": 0.5}, "labels": ["violent_threat"]}]
        },
    )
    assert _rows(path) == [("toy/main/1", "alpha", ("violent_threat",)), ("toy/main/2", "beta", ())]


def test_text_folder_reader_joins_files_to_the_annotation_table(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "s1.txt").write_text("sentence one\n", encoding="utf-8")
    (folder / "s2.txt").write_text("sentence two\n", encoding="utf-8")
    (tmp_path / "test_split").mkdir()
    (tmp_path / "test_split" / "s2.txt").write_text("sentence two\n", encoding="utf-8")
    (tmp_path / "meta.csv").write_text("file_id,label\ns1,bad\ns2,ok\n", encoding="utf-8")
    path = _config(
        tmp_path,
        {
            "kind": "text_folder",
            "path": str(tmp_path / "meta.csv"),
            "folder": {"path": str(folder), "key_column": "file_id"},
            "text_column": "text",
            "id_column": "file_id",
            "split": "trainval",
            "split_by_folder": {"test": str(tmp_path / "test_split")},
        },
    )
    examples = load_dataset_rows(load_data_config(path), Problems()).examples
    assert [(row.id, row.text, row.labels, row.hint) for row in examples] == [
        ("toy/s1", "sentence one", ("hate_dehumanization",), "trainval"),
        ("toy/s2", "sentence two", (), "test"),
    ]


def test_join_on_key_and_by_row_with_verification(tmp_path: Path) -> None:
    (tmp_path / "posts.tsv").write_text("post\tclass\nfirst post\tx\nsecond post\ty\n", encoding="utf-8")
    (tmp_path / "ids.tsv").write_text("ID\tclass\n101\tx\n102\ty\n", encoding="utf-8")
    (tmp_path / "fine.csv").write_text("ID,fine\n102,threatening\n", encoding="utf-8")
    path = _config(
        tmp_path,
        {
            "kind": "tsv",
            "path": str(tmp_path / "posts.tsv"),
            "text_column": "post",
            "id_column": "ID",
            "join": [
                {
                    "kind": "tsv",
                    "path": str(tmp_path / "ids.tsv"),
                    "by_row": True,
                    "columns": ["ID"],
                    "verify": {"class": "class"},
                },
                {
                    "kind": "csv",
                    "path": str(tmp_path / "fine.csv"),
                    "key": "ID",
                    "columns": ["fine"],
                    "required": False,
                },
            ],
        },
        labels={
            "rules": [
                {"when": {"column": "fine", "op": "==", "value": "threatening"}, "labels": ["violent_threat"]}
            ]
        },
    )
    assert _rows(path) == [("toy/101", "first post", ()), ("toy/102", "second post", ("violent_threat",))]


def test_join_verification_catches_misaligned_tables(tmp_path: Path) -> None:
    (tmp_path / "posts.tsv").write_text("post\tclass\nfirst post\tx\nsecond post\ty\n", encoding="utf-8")
    (tmp_path / "ids.tsv").write_text("ID\tclass\n101\ty\n102\tx\n", encoding="utf-8")
    path = _config(
        tmp_path,
        {
            "kind": "tsv",
            "path": str(tmp_path / "posts.tsv"),
            "text_column": "post",
            "id_column": "ID",
            "join": [
                {
                    "kind": "tsv",
                    "path": str(tmp_path / "ids.tsv"),
                    "by_row": True,
                    "columns": ["ID"],
                    "verify": {"class": "class"},
                }
            ],
        },
        labels={"rules": []},
    )
    with pytest.raises(DataError, match=r"posts\.tsv line 2: field 'class': 'x' here but 'y' in .*ids\.tsv"):
        _rows(path)


def test_hub_reader_fails_clearly_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    path = _config(
        tmp_path,
        {
            "kind": "hub",
            "hub": {"name": "textguard-tests/no-such-dataset", "split": "train"},
            "text_column": "text",
        },
    )
    with pytest.raises(
        DataError, match=r"hub:textguard-tests/no-such-dataset\[train\]: cannot load the hub dataset.*offline"
    ):
        _rows(path)


def test_clean_steps_mask_handles_links_and_entities(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        "text,label\nhi @someone see https://x.example/a &amp; bye|LBR|now,ok\n", encoding="utf-8"
    )
    path = _config(
        tmp_path,
        {
            "kind": "csv",
            "path": str(tmp_path / "a.csv"),
            "text_column": "text",
            "replace": {"|LBR|": " "},
            "clean": ["html_unescape", "mask_urls", "mask_mentions"],
        },
    )
    assert _rows(path) == [("toy/main/1", "hi @user see @url & bye now", ())]
