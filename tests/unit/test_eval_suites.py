"""Functional suites in HateCheck format: loading both suite flavours and the functional accuracy module."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from textguard.errors import DataError
from textguard.evaluation import modules
from textguard.evaluation.suites import SEGMENT_SEPARATOR, load_suite
from textguard.paths import resources_dir, shared_datasets_dir

MEETING_SUITE = resources_dir() / "suites" / "meeting_functional.csv"
HATECHECK = shared_datasets_dir() / "hatecheck_en" / "test_suite_cases.csv"
HATECHECK_COLUMNS = ["", "functionality", "case_id", "test_case", "label_gold", "target_ident", "direction"]


def test_meeting_suite_loads_with_label_gold_and_joined_segments() -> None:
    with MEETING_SUITE.open(encoding="utf-8", newline="") as handle:
        raw = list(csv.DictReader(handle))
    suite = load_suite(str(MEETING_SUITE))
    assert suite.name == "meeting_functional" and suite.size == len(raw)
    assert suite.has_label_gold and not np.isnan(suite.gold).any()
    split = [index for index, row in enumerate(raw) if row["functionality"] == "threat_split_caption_h"]
    assert split and all(SEGMENT_SEPARATOR in raw[index]["test_case"] for index in split)
    assert all(SEGMENT_SEPARATOR not in text for text in suite.texts)
    for index in split:
        assert suite.texts[index] == raw[index]["test_case"].replace(SEGMENT_SEPARATOR, " ")
    # Gold agrees with label_gold: hateful cases carry labels, non-hateful ones none.
    assert np.array_equal(suite.gold.any(axis=1), suite.hateful)
    assert {"en", "fr", "de"} <= set(suite.language)


def _write_hatecheck_like(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HATECHECK_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_hatecheck_format_without_labels_or_language(tmp_path: Path) -> None:
    path = tmp_path / "hatecheck_en" / "test_suite_cases.csv"
    rows = [
        {
            "": "0",
            "functionality": "ident_neutral_nh",
            "case_id": "11",
            "test_case": "we met the new team",
            "label_gold": "non-hateful",
            "target_ident": "women",
            "direction": "general",
        },
        {
            "": "1",
            "functionality": "slur_h",
            "case_id": "12",
            "test_case": "placeholder case",
            "label_gold": "hateful",
            "target_ident": "women",
            "direction": "general",
        },
    ]
    _write_hatecheck_like(path, rows)
    suite = load_suite(str(path))
    assert suite.name == "hatecheck_en" and suite.case_ids == ["11", "12"]
    assert suite.language == ["und", "und"] and suite.target == ["women", "women"]
    assert suite.hateful.tolist() == [False, True] and np.isnan(suite.gold).all() and not suite.has_label_gold
    named = load_suite(f"custom={path}")
    assert named.name == "custom"


def test_bad_suites_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    _write_hatecheck_like(
        path,
        [
            {
                "": "0",
                "functionality": "f_h",
                "case_id": "1",
                "test_case": "text",
                "label_gold": "hate",
                "target_ident": "",
                "direction": "",
            }
        ],
    )
    with pytest.raises(DataError, match=r"line 2: label_gold must be hateful or non-hateful"):
        load_suite(str(path))
    with pytest.raises(DataError, match="not found"):
        load_suite(str(tmp_path / "missing.csv"))
    labelled = tmp_path / "labelled.csv"
    labelled.write_text(
        "functionality,case_id,test_case,label_gold,labels,language\nx_nh,1,hello,non-hateful,violent_threat,en\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError, match="contradict label_gold"):
        load_suite(str(labelled))


@pytest.mark.datasets
def test_the_original_hatecheck_file_loads_as_shipped() -> None:
    if not HATECHECK.is_file():
        pytest.skip(f"{HATECHECK} not present")
    suite = load_suite(str(HATECHECK))
    # Counts from datasets/hatecheck_en/SOURCE.md.
    assert suite.name == "hatecheck_en" and suite.size == 3728 and int(suite.hateful.sum()) == 2563
    assert len(set(suite.functionality)) == 29 and len(set(suite.case_ids)) == 3728


def test_functional_accuracy_balanced_and_hard_negatives() -> None:
    functionality = ["threat_h"] * 6 + ["counter_quote_nh"] * 3 + ["ident_neutral_nh"] * 3
    hateful = np.array([True] * 6 + [False] * 6)
    language = ["en"] * 8 + ["fr"] * 4
    everything = modules.functional_metrics(np.ones(12, bool), hateful, functionality, language)
    nothing = modules.functional_metrics(np.zeros(12, bool), hateful, functionality, language)
    # Flagging everything or nothing scores 50% balanced accuracy (QUALITY.md's definition).
    assert everything["balanced_accuracy"] == nothing["balanced_accuracy"] == 0.5
    assert everything["accuracy"] == 0.5 and everything["hard_negative_accuracy"] == 0.0
    flagged = np.array([True] * 5 + [False] + [True] + [False] * 5)
    report = modules.functional_metrics(flagged, hateful, functionality, language)
    assert report["hateful_accuracy"] == pytest.approx(5 / 6)
    assert report["non_hateful_accuracy"] == report["hard_negative_accuracy"] == pytest.approx(5 / 6)
    assert report["functionality"]["counter_quote_nh"] == {"accuracy": pytest.approx(2 / 3), "n_cases": 3.0}
    assert report["language"]["fr"]["n_cases"] == 4.0


def test_a_thirteen_language_suite_reports_every_functionality_per_language(tmp_path: Path) -> None:
    """A multilingual suite in the meeting suite's format (as meeting_multilingual.csv will be):
    per-language balanced and hard-negative accuracy, the functionality x language table, and the
    named metrics compare and the gate recompute agree with the logged values."""
    from textguard.evaluation import naming
    from textguard.evaluation.headline import is_headline
    from textguard.evaluation.named_metrics import metric_function
    from textguard.evaluation.predictions import build_frame, partitions, suite_partition
    from textguard.evaluation.runner import _suite_tables
    from textguard.labels import LABELS

    languages = ["ar", "de", "en", "es", "fr", "hi", "id", "it", "ja", "nl", "pt", "ru", "tr"]
    with MEETING_SUITE.open(encoding="utf-8", newline="") as handle:
        template = list(csv.DictReader(handle))
    columns = list(template[0])
    # Every functionality of the meeting suite in each of 13 languages (texts are placeholders).
    rows = []
    for code in languages:
        for row in template:
            if row["language"] == "en":
                rows.append({**row, "case_id": f"{code}-{row['case_id']}", "language": code})
    path = tmp_path / "meeting_multilingual.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    suite = load_suite(str(path))
    assert suite.name == "meeting_multilingual" and sorted(set(suite.language)) == languages
    rng = np.random.default_rng(0)
    flagged = np.where(rng.random(suite.size) < 0.75, suite.hateful, ~suite.hateful)
    report = modules.functional_metrics(flagged, suite.hateful, suite.functionality, suite.language)
    tables = _suite_tables(suite, flagged, report)
    assert [row["language"] for row in tables.languages] == languages
    functionalities = sorted(set(suite.functionality))
    assert [row["functionality"] for row in tables.by_language] == functionalities
    assert all(set(languages) <= set(row) for row in tables.by_language)

    frame = build_frame(
        suite_partition(suite.name),
        suite.case_ids,
        list(LABELS),
        suite.gold,
        np.repeat(flagged[:, None], len(LABELS), axis=1).astype(float),
        np.repeat(flagged[:, None], len(LABELS), axis=1),
        {
            "language": suite.language,
            "functionality": suite.functionality,
            "hateful": suite.hateful.astype(float).tolist(),
        },
    )
    part = partitions(frame)[suite_partition(suite.name)]
    for code in languages:
        members = np.asarray(suite.language) == code
        hard = members & np.char.endswith(np.asarray(suite.functionality), "_nh")
        balanced = naming.suite_metric(suite.name, "balanced_accuracy", "language", code)
        hard_name = naming.suite_metric(suite.name, "accuracy", "language", code, subgroup="hard_negative")
        assert hard_name == f"suite.meeting_multilingual.language.{code}.hard_negative.accuracy"
        assert is_headline(balanced) and is_headline(hard_name)
        assert metric_function(balanced).value(part) == pytest.approx(
            report["language"][code]["balanced_accuracy"]
        )
        assert metric_function(hard_name).value(part) == pytest.approx(
            report["language"][code]["hard_negative_accuracy"]
        )
        assert report["language"][code]["hard_negative_accuracy"] == pytest.approx(
            float((flagged[hard] == suite.hateful[hard]).mean())
        )
        for row in tables.by_language:
            cell = (np.asarray(suite.functionality) == row["functionality"]) & members
            assert row[code] == pytest.approx(float((flagged[cell] == suite.hateful[cell]).mean()))
