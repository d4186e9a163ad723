"""`textguard data mine-negatives` on a real (tiny) model: it writes exactly what scoring flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from train_support import write_prepared
from typer.testing import CliRunner

from textguard.cli import app
from textguard.data.mining import read_mined_ids
from textguard.data.prepared import load_prepared
from textguard.scorer import Scorer


def test_mine_negatives_cli_writes_what_the_model_flags(tiny_artifact: Path, tmp_path: Path) -> None:
    prepared = write_prepared(tmp_path / "prepared", {"train": 80, "validation": 20, "test": 20})
    output = tmp_path / "mined" / "hn.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "mine-negatives",
            "--model",
            str(tiny_artifact),
            "--prepared",
            str(prepared),
            "--output",
            str(output),
        ],
    )
    assert result.exit_code == 0, result.output
    # The same decision as scoring: benign training rows with any label at the model's thresholds.
    train = load_prepared(prepared, prepare_if_missing=False)["train"]
    scorer = Scorer.from_artifact(tiny_artifact)
    predictions = scorer.score(list(train["text"]))
    expected = {
        row_id
        for row_id, labels, p in zip(train["id"], train["labels"], predictions, strict=True)
        if not labels and p.labels
    }
    assert set(read_mined_ids(output)) == expected
    assert f"{len(expected)} of " in result.output

    # Through the console entry point: one line on stderr and exit code 2, no traceback.
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "textguard",
            "data",
            "mine-negatives",
            "--model",
            str(tmp_path / "nope"),
            "--prepared",
            str(prepared),
            "--output",
            str(tmp_path / "x.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "not found" in missing.stderr and "Traceback" not in missing.stderr
