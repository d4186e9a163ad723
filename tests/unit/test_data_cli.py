"""`textguard data prepare` / `textguard data card` through the real entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from textguard.cli import app


def _config(tmp_path: Path, rows: str) -> Path:
    (tmp_path / "a.csv").write_text(rows, encoding="utf-8")
    data = {
        "name": "toy",
        "description": "toy data",
        "license": "CC0-1.0",
        "sources": [
            {
                "name": "m",
                "kind": "csv",
                "path": str(tmp_path / "a.csv"),
                "text_column": "text",
                "language": "en",
            }
        ],
        "labels": {
            "rules": [
                {"column": "label", "map": {"bad": ["hate_dehumanization"], "ok": []}, "why": "toy mapping"},
                {
                    "when": {"column": "text", "op": "matches", "value": "number 1[0-9]"},
                    "labels": [],
                    "why": "toy fix",
                    "fix": {
                        "lesson": "teens taught as hate",
                        "sample": 10,
                        "correct": 9,
                        "measured": "today",
                    },
                },
            ]
        },
        "card": {
            "summary": "A toy dataset.",
            "known_gaps": ["Everything."],
            "rejected_fixes": ["twenties benign: 3/10, not kept"],
        },
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "textguard", "data", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_bad_row_is_one_line_exit_2_no_traceback(tmp_path: Path) -> None:
    config = _config(tmp_path, "text,label\nhello,ok\nthere,perhaps\n")
    result = _run("prepare", "--config", str(config), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "a.csv line 3: field 'label': unknown label value 'perhaps'" in lines[0]
    assert lines[0].startswith("error: ")


def test_config_typo_is_one_line_exit_2(tmp_path: Path) -> None:
    config = _config(tmp_path, "text,label\nhello,ok\n")
    result = _run("prepare", "--config", str(config), "--set", "dedup.near.treshold=0.7")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {config}: dedup.near.treshold: unknown key")


def test_prepare_then_card(tmp_path: Path) -> None:
    rows = "text,label\n" + "".join(
        f"note number {index} about the agenda,{'bad' if index % 3 else 'ok'}\n" for index in range(30)
    )
    config = _config(tmp_path, rows)
    runner = CliRunner()
    prepared = runner.invoke(
        app,
        [
            "data",
            "prepare",
            "--config",
            str(config),
            "--output",
            str(tmp_path / "out"),
            "--lenient",
            "--no-progress",
        ],
    )
    assert prepared.exit_code == 0, prepared.output
    assert "toy: prepared rows" in prepared.output and "leaks removed" in prepared.output
    assert (tmp_path / "out" / "report.json").is_file()
    card = runner.invoke(
        app,
        [
            "data",
            "card",
            "--config",
            str(config),
            "--prepared",
            str(tmp_path / "out"),
            "--output",
            str(tmp_path / "toy.md"),
        ],
    )
    assert card.exit_code == 0, card.output
    text = (tmp_path / "toy.md").read_text(encoding="utf-8")
    for heading in (
        "## Dataset Description",
        "### Label Definitions",
        "## Uses",
        "## Dataset Structure",
        "## Dataset Creation",
        "### Curation Rationale",
        "### Source Data",
        "### Annotations",
        "## Considerations for Using the Data",
        "### Social Impact of Dataset",
        "### Discussion of Biases",
        "### Other Known Limitations",
        "## Additional Information",
        "### Licensing Information",
        "### Citation Information",
    ):
        assert heading in text
    assert "| label == bad | hate_dehumanization | toy mapping |" in text
    assert "No row carries `violent_threat`." in text
    # The fix rule is listed with the rows it matched (10 to 19) and its measured precision.
    assert "#### Label Fixes" in text
    assert (
        "| toy | all sources: text matches /number 1[0-9]/i | benign | 10 | 9/10 = 90% | teens taught" in text
    )
    assert "- twenties benign: 3/10, not kept" in text
    assert "note number" not in text  # statistics and prose, never rows
