"""Bad input: every class of problem names file, line/row and field; --lenient skips and counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from textguard.data.dataconfig import load_data_config
from textguard.data.prepare import prepare
from textguard.errors import ConfigError, DataError

LABELS = {"rules": [{"column": "label", "map": {"bad": ["hate_dehumanization"], "ok": []}}]}


def _config(tmp_path: Path, source: dict[str, Any], **extra: Any) -> Path:
    data = {
        "name": "toy",
        "description": "toy data",
        "license": "CC0-1.0",
        "sources": [{"name": "main", "language": "en", "text_column": "text", **source}],
        "labels": LABELS,
        **extra,
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _csv(tmp_path: Path, content: bytes | str, name: str = "a.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def _prepare(config: Path, tmp_path: Path, strict: bool = True) -> dict[str, Any]:
    return prepare(config, tmp_path / "out", strict=strict)


def test_missing_column_names_the_file_and_column(tmp_path: Path) -> None:
    data = _csv(tmp_path, "body,label\nhello,ok\n")
    config = _config(tmp_path, {"kind": "csv", "path": str(data)})
    with pytest.raises(
        DataError, match=r"a\.csv: missing column\(s\) \['text'\]; the file has 'body', 'label'"
    ):
        _prepare(config, tmp_path)


def test_unknown_label_value_names_line_and_field(tmp_path: Path) -> None:
    data = _csv(tmp_path, "text,label\nhello,ok\nthere,maybe\n")
    config = _config(tmp_path, {"kind": "csv", "path": str(data)})
    with pytest.raises(
        DataError,
        match=r"a\.csv line 3: field 'label': unknown label value 'maybe' \(expected one of bad, ok\)",
    ):
        _prepare(config, tmp_path)


def test_allowed_values_reject_an_unexpected_value(tmp_path: Path) -> None:
    data = _csv(tmp_path, "text,label,HS\nhello,ok,0\nthere,ok,7\n")
    config = _config(
        tmp_path,
        {"kind": "csv", "path": str(data), "labels": {"allowed_values": {"HS": [0, 1]}, "rules": []}},
    )
    with pytest.raises(DataError, match=r"line 3: field 'HS': unknown label value '7'"):
        _prepare(config, tmp_path)


def test_empty_text_is_an_error_in_strict_mode(tmp_path: Path) -> None:
    data = _csv(tmp_path, 'text,label\nhello,ok\n"  \u200b ",ok\n')
    config = _config(tmp_path, {"kind": "csv", "path": str(data)})
    with pytest.raises(DataError, match=r"a\.csv line 3: field 'text': empty text \(after normalisation\)"):
        _prepare(config, tmp_path)


def test_non_utf8_bytes_name_line_field_and_byte_offset(tmp_path: Path) -> None:
    content = b"text,label\nhello,ok\ncaf\xe9 au lait,ok\n"
    data = _csv(tmp_path, content)
    config = _config(tmp_path, {"kind": "csv", "path": str(data)})
    offset = content.index(b"\xe9")
    with pytest.raises(
        DataError, match=rf"a\.csv line 3: field 'text': not valid UTF-8: byte 0xe9 at byte offset {offset}"
    ):
        _prepare(config, tmp_path)


def test_non_utf8_bytes_in_jsonl_name_line_and_offset(tmp_path: Path) -> None:
    content = b'{"text": "fine", "label": "ok"}\n{"text": "caf\xe9", "label": "ok"}\n'
    data = _csv(tmp_path, content, "a.jsonl")
    config = _config(tmp_path, {"kind": "jsonl", "path": str(data)})
    offset = content.index(b"\xe9")
    with pytest.raises(
        DataError, match=rf"a\.jsonl line 2: field 'text': not valid UTF-8: byte 0xe9 at byte offset {offset}"
    ):
        _prepare(config, tmp_path)


def test_unterminated_quote_is_reported_where_it_starts(tmp_path: Path) -> None:
    data = _csv(tmp_path, 'text,label\nhello,ok\n"cut off here,ok\nmore,ok\n')
    config = _config(tmp_path, {"kind": "csv", "path": str(data)})
    with pytest.raises(
        DataError, match=r"a\.csv line 3: malformed CSV: unterminated quoted field starting at line 3"
    ):
        _prepare(config, tmp_path)


def test_wrong_field_count_names_the_line(tmp_path: Path) -> None:
    data = _csv(tmp_path, "text,label\nhello,ok\nthree,ok,fields\n")
    config = _config(tmp_path, {"kind": "csv", "path": str(data)})
    with pytest.raises(DataError, match=r"a\.csv line 3: expected 2 fields, got 3"):
        _prepare(config, tmp_path)


def test_truncated_parquet_is_a_clear_error(tmp_path: Path) -> None:
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": ["ok", "ok"]}), whole)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(whole.read_bytes()[:-20])
    config = _config(tmp_path, {"kind": "parquet", "path": str(cut)})
    with pytest.raises(DataError, match=r"cut\.parquet: cannot read Parquet .*truncated"):
        _prepare(config, tmp_path)


def test_truncated_jsonl_names_the_last_line(tmp_path: Path) -> None:
    data = _csv(tmp_path, '{"text": "fine", "label": "ok"}\n{"text": "cut', "a.jsonl")
    config = _config(tmp_path, {"kind": "jsonl", "path": str(data)})
    with pytest.raises(DataError, match=r"a\.jsonl line 2: invalid JSON .*the file looks truncated"):
        _prepare(config, tmp_path)


def test_missing_jsonl_field_names_line_and_field(tmp_path: Path) -> None:
    data = _csv(tmp_path, '{"text": "fine", "label": "ok"}\n{"label": "ok"}\n', "a.jsonl")
    config = _config(tmp_path, {"kind": "jsonl", "path": str(data)})
    with pytest.raises(DataError, match=r"a\.jsonl line 2: field 'text': missing"):
        _prepare(config, tmp_path)


def test_non_numeric_value_in_a_numeric_condition(tmp_path: Path) -> None:
    data = _csv(tmp_path, "text,score\nhello,0.1\nthere,high\n")
    rules = {"rules": [{"when": {"column": "score", "op": ">=", "value": 0.5}, "labels": ["violent_threat"]}]}
    config = _config(tmp_path, {"kind": "csv", "path": str(data), "labels": rules})
    with pytest.raises(DataError, match=r"line 3: field 'score': expected a number, got 'high'"):
        _prepare(config, tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    config = _config(tmp_path, {"kind": "csv", "path": str(tmp_path / "nope.csv")})
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        _prepare(config, tmp_path)


def test_config_typo_is_a_config_error(tmp_path: Path) -> None:
    data = _csv(tmp_path, "text,label\nhello,ok\n")
    config = _config(tmp_path, {"kind": "csv", "path": str(data), "text_colum": "text"})
    with pytest.raises(ConfigError, match=r"sources\.0\.text_colum: unknown key"):
        load_data_config(config)


def test_unknown_taxonomy_label_in_config_is_a_config_error(tmp_path: Path) -> None:
    data = _csv(tmp_path, "text,label\nhello,ok\n")
    rules = {"rules": [{"column": "label", "map": {"bad": ["terrorism"], "ok": []}}]}
    config = _config(tmp_path, {"kind": "csv", "path": str(data), "labels": rules})
    with pytest.raises(ConfigError, match=r"unknown label\(s\) \['terrorism'\]"):
        load_data_config(config)


def test_lenient_mode_skips_bad_rows_and_counts_them_per_reason(tmp_path: Path) -> None:
    content = (
        b"text,label\n"
        b"good one,ok\n"
        b"good two,bad\n"
        b"unknown value,maybe\n"
        b'"   ",ok\n'
        b"too,many,fields\n"
        b"caf\xe9,ok\n"
        b"good three,ok\n"
    )
    data = _csv(tmp_path, content)
    config = _config(tmp_path, {"kind": "csv", "path": str(data)}, dedup={"near": {"enabled": False}})
    report = _prepare(config, tmp_path, strict=False)
    assert report["mode"] == "lenient"
    assert report["skipped_rows"] == {
        "empty_text": 1,
        "field_count": 1,
        "non_utf8": 1,
        "unknown_label_value": 1,
    }
    assert sum(report["splits"].values()) == 3
    assert {entry["where"] for entry in report["skipped_examples"]} == {
        f"{data} line {n}" for n in (4, 5, 6, 7)
    }
    assert report["members"][0]["sources"][0]["skipped"] == 4
