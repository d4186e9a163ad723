"""`textguard score --engine spark` and `mlflow.pyfunc.spark_udf` on a local Spark (local[2]).

One SparkSession for the module (a JVM start is the slow part); a tiny model; a few thousand rows in
several Hive-style partitions. Skipped where pyspark or Java is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from textguard.batch import score_file
from textguard.errors import DataError
from textguard.labels import LABELS
from textguard.paths import project_root
from textguard.policy import PolicySet

pytest.importorskip("pyspark")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java", allow_module_level=True)

ROOT = project_root()
POLICY = ROOT / "configs" / "policies" / "default.yaml"
SCORES = [f"score_{label}" for label in LABELS]
WORDS = [
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
    "kill",
    "them",
    "all",
    "glory",
    "to",
    "the",
    "martyrs",
    "vermin",
    "should",
    "be",
    "wiped",
    "out",
    "attack",
    "plan",
    "tomorrow",
]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Spark tasks score with one thread each; the in-process reference and training do too (on the
    shared 2-core machine two threads are several times slower, not faster)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("textguard-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3000 rows: 3 day partitions x 2 files, row groups of 250 rows (12 units of 250 or 6 of 500)."""
    root = tmp_path_factory.mktemp("archive") / "chat"
    rng = np.random.default_rng(14)
    for day in range(3):
        for part in range(2):
            rows = []
            for i in range(500):
                length = int(rng.integers(1, 14)) if i % 97 else 400  # a few texts of several windows
                text = " ".join(rng.choice(WORDS, length))
                rows.append({"id": f"d{day}p{part}-{i:04d}", "text": text, "meeting_id": f"m{i % 7}"})
            folder = root / f"day=2026-11-0{day + 1}"
            folder.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_parquet(folder / f"part-{part}.parquet", row_group_size=250)
    return root


@pytest.fixture(scope="module")
def in_process(archive: Path, tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The reference: every file through the in-process engine, same policy."""
    out = tmp_path_factory.mktemp("in-process")
    frames = []
    for index, source in enumerate(sorted(archive.rglob("*.parquet"))):
        target = out / f"{index}.parquet"
        score_file(
            tiny_artifact, source, target, policy_file=POLICY, policy="strict", progress=False, chunk_size=300
        )
        frames.append(pd.read_parquet(target))
    return pd.concat(frames, ignore_index=True).sort_values("id").reset_index(drop=True)


def _same_rows(spark_out: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert spark_out["id"].is_unique, "duplicate ids in the Spark output"
    spark_out = spark_out.sort_values("id").reset_index(drop=True)
    assert spark_out["id"].tolist() == reference["id"].tolist()
    np.testing.assert_allclose(
        spark_out[SCORES].to_numpy(float), reference[SCORES].to_numpy(float), atol=1e-6
    )
    for column in ("predicted_labels", "flagged_labels"):
        assert [list(v) for v in spark_out[column]] == [list(v) for v in reference[column]], column
    assert spark_out["action"].tolist() == reference["action"].tolist()
    assert spark_out["meeting_id"].tolist() == reference["meeting_id"].tolist()


def test_spark_output_equals_the_in_process_engine(
    spark: Any, archive: Path, tiny_artifact: Path, in_process: pd.DataFrame, tmp_path: Path
) -> None:
    from textguard.moderation import ServedModel
    from textguard.scorer import Scorer
    from textguard.spark import SUCCESS, score_archive

    output = tmp_path / "scored"
    summary = score_archive(
        tiny_artifact,
        str(archive),
        str(output),
        policy_file=POLICY,
        policy="strict",
        unit_rows=500,
        chunk_rows=300,
        progress=False,
    )
    assert (summary.units, summary.skipped_units, summary.rows, summary.scored_rows) == (6, 0, 3000, 3000)
    assert (output / SUCCESS).is_file()
    assert sorted(p.relative_to(output).as_posix() for p in output.rglob("*.parquet"))[:2] == [
        "day=2026-11-01/part-0.rg00000-00002.parquet",
        "day=2026-11-01/part-1.rg00000-00002.parquet",
    ]
    out = pd.read_parquet(output)
    _same_rows(out, in_process)
    assert set(out["day"].astype(str)) == {"2026-11-01", "2026-11-02", "2026-11-03"}  # partitions kept
    version = ServedModel.local(Scorer.from_artifact(tiny_artifact)).version
    assert set(out["model_version"]) == {version} and set(out["policy"]) == {"strict"}
    # The same fingerprint the audit store and the transparency report record for this policy.
    assert set(out["policy_version"]) == {PolicySet.load(POLICY).get("strict").version}
    assert summary.actions == out["action"].value_counts().to_dict()

    again = score_archive(
        tiny_artifact, str(archive), str(output), policy_file=POLICY, policy="strict", unit_rows=500
    )
    assert (again.skipped_units, again.scored_rows, again.rows) == (6, 0, 3000)
    with pytest.raises(DataError, match="different policy"):
        score_archive(tiny_artifact, str(archive), str(output), policy_file=POLICY, unit_rows=500)
    with pytest.raises(DataError, match=r"no column 'message'"):
        score_archive(tiny_artifact, str(archive), str(tmp_path / "x"), text_column="message")
    with pytest.raises(DataError, match="no Parquet files"):
        score_archive(tiny_artifact, str(archive / "*.csv"), str(tmp_path / "y"))


def test_bad_rows_fail_the_job_with_a_clear_error_and_a_rerun_completes(
    spark: Any, tiny_artifact: Path, tmp_path: Path
) -> None:
    from textguard.spark import score_archive

    source = tmp_path / "chat"
    source.mkdir()
    pd.DataFrame({"id": ["a", "b"], "text": ["hello", "see you"]}).to_parquet(source / "a.parquet")
    pd.DataFrame({"id": ["c", "d"], "text": ["fine", None]}).to_parquet(source / "b.parquet")
    with pytest.raises(DataError, match=r"b\.parquet: 'text' must be text.*data row 2.*rerun"):
        score_archive(tiny_artifact, str(source), str(tmp_path / "out"), evidence=True, progress=False)
    assert not list((tmp_path / "out").rglob("_tmp-*"))  # a.parquet's unit may or may not have finished
    pd.DataFrame({"id": ["c", "d"], "text": ["fine", "now fixed"]}).to_parquet(source / "b.parquet")
    summary = score_archive(tiny_artifact, str(source), str(tmp_path / "out"), evidence=True, progress=False)
    out = pd.read_parquet(tmp_path / "out")
    assert summary.rows == 4 and sorted(out["id"]) == ["a", "b", "c", "d"]
    assert all(isinstance(json.loads(value), dict) for value in out["evidence"])  # JSON per row


@pytest.mark.slow  # a second JVM (the killed CLI run): ~50 s on the shared 2-core machine
def test_a_killed_run_resumes_without_rescoring_finished_units(
    spark: Any, archive: Path, tiny_artifact: Path, in_process: pd.DataFrame, tmp_path: Path
) -> None:
    from textguard.spark import score_archive

    output = tmp_path / "scored"
    command = [
        sys.executable, "-m", "textguard", "score", "--engine", "spark", "--master", "local[1]",
        "--model", str(tiny_artifact), "--input", f"{archive}/day=*/*.parquet", "--output", str(output),
        "--policy", str(POLICY), "--policy-name", "strict", "--unit-rows", "250", "--chunk-size", "300",
        "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYSPARK_PYTHON": sys.executable}
    process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if len(list(output.rglob("*.rg*.parquet"))) >= 2:
                break
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver, its JVM and its Python workers
        process.wait()
    done = {p: p.stat().st_mtime_ns for p in output.rglob("*.rg*.parquet")}
    assert 2 <= len(done) < 12, f"the run was not stopped midway ({len(done)} of 12 units done)"

    summary = score_archive(
        tiny_artifact,
        f"{archive}/day=*/*.parquet",
        str(output),
        policy_file=POLICY,
        policy="strict",
        unit_rows=250,
        chunk_rows=300,
        progress=False,
    )
    assert summary.skipped_units == len(done) and summary.scored_rows == 3000 - 250 * len(done)
    assert {p: p.stat().st_mtime_ns for p in done} == done  # finished units were not written again
    assert not list(output.rglob("_tmp-*"))
    _same_rows(pd.read_parquet(output), in_process)


def test_spark_udf_on_a_trained_model_matches_the_library(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from train_support import write_prepared

    from textguard.batch import score_frame
    from textguard.moderation import ServedModel
    from textguard.scorer import Scorer
    from textguard.tracking.uris import global_tracking_uri
    from textguard.training.config import load_train_config
    from textguard.training.pipeline import train

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    prepared = write_prepared(tmp_path / "prepared", {"train": 120, "validation": 60, "test": 60})
    smoke = ROOT / "configs" / "smoke.yaml"
    config = load_train_config(
        smoke, [f"data={{prepared: {prepared}}}", f"tracking.uri={uri}"], output_dir=tmp_path / "out"
    )
    train(config, config_path=smoke)
    # spark_udf resolves models:/ through MLflow's process-wide URI, which wins over the environment
    # variable; it is restored after the block so later tests see their own store.
    with global_tracking_uri(uri):
        texts = [" ".join(np.random.default_rng(i).choice(WORDS, 1 + i % 30)) for i in range(200)]
        frame = pd.DataFrame({"id": [str(i) for i in range(len(texts))], "text": texts})
        udf = mlflow.pyfunc.spark_udf(spark, "models:/textguard@candidate", env_manager="local")
        scored = (
            spark.createDataFrame(frame, "id string, text string")
            .repartition(3)
            .withColumn("p", udf("text"))
            .select("id", "p.*")
            .toPandas()
            .sort_values("id", key=lambda ids: ids.astype(int))
            .reset_index(drop=True)
        )
    scorer = Scorer.from_artifact("models:/textguard@candidate")
    library = score_frame(ServedModel.local(scorer), frame, progress=False)
    np.testing.assert_allclose(
        scored[list(LABELS)].to_numpy(float), library[SCORES].to_numpy(float), atol=1e-6
    )
    assert [list(v) for v in scored["labels"]] == [list(v) for v in library["predicted_labels"]]
    assert set(scored["action"]) <= {"allow", "review"}
    flagged = [bool(len(v)) for v in library["predicted_labels"]]
    assert [action == "review" for action in scored["action"]] == flagged
