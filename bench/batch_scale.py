"""Rows/s and peak RSS of batch scoring: the in-process engine, Spark local[1] and Spark local[2].

All three score the same rows with the same model and policy, each in a fresh child process: Spark the
partitioned archive, the in-process engine the same rows as one Parquet file (it scores one file; the
model loads once in both).
Peak RSS is the whole process tree (for Spark: the driver, its JVM and the Python workers), sampled
every 100 ms with psutil. For Spark, the table separates the session start (JVM, worker start) from the
job, since a long-lived cluster pays the first once.

    python bench/batch_scale.py                                  # a tiny random BERT, 24,000 rows
    python bench/batch_scale.py --model models:/textguard@champion --rows 20000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: torch's default thread count is every core; on a shared machine one thread is often faster (Spark
#: tasks run with spark.task.cpus threads, 1 here), so the in-process engine is measured both ways.
ENGINES = ("in-process", "in-process 1 thread", "spark local[1]", "spark local[2]")
POLICY = ROOT / "configs" / "policies" / "default.yaml"
WORDS = [
    *[
        "share",
        "your",
        "screen",
        "please",
        "the",
        "meeting",
        "starts",
        "now",
        "merci",
        "à",
        "tous",
        "we",
        "ship",
        "on",
        "friday",
    ],
    *[
        "see",
        "you",
        "all",
        "tomorrow",
        "at",
        "nine",
        "the",
        "agenda",
        "has",
        "three",
        "points",
        "and",
        "a",
        "demo",
        "at",
        "the",
        "end",
    ],
]


def make_archive(directory: Path, single: Path, rows: int, files: int) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    per_file = rows // files
    frames = []
    for index in range(files):
        folder = directory / f"day=2026-11-{index % 28 + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        texts = [" ".join(rng.choice(WORDS, int(rng.integers(3, 30)))) for _ in range(per_file)]
        frame = pd.DataFrame({"id": [f"{index}-{i}" for i in range(per_file)], "text": texts})
        frame.to_parquet(folder / f"part-{index:03d}.parquet", row_group_size=1000)
        frames.append(frame)
    pd.concat(frames, ignore_index=True).to_parquet(single, row_group_size=1000)


def tiny_model(directory: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import _build_artifact  # the tests' tiny random BERT

    return _build_artifact("bert", directory)


class PeakRss:
    """Samples the RSS of this process and all its descendants; `peak` in MiB."""

    def __init__(self) -> None:
        import psutil

        self.root = psutil.Process()
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.1):
            total = 0
            for process in [self.root, *self.root.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total / 2**20)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def child(engine: str, model: str, archive: str, output: str) -> None:
    from textguard.batch import score_file

    result: dict[str, Any] = {"engine": engine}
    with PeakRss() as peak:
        if engine.startswith("in-process"):
            if engine.endswith("1 thread"):
                import torch

                torch.set_num_threads(1)
            start = time.perf_counter()
            single = Path(archive).with_suffix(".parquet")
            target = Path(output).with_suffix(".parquet")
            rows = score_file(model, single, target, policy_file=POLICY, progress=False).rows
            result.update(rows=rows, job_s=time.perf_counter() - start, startup_s=0.0)
        else:
            from textguard.spark import score_archive, spark_session

            start = time.perf_counter()
            spark, _ = spark_session(engine.removeprefix("spark "))
            spark.sparkContext.setLogLevel("ERROR")
            startup = time.perf_counter() - start
            start = time.perf_counter()
            summary = score_archive(
                model, archive, output, policy_file=POLICY, progress=False, unit_rows=2000
            )
            result.update(rows=summary.rows, job_s=time.perf_counter() - start, startup_s=startup)
            spark.stop()
    result["peak_rss_mib"] = peak.peak
    print(json.dumps(result))


def measure(engine: str, model: str, archive: Path, work: Path) -> dict[str, Any]:
    output = work / engine.replace(" ", "-").replace("[", "").replace("]", "")
    command = [sys.executable, __file__, "--child", engine, "--model", model, "--archive", str(archive)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYSPARK_PYTHON": sys.executable}
    result = subprocess.run(
        [*command, "--output", str(output)], capture_output=True, text=True, check=False, env=env
    )
    if result.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{result.stderr.strip()[-4000:]}")
    measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", help="artefact directory or models:/ URI (default: a tiny random BERT)")
    parser.add_argument("--rows", type=int, default=24_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--archive", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.archive, args.output)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="textguard-batch-scale-") as tmp:
        work = Path(tmp)
        model = args.model or str(tiny_model(work / "model"))
        archive = work / "archive"
        make_archive(archive, archive.with_suffix(".parquet"), args.rows, args.files)
        print(f"archive: {args.rows} rows in {args.files} Parquet files; model: {args.model or 'tiny BERT'}")
        print(f"{'engine':<21}{'rows':>8}{'startup s':>11}{'job s':>8}{'rows/s':>9}{'peak RSS MiB':>14}")
        results = []
        for engine in ENGINES:
            measured = measure(engine, model, archive, work)
            results.append(measured)
            rate = measured["rows"] / measured["job_s"]
            print(
                f"{engine:<21}{measured['rows']:>8}{measured['startup_s']:>11.1f}{measured['job_s']:>8.1f}"
                f"{rate:>9.0f}{measured['peak_rss_mib']:>14.0f}",
                flush=True,
            )
        rate = {m["engine"]: m["rows"] / m["job_s"] for m in results}
        whole = {m["engine"]: m["rows"] / (m["job_s"] + m["startup_s"]) for m in results}
        best = max(rate["in-process"], rate["in-process 1 thread"])
        for engine in ENGINES[2:]:
            print(
                f"{engine}: {rate[engine] / best:.2f}x the faster in-process rows/s (job only), "
                f"{whole[engine] / best:.2f}x counting the session start"
            )


if __name__ == "__main__":
    main()
