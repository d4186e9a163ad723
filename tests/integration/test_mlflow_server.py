"""A real `mlflow server` (PostgreSQL backend store, proxied artifacts in tmp): log, resolve, promote,
export back, and get identical probabilities from every URI. Skipped where no PostgreSQL answers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from textguard.errors import ModelLoadError
from textguard.scorer import Scorer
from textguard.tracking import registry, training_run
from textguard.tracking.artifacts import download_model

pytestmark = pytest.mark.postgres

PG_HOST, PG_PORT = "127.0.0.1", 5432
SERVER_START_TIMEOUT_S = 120
TEXTS = ["can you share your screen", "merci à tous", "", "the meeting starts now " * 20]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _admin_connection():  # type: ignore[no-untyped-def]
    """A superuser connection over trust auth: $TEXTGUARD_TEST_PG_USER, else postgres, else root."""
    import psycopg

    users = [os.environ.get("TEXTGUARD_TEST_PG_USER"), "postgres", "root"]
    errors = []
    for user in [u for u in users if u]:
        try:
            connection = psycopg.connect(
                host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", connect_timeout=5, autocommit=True
            )
        except psycopg.OperationalError as exc:
            errors.append(f"{user}: {str(exc).strip()[:120]}")
            continue
        return user, connection
    pytest.skip(f"PostgreSQL on {PG_HOST}:{PG_PORT} refused every user: {errors}")


@pytest.fixture(scope="module")
def postgres_uri() -> Iterator[str]:
    """A fresh database for this module, dropped afterwards."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        if sock.connect_ex((PG_HOST, PG_PORT)) != 0:
            pytest.skip(f"no PostgreSQL answers on {PG_HOST}:{PG_PORT}")
    user, connection = _admin_connection()
    database = f"textguard_mlflow_{uuid.uuid4().hex[:10]}"
    with connection:
        connection.execute(f'CREATE DATABASE "{database}"')
        try:
            yield f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{database}"
        finally:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def server(postgres_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on a free port; start bounded in time, process group always terminated."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            postgres_uri,
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the uvicorn workers are stopped with it
        cwd=root,
        # The GenAI job runner starts ~8 extra Python processes (4x the start time on 2 cores).
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited with {process.returncode}: {_tail(root / 'server.log')}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server not up after {SERVER_START_TIMEOUT_S}s: {_tail(root / 'server.log')}"
                )
            time.sleep(0.5)
        yield url
    finally:
        _stop(process)
        log.close()


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    except ProcessLookupError:
        pass


@pytest.fixture
def tracking(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("TEXTGUARD_CACHE_DIR", str(tmp_path / "cache"))
    return server


def _train(server: str, artifact: Path, name: str) -> tuple[str, int]:
    frame = pd.DataFrame({"id": ["a", "b"], "text": TEXTS[:2], "labels": [[], []]})
    with training_run("server-test", server, name, {"suite": "server"}, {"lr": 3e-5}) as run:
        run.log_metrics({"loss": 0.7}, step=1)
        run.log_dataset(frame, "train", "train", "/data/prepared/train.parquet")
        registered = run.log_model(artifact)
    assert run.run_id is not None and registered is not None and registered.run_id == run.run_id
    return run.run_id, registered.version


def test_log_resolve_promote_and_score_identically(tracking: str, tiny_artifact: Path) -> None:
    reference = Scorer.from_artifact(tiny_artifact).predict_proba(TEXTS)
    first_run, first = _train(tracking, tiny_artifact, "first")
    assert registry.alias_version("textguard", "candidate") == first
    candidate = Scorer.from_artifact("models:/textguard@candidate").predict_proba(TEXTS)
    assert np.array_equal(candidate, reference)

    assert registry.promote("textguard", "champion", version=first, reason="first model", user="ci") == first
    champion = Scorer.from_artifact("models:/textguard@champion").predict_proba(TEXTS)
    by_run = Scorer.from_artifact(f"runs:/{first_run}/model").predict_proba(TEXTS)
    assert np.array_equal(champion, candidate) and np.array_equal(by_run, candidate)

    second_run, second = _train(tracking, tiny_artifact, "second")
    moved = registry.promote_alias("textguard", "champion", run_id=second_run, reason="retrained", user="ci")
    assert (moved.previous, moved.version) == (first, second)
    versions = {info.version: info for info in registry.list_versions("textguard")}
    assert versions[second].aliases == ["candidate", "champion"] and versions[second].run_id == second_run
    assert versions[first].tags["textguard.alias.champion.replaced_by_version"] == str(second)


def test_export_publishes_onnx_back_to_the_registered_version(
    tracking: str, tiny_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from textguard.export import export_onnx

    run_id, version = _train(tracking, tiny_artifact, "export")
    registry.promote("textguard", "staging", version=version, reason="export test")
    result = export_onnx(
        "models:/textguard@staging", quantize="int8", exporter="torchscript", sample_texts=TEXTS
    )
    assert (
        result.publish_error is None and result.published_to and result.published_to.startswith("models:/m-")
    )
    assert result.parity["variants"]["onnx_fp32"]["max_abs_diff"] < 1e-4

    # A fresh machine (empty cache) gets the ONNX files with the registered version.
    monkeypatch.setenv("TEXTGUARD_CACHE_DIR", str(tmp_path / "fresh-cache"))
    directory = download_model("models:/textguard@staging")
    assert {"model.onnx", "model.int8.onnx", "parity.json"} <= {path.name for path in directory.iterdir()}
    onnx_probs = Scorer.from_artifact("models:/textguard@staging", backend="onnx").predict_proba(TEXTS)
    np.testing.assert_allclose(
        onnx_probs, Scorer.from_artifact(tiny_artifact).predict_proba(TEXTS), atol=1e-4
    )

    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    assert "export/parity.json" in {item.path for item in client.list_artifacts(run_id, "export")}
    assert client.get_run(run_id).data.metrics["export.onnx_fp32.max_abs_diff"] < 1e-4
    assert client.get_model_version("textguard", str(version)).tags["textguard.onnx"] == "onnx_fp32,onnx_int8"


def test_unknown_alias_names_uri_and_server(tracking: str) -> None:
    with pytest.raises(
        ModelLoadError, match=re.escape("models:/textguard@nope") + ".*" + re.escape(tracking)
    ):
        download_model("models:/textguard@nope")
