"""Hot swap under traffic: a new model version replaces the served one with no failed request.

Two triggers: a local artefact directory whose spec changes (e.g. a re-mounted volume), and a registry
alias moved by `promote` (models:/textguard@champion, a real MLflow sqlite store).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import SecretStr
from serve_support import Traffic, live_server, wait_for

from textguard.artifact import refresh_checksums
from textguard.labels import LABELS
from textguard.scorer import Scorer
from textguard.service.app import create_app
from textguard.service.settings import ServiceSettings
from textguard.spec import load_spec

TEXT = "see you all at the standup tomorrow"


def _served_model(base_url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{base_url}/v1/model", timeout=10).json())


def _with_temperature(source: Path, target: Path, temperature: float) -> Path:
    from textguard.spec import save_spec

    shutil.copytree(source, target)
    save_spec(load_spec(target).model_copy(update={"temperature": temperature}), target)
    return target


def _assert_swapped_cleanly(results: list[tuple[int, str | None]], old: str, new: str) -> None:
    assert results, "no traffic was sent"
    failures = [result for result in results if result[0] != 200]
    assert not failures, f"requests failed during the swap: {failures[:3]}"
    versions = [version for _, version in results]
    assert old in versions and new in versions
    first_new = versions.index(new)
    assert set(versions[:first_new]) == {old} and set(versions[first_new:]) == {new}, "versions interleaved"


def test_local_artefact_change_is_swapped_in_without_failed_requests(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    artifact = tmp_path / "model"
    shutil.copytree(tiny_artifact, artifact)
    settings = ServiceSettings(
        model=str(artifact),
        audit_url=f"sqlite:///{tmp_path / 'audit.db'}",
        audit_hash_key=SecretStr("k"),
        model_poll_seconds=0.2,
    )
    with live_server(create_app(settings)) as base_url:
        before = _served_model(base_url)
        with Traffic(base_url, {"messages": [{"id": "m", "text": TEXT}]}) as traffic:
            wait_for(lambda: len(traffic.results) >= 5)
            spec = load_spec(artifact).model_copy(update={"temperature": 3.0})
            from textguard.spec import save_spec

            save_spec(spec, artifact)  # written to a temporary file, then renamed: atomic
            wait_for(lambda: _served_model(base_url)["temperature"] == 3.0)
            after = _served_model(base_url)
            wait_for(lambda: traffic.results[-1][1] == after["version"])
        scores = httpx.post(f"{base_url}/v1/score", json={"messages": [{"id": "m", "text": TEXT}]}).json()
    assert after["version"] != before["version"]
    _assert_swapped_cleanly(traffic.results, before["version"], after["version"])
    expected = Scorer.from_artifact(artifact).predict_proba([TEXT])[0]
    np.testing.assert_allclose(
        [scores["results"][0]["scores"][label] for label in LABELS], expected, atol=1e-6
    )


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("TEXTGUARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return uri


def test_promoting_a_version_hot_swaps_the_alias(
    tiny_artifact: Path, tmp_path: Path, mlflow_store: str
) -> None:
    from textguard.tracking import registry, training_run

    versions = []
    for name, temperature in (("v1", 1.0), ("v2", 2.5)):
        artifact = _with_temperature(tiny_artifact, tmp_path / name, temperature)
        refresh_checksums(artifact)
        with training_run("serve-hot-swap", mlflow_store, name, {}, {}) as run:
            registered = run.log_model(artifact)
        assert registered is not None
        versions.append(registered.version)
    registry.promote("textguard", "champion", version=versions[0], reason="baseline")

    settings = ServiceSettings(
        model="models:/textguard@champion",
        audit_url=f"sqlite:///{tmp_path / 'audit.db'}",
        audit_hash_key=SecretStr("k"),
        model_poll_seconds=1.0,
    )
    with live_server(create_app(settings)) as base_url:
        before = _served_model(base_url)
        assert (before["alias"], before["version"], before["temperature"]) == (
            "champion",
            str(versions[0]),
            1.0,
        )
        with Traffic(base_url, {"messages": [{"id": "m", "text": TEXT}]}) as traffic:
            wait_for(lambda: len(traffic.results) >= 5)
            registry.promote("textguard", "champion", version=versions[1], reason="better calibrated")
            wait_for(lambda: _served_model(base_url)["version"] == str(versions[1]))
            wait_for(lambda: traffic.results[-1][1] == str(versions[1]))
        after = _served_model(base_url)
        metrics = httpx.get(f"{base_url}/metrics").text
    assert after["temperature"] == 2.5
    _assert_swapped_cleanly(traffic.results, str(versions[0]), str(versions[1]))
    assert "textguard_model_swaps_total 1.0" in metrics
    assert f'textguard_model_info{{alias="champion",name="textguard",version="{versions[1]}"}} 1.0' in metrics
