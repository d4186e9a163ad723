"""The first inference worker starts before the settings are built (`start_first_worker`): the service
loads its model in that process, and one the settings turn out not to use is killed, never left
importing torch behind a command that failed."""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil
import pytest
from serve_support import service_settings
from typer.testing import CliRunner

from textguard.cli import app
from textguard.errors import ConfigError
from textguard.service.preload import Preload, first_worker_for, start_first_worker


def _workers() -> list[psutil.Process]:
    """This test process's inference worker processes (zombies excluded: those have exited)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE and "textguard.inference_worker" in " ".join(
                child.cmdline()
            ):
                found.append(child)
    return found


def test_the_model_loads_in_the_worker_started_first(tiny_artifact: Path, tmp_path: Path) -> None:
    worker = start_first_worker({})
    assert worker is not None and worker.preimport_torch
    settings = service_settings(tiny_artifact, tmp_path, inference_workers=1, warmup=False)
    adopted = first_worker_for(settings, worker)
    assert adopted is worker
    loaded = Preload(settings, tiny_artifact, first_worker=adopted).loaded.result(timeout=120)
    try:
        # One inference worker asked for, and it is the one started first: no second process.
        assert [process.pid for process in _workers()] == [worker.process.pid]
        scores = loaded.scorer.predict_proba(["see you at the standup", "i will hurt you"])
        assert scores.shape == (2, len(loaded.scorer.spec.labels))
    finally:
        loaded.scorer.close()
    assert worker.process.wait(timeout=10) == 0


def test_flags_and_variables_that_turn_inference_processes_off_start_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEXTGUARD_INFERENCE_PROCESSES", raising=False)
    monkeypatch.delenv("TEXTGUARD_BACKEND", raising=False)
    assert start_first_worker({"inference_processes": False}) is None
    monkeypatch.setenv("TEXTGUARD_INFERENCE_PROCESSES", "false")
    assert start_first_worker({}) is None
    # A flag wins over the variable, as in the settings.
    worker = start_first_worker({"inference_processes": True, "backend": "onnx"})
    assert worker is not None and not worker.preimport_torch  # ONNX Runtime: no torch import ahead
    first_worker_for(None, worker)
    assert _workers() == []


def test_a_worker_the_settings_do_not_use_is_killed(
    tiny_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEXTGUARD_BACKEND", raising=False)
    for settings in (
        service_settings(tiny_artifact, tmp_path, backend="onnx"),  # started to import torch for nothing
        service_settings(tiny_artifact, tmp_path, inference_processes=False),
    ):
        worker = start_first_worker({})
        assert worker is not None
        assert first_worker_for(settings, worker) is None
        assert worker.process.poll() is not None  # killed and reaped, not left importing torch
    assert _workers() == []


def test_serve_that_fails_before_loading_leaves_no_worker(tiny_artifact: Path, tmp_path: Path) -> None:
    # In this process (the worker is a child of it); `textguard.cli.main` turns the error into one line.
    runner = CliRunner()
    invalid = runner.invoke(app, ["serve", "--model", str(tiny_artifact), "--batch-max-size", "0"])
    assert isinstance(invalid.exception, ConfigError) and "batch_max_size" in str(invalid.exception)
    assert _workers() == []
    missing = runner.invoke(app, ["serve", "--model", str(tmp_path / "no-such-model")])
    assert isinstance(missing.exception, ConfigError)
    assert "is not an artefact directory" in str(missing.exception)
    assert _workers() == []
