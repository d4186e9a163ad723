"""prepare(): splits, de-duplication, leaks, conflicts, eval-only data, combined configs, loading."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from textguard.data.dataconfig import load_data_config
from textguard.data.dedup import resolve_labels
from textguard.data.prepare import prepare
from textguard.data.prepared import load_prepared, read_split_table
from textguard.errors import ConfigError

WORDS = (
    "agenda",
    "budget",
    "calendar",
    "draft",
    "estimate",
    "forecast",
    "garden",
    "harbour",
    "invoice",
    "journal",
    "kettle",
    "ladder",
    "margin",
    "notebook",
    "orchard",
    "parcel",
    "quarter",
    "ribbon",
    "summary",
    "ticket",
    "umbrella",
    "voucher",
    "window",
    "yellow",
    "zebra",
    "anchor",
    "bridge",
    "canvas",
    "dolphin",
    "engine",
    "falcon",
    "glacier",
    "hammer",
    "island",
    "jacket",
    "lantern",
    "meadow",
    "needle",
    "oyster",
    "pepper",
)


def _texts(count: int, seed: int = 0) -> list[str]:
    generator = random.Random(seed)
    return [" ".join(generator.choice(WORDS) for _ in range(12)) + f" {index}" for index in range(count)]


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["text,label"] + [f'"{text}",{label}' for text, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _config(directory: Path, name: str, sources: list[dict[str, Any]], **extra: Any) -> Path:
    data = {
        "name": name,
        "description": f"{name} test data",
        "license": "CC0-1.0",
        "sources": [{"kind": "csv", "text_column": "text", "language": "en", **source} for source in sources],
        "labels": {"rules": [{"column": "label", "map": {"bad": ["hate_dehumanization"], "ok": []}}]},
        **extra,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _ids(directory: Path, split: str) -> list[str]:
    return list(read_split_table(directory, split).column("id").to_pylist())


def _texts_in(directory: Path, split: str) -> set[str]:
    return set(read_split_table(directory, split).column("text").to_pylist())


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    rows = [(text, "bad" if index % 4 == 0 else "ok") for index, text in enumerate(_texts(200))]
    _write_csv(tmp_path / "plain.csv", rows)
    return _config(tmp_path, "plain", [{"name": "main", "path": str(tmp_path / "plain.csv")}])


def test_splits_are_stratified_and_reproducible(plain: Path, tmp_path: Path) -> None:
    first = prepare(plain, tmp_path / "a")
    prepare(plain, tmp_path / "b")
    prepare(plain, tmp_path / "c", overrides=["split.seed=99"])
    assert first["splits"] == {"train": 160, "validation": 20, "test": 20}
    assert first["labels"]["test"]["hate_dehumanization"] == 5  # a quarter, as in the data
    for split in ("train", "validation", "test"):
        assert _ids(tmp_path / "a", split) == _ids(tmp_path / "b", split)
    assert _ids(tmp_path / "a", "test") != _ids(tmp_path / "c", "test")
    a_files = json.loads((tmp_path / "a" / "report.json").read_text())["files"]
    b_files = json.loads((tmp_path / "b" / "report.json").read_text())["files"]
    assert a_files == b_files  # byte-identical Parquet


def test_prepared_schema_and_loader(plain: Path, tmp_path: Path) -> None:
    prepare(plain, tmp_path / "out")
    loaded = load_prepared(tmp_path / "out")
    assert set(loaded) == {"train", "validation", "test"}
    assert loaded["train"].column_names == ["id", "text", "labels", "language", "source", "dataset", "split"]
    row = loaded["test"][0]
    assert row["split"] == "test" and row["dataset"] == "plain" and row["source"] == "chat"
    assert all(isinstance(label, str) for label in row["labels"])


def test_near_duplicate_of_a_test_row_never_reaches_train(tmp_path: Path) -> None:
    texts = _texts(60, seed=1)
    planted = texts[0]
    variant = planted.replace(planted.split()[3], planted.split()[3] + "s", 1) + "!"
    _write_csv(tmp_path / "official_test.csv", [(planted, "bad")])
    _write_csv(tmp_path / "train.csv", [(variant, "bad"), *[(text, "ok") for text in texts[1:]]])
    config = _config(
        tmp_path,
        "leaky",
        [
            {"name": "test", "path": str(tmp_path / "official_test.csv"), "split": "test"},
            {"name": "train", "path": str(tmp_path / "train.csv"), "split": "trainval"},
        ],
    )
    report = prepare(config, tmp_path / "out")
    assert planted in _texts_in(tmp_path / "out", "test")
    assert variant not in _texts_in(tmp_path / "out", "train") | _texts_in(tmp_path / "out", "validation")
    assert report["leaks_removed"]["near"] == 1


def test_exact_copy_of_a_test_row_in_another_dataset_is_removed_as_a_leak(tmp_path: Path) -> None:
    texts = _texts(40, seed=2)
    _write_csv(tmp_path / "one.csv", [(texts[0], "ok")])
    _write_csv(tmp_path / "two.csv", [(text.upper(), "ok") for text in texts])  # case differs only
    _config(tmp_path, "one", [{"name": "m", "path": str(tmp_path / "one.csv"), "split": "test"}])
    _config(tmp_path, "two", [{"name": "m", "path": str(tmp_path / "two.csv"), "split": "train"}])
    combined = tmp_path / "mix.yaml"
    combined.write_text(
        yaml.safe_dump(
            {
                "name": "mix",
                "description": "d",
                "license": "l",
                "include": [{"config": "one"}, {"config": "two"}],
            }
        )
    )
    report = prepare(combined, tmp_path / "out")
    assert report["leaks_removed"]["exact"] == 1
    assert texts[0].upper() not in _texts_in(tmp_path / "out", "train")
    assert report["splits"] == {"train": 39, "validation": 0, "test": 1}


def test_near_duplicates_kept_together_when_dropping_is_off(tmp_path: Path) -> None:
    texts = _texts(100, seed=3)
    pairs = [(text, "ok") for text in texts] + [(text + " again", "ok") for text in texts[:30]]
    _write_csv(tmp_path / "pairs.csv", pairs)
    config = _config(
        tmp_path,
        "pairs",
        [{"name": "m", "path": str(tmp_path / "pairs.csv")}],
        dedup={"near": {"drop_within_dataset": False}},
    )
    report = prepare(config, tmp_path / "out")
    assert report["near_duplicates"]["removed_within_dataset"] == 0
    split_of = {}
    for split in ("train", "validation", "test"):
        for text in _texts_in(tmp_path / "out", split):
            split_of[text] = split
    assert len(split_of) == 130
    assert all(split_of[text] == split_of[text + " again"] for text in texts[:30])


def test_near_duplicates_are_dropped_within_a_dataset(tmp_path: Path) -> None:
    texts = _texts(50, seed=4)
    _write_csv(
        tmp_path / "d.csv", [(text, "ok") for text in texts] + [(text + ".", "ok") for text in texts[:10]]
    )
    config = _config(tmp_path, "dups", [{"name": "m", "path": str(tmp_path / "d.csv")}])
    report = prepare(config, tmp_path / "out")
    assert report["near_duplicates"]["removed_within_dataset"] == 10
    assert sum(report["splits"].values()) == 50


def test_conflicting_labels_on_duplicates_follow_the_majority_then_union_rule(tmp_path: Path) -> None:
    texts = _texts(30, seed=5)
    rows = [(text, "ok") for text in texts[2:]]
    rows += [(texts[0], "bad"), (texts[0], "bad"), (texts[0].upper(), "ok")]  # majority: bad
    rows += [(texts[1], "bad"), (texts[1], "ok")]  # tie: union
    _write_csv(tmp_path / "c.csv", rows)
    config = _config(tmp_path, "conflicts", [{"name": "m", "path": str(tmp_path / "c.csv")}])
    report = prepare(config, tmp_path / "out")
    assert report["label_conflicts"]["resolved_by_majority"] == 1
    assert report["label_conflicts"]["resolved_by_union"] == 1
    assert report["exact_duplicates"]["within_dataset"] == 3
    labels = {}
    for split in ("train", "validation", "test"):
        table = read_split_table(tmp_path / "out", split)
        labels.update(zip(table.column("text").to_pylist(), table.column("labels").to_pylist(), strict=True))
    assert labels[texts[0]] == ["hate_dehumanization"]
    assert labels[texts[1]] == ["hate_dehumanization"]


def test_resolve_labels_rule() -> None:
    assert resolve_labels([("violent_threat",), ("violent_threat",), ()]) == (("violent_threat",), "majority")
    both = ("violent_threat", "hate_dehumanization")
    assert resolve_labels([("hate_dehumanization",), ("violent_threat",)]) == (both, "union")
    assert resolve_labels([(), ()]) == ((), "agreed")


def test_eval_only_dataset_goes_entirely_to_test(tmp_path: Path) -> None:
    _write_csv(tmp_path / "suite.csv", [(text, "ok") for text in _texts(40, seed=6)])
    config = _config(tmp_path, "suite", [{"name": "m", "path": str(tmp_path / "suite.csv")}], eval_only=True)
    report = prepare(config, tmp_path / "out")
    assert report["splits"] == {"train": 0, "validation": 0, "test": 40}


@pytest.mark.parametrize("override", ["sources.0.split=train", "sources.0.split=trainval"])
def test_eval_only_dataset_refuses_train(tmp_path: Path, override: str) -> None:
    _write_csv(tmp_path / "suite.csv", [(text, "ok") for text in _texts(5, seed=6)])
    config = _config(tmp_path, "suite", [{"name": "m", "path": str(tmp_path / "suite.csv")}], eval_only=True)
    with pytest.raises(ConfigError, match=r"suite is evaluation-only .* may only go to test"):
        load_data_config(config, [override])


def test_combined_config_weights_and_decontamination(tmp_path: Path) -> None:
    texts = _texts(200, seed=7)
    suite = texts[:5]
    _write_csv(tmp_path / "big.csv", [(text, "ok") for text in texts])
    _write_csv(tmp_path / "suite.csv", [(text, "ok") for text in suite])
    _config(tmp_path, "big", [{"name": "m", "path": str(tmp_path / "big.csv")}])
    _config(tmp_path, "suite", [{"name": "m", "path": str(tmp_path / "suite.csv")}], eval_only=True)
    combined = tmp_path / "mix.yaml"
    combined.write_text(
        yaml.safe_dump(
            {
                "name": "mix",
                "description": "d",
                "license": "l",
                "include": [{"config": "big", "train_fraction": 0.5}],
                "decontaminate": ["suite"],
            }
        )
    )
    report = prepare(combined, tmp_path / "out")
    kept = set().union(*(_texts_in(tmp_path / "out", split) for split in ("train", "validation", "test")))
    assert not kept & set(suite)  # suite rows are never written...
    removed = report["leaks_removed"]["decontamination"]
    in_test = sum(1 for text in suite if text in _texts_in(tmp_path / "out", "test"))
    assert removed + in_test == 5  # ...and their copies leave train and validation
    before, after = report["sampling"]["big"]["before"], report["sampling"]["big"]["after"]
    assert after == report["splits"]["train"] and 0.35 * before < after < 0.65 * before


def test_combined_refuses_unknown_member(tmp_path: Path) -> None:
    combined = tmp_path / "mix.yaml"
    combined.write_text(
        yaml.safe_dump({"name": "mix", "description": "d", "license": "l", "include": [{"config": "nope"}]})
    )
    with pytest.raises(ConfigError, match=r"include names 'nope' but .*nope\.yaml does not exist"):
        prepare(combined, tmp_path / "out")


def test_language_identification_fills_missing_languages(tmp_path: Path) -> None:
    rows = [
        ("the weather in the mountains is lovely this time of the year", "ok"),
        ("das Wetter in den Bergen ist um diese Jahreszeit wunderschön", "ok"),
        ("o tempo nas montanhas é lindo nesta época do ano", "ok"),
    ]
    _write_csv(tmp_path / "l.csv", rows)
    config = _config(
        tmp_path,
        "langs",
        [{"name": "m", "path": str(tmp_path / "l.csv"), "language": None}],
        language_id={"candidates": ["en", "de", "pt-BR"]},
    )
    report = prepare(config, tmp_path / "out")
    assert report["language_id"] == {"rows": 3, "detected": {"en": 1, "de": 1, "pt-BR": 1}}


def test_caption_copies_are_seeded_and_stay_in_their_original_split(plain: Path, tmp_path: Path) -> None:
    pytest.importorskip("textguard.caption")
    overrides = ["caption.enabled=true", "caption.fraction=0.5"]
    report = prepare(plain, tmp_path / "a", overrides=overrides)
    prepare(plain, tmp_path / "b", overrides=overrides)
    assert report["caption"]["copies"] > 50
    for split in ("train", "validation", "test"):
        table = read_split_table(tmp_path / "a", split)
        ids = table.column("id").to_pylist()
        sources = dict(zip(ids, table.column("source").to_pylist(), strict=True))
        copies = [identifier for identifier in ids if identifier.endswith("#caption")]
        assert all(identifier.removesuffix("#caption") in sources for identifier in copies)
        assert all(sources[identifier] == "caption" for identifier in copies)
        assert table.to_pylist() == read_split_table(tmp_path / "b", split).to_pylist()
