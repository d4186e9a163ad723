"""The in-process engine streams: a file larger than a memory budget is scored with a bounded peak RSS.

Each measurement runs in a fresh subprocess: load the model and score a small file first (so the
model, torch and pyarrow are in memory), reset the peak RSS (Linux: `5` into /proc/self/clear_refs
resets VmHWM, which loading the model had pushed up), then score the big file; VmHWM minus the RSS
before is what the file itself cost. Reading the file whole (the engine before it streamed) is
measured the same way as a control, so the budget is one that a non-streaming engine breaks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

if not Path("/proc/self/clear_refs").exists():
    pytest.skip("measuring peak RSS needs Linux's /proc/self/clear_refs", allow_module_level=True)

from textguard.paths import project_root

MiB = 1024 * 1024
ROWS = 3000
PAYLOAD = 25_000  # characters of a non-text column per row: 3000 rows ~ 75 MB
BUDGET = 50 * MiB  # the file is ~75 MB; measured growth ~35 MiB streaming, ~225 MiB whole

MEASURE = r"""
import json, re, sys
from textguard.batch import read_input, score_file, score_frame, write_output
from textguard.moderation import ServedModel
from textguard.scorer import Scorer

mode, model, small, big, out = sys.argv[1:6]
def status(key):
    with open("/proc/self/status") as handle:
        return int(re.search(key + r":\s+(\d+) kB", handle.read()).group(1)) * 1024

score_file(model, small, out + ".warm.parquet", progress=False)
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
before = status("VmRSS")
if mode == "stream":
    summary = score_file(model, big, out, progress=False, chunk_size=100)
    rows = summary.rows
else:  # the control: the whole file in memory, as the engine did before it streamed
    frame = read_input(big)
    scored = score_frame(ServedModel.local(Scorer.from_artifact(model)), frame, progress=False)
    write_output(scored, out)
    rows = len(scored)
after = status("VmHWM")
print(json.dumps({"growth": after - before, "rows": rows}))
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("streaming")
    rng = np.random.default_rng(5)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    payload = [rng.choice(letters, PAYLOAD).tobytes().decode() for _ in range(ROWS)]
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(ROWS)],
            "text": [f"message number {i} about the agenda" for i in range(ROWS)],
            "attachment": payload,
        }
    )
    small = folder / "small.csv"
    frame.head(20).drop(columns="attachment").to_csv(small, index=False)
    big_csv = folder / "big.csv"
    frame.to_csv(big_csv, index=False)
    big_parquet = folder / "big.parquet"
    frame.to_parquet(big_parquet, row_group_size=100)
    assert big_csv.stat().st_size > BUDGET
    return {"small": small, "csv": big_csv, "parquet": big_parquet}


def _growth(mode: str, model: Path, small: Path, big: Path, out: Path) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, mode, str(model), str(small), str(big), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "PYTHONPATH": str(project_root()),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",  # the measurement is memory; one thread is faster on a shared machine
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("source", "target"), [("csv", "scored.parquet"), ("parquet", "scored.jsonl")])
def test_a_file_larger_than_the_budget_streams_in_bounded_memory(
    files: dict[str, Path], tiny_artifact: Path, tmp_path: Path, source: str, target: str
) -> None:
    measured = _growth("stream", tiny_artifact, files["small"], files[source], tmp_path / target)
    assert measured["rows"] == ROWS
    assert measured["growth"] < BUDGET, f"peak RSS grew {measured['growth'] / MiB:.0f} MiB"
    if target.endswith(".parquet"):
        out = pd.read_parquet(tmp_path / target, columns=["id", "score_violent_threat"])
        assert out["id"].tolist() == [f"r{i}" for i in range(ROWS)]


def test_reading_the_file_whole_breaks_that_budget(
    files: dict[str, Path], tiny_artifact: Path, tmp_path: Path
) -> None:
    """The control: the budget is tight enough that the old whole-file engine does not fit in it."""
    measured = _growth("whole", tiny_artifact, files["small"], files["csv"], tmp_path / "whole.parquet")
    assert measured["growth"] > BUDGET, f"peak RSS grew only {measured['growth'] / MiB:.0f} MiB"
