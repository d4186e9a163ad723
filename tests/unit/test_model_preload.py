"""The service adopts a model load already under way (`textguard serve` starts it before building the
app): it serves that load instead of loading again, and a failed one is reported and retried."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from textguard.errors import ModelLoadError
from textguard.scorer import Scorer
from textguard.service.app import create_app
from textguard.service.model_manager import LoadedModel, ModelManager
from textguard.service.settings import ServiceSettings


def _settings(model: Path, tmp_path: Path, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "model": str(model),
        "audit_url": f"sqlite:///{tmp_path / 'audit.db'}",
        "audit_hash_key": SecretStr("test-key"),
        "model_poll_seconds": 0,
        "warmup": False,
        **overrides,
    }
    return ServiceSettings(**values)


def _ready_within(client: TestClient, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return True
        time.sleep(0.02)
    return False


def test_a_preloaded_model_is_served_without_loading_again(
    tiny_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tiny_artifact, tmp_path)
    loaded = ModelManager(settings).load_now()
    preload: Future[LoadedModel] = Future()
    preload.set_result(loaded)

    def no_second_load(*_args: Any, **_kwargs: Any) -> Scorer:
        raise AssertionError("the service loaded the model again")

    monkeypatch.setattr(Scorer, "from_artifact", no_second_load)
    with TestClient(create_app(settings, preload=preload)) as client:
        assert _ready_within(client, 10)
        scored = client.post("/v1/score", json={"messages": [{"id": "1", "text": "see you at ten"}]})
        assert scored.status_code == 200
        assert client.get("/v1/model").json()["version"] == loaded.version


def test_a_failed_preload_is_reported_then_retried(tiny_artifact: Path, tmp_path: Path) -> None:
    preload: Future[LoadedModel] = Future()
    preload.set_exception(ModelLoadError("the disk was busy"))
    # The retry waits max(model_poll_seconds, 1) s when polling is on (5 s when off).
    settings = _settings(tiny_artifact, tmp_path, model_poll_seconds=0.05)
    with TestClient(create_app(settings, preload=preload)) as client:
        first = client.get("/readyz")
        assert first.status_code == 503
        assert _ready_within(client, 20), "the load was not retried after the preload failed"
    message = first.json()["error"]["message"]
    assert "the disk was busy" in message or "loading" in message


def _resolve_later(preload: Future[LoadedModel], loaded: LoadedModel, seconds: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), preload.set_result(loaded)), daemon=True)
    thread.start()
    return thread


def test_one_of_several_processes_starts_accepting_only_once_its_model_is_loaded(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    # uvicorn listens only after the app's start-up: with `workers` > 1 a loading process must stay out
    # of the shared socket's rotation, or it answers 503 beside a sibling that is ready.
    settings = _settings(tiny_artifact, tmp_path, workers=2)
    loaded = ModelManager(settings).load_now()
    preload: Future[LoadedModel] = Future()
    started = time.monotonic()
    _resolve_later(preload, loaded, 0.5)
    with TestClient(create_app(settings, preload=preload)) as client:
        assert time.monotonic() - started >= 0.5, "start-up finished before the model was loaded"
        assert client.get("/readyz").status_code == 200


def test_a_single_process_answers_while_its_model_loads(tiny_artifact: Path, tmp_path: Path) -> None:
    settings = _settings(tiny_artifact, tmp_path)
    loaded = ModelManager(settings).load_now()
    preload: Future[LoadedModel] = Future()
    with TestClient(create_app(settings, preload=preload)) as client:
        first = client.get("/readyz")
        preload.set_result(loaded)
        assert first.status_code == 503 and "loading" in first.json()["error"]["message"]
        assert _ready_within(client, 10)


def test_a_process_whose_first_load_fails_still_starts_and_reports_it(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    preload: Future[LoadedModel] = Future()
    preload.set_exception(ModelLoadError("the disk was busy"))
    with TestClient(create_app(_settings(tiny_artifact, tmp_path, workers=2), preload=preload)) as client:
        refused = client.get("/readyz")
    assert refused.status_code == 503 and "the disk was busy" in refused.json()["error"]["message"]
