"""The service over real HTTP (uvicorn on 127.0.0.1): scoring, the OpenAI SDK, metrics, keys and limits,
load shedding, and parity with the library's Scorer."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serve_support import live_server, service_settings

from textguard.labels import LABELS
from textguard.scorer import Scorer
from textguard.service.app import create_app
from textguard.service.security import api_key_digest

API_KEY = "tg_integration_key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Varied lengths (the micro-batcher sorts and pads them differently from one library call) and scripts.
PARITY_TEXTS = [
    "ok",
    "can you share your screen please",
    "merci à tous pour la réunion",
    "wir sehen uns morgen",
    "the quarterly numbers look good but the slide deck needs another pass before friday " * 3,
    "",
    "¿alguien tiene el enlace?",
    "see you all next week",
    "a\u0000b",
    "😀 great talk",
    "x" * 300,
    "agenda: 1) intro 2) demo 3) questions",
]


@pytest.fixture(scope="module")
def server(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One loaded server for the module, with API keys on (its own model load: the real start-up path)."""
    tmp_path = tmp_path_factory.mktemp("serve")
    settings = service_settings(tiny_artifact, tmp_path, api_key_hashes=api_key_digest(API_KEY))
    with live_server(create_app(settings)) as base_url:
        yield base_url


async def _score_concurrently(base_url: str, texts: list[str]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/score", json={"messages": [{"id": "m", "text": text}]}) for text in texts)
        )
    assert [response.status_code for response in responses] == [200] * len(texts)
    return [response.json() for response in responses]


def test_scores_over_http_match_the_library_scorer(server: str, tiny_artifact: Path) -> None:
    expected = Scorer.from_artifact(tiny_artifact).predict_proba(PARITY_TEXTS)
    one_request = httpx.post(
        f"{server}/v1/score",
        json={"messages": [{"id": str(i), "text": text} for i, text in enumerate(PARITY_TEXTS)]},
        headers=AUTH,
        timeout=30,
    ).json()
    concurrent = asyncio.run(_score_concurrently(server, PARITY_TEXTS))
    batched = np.array([[result["scores"][label] for label in LABELS] for result in one_request["results"]])
    single = np.array(
        [[payload["results"][0]["scores"][label] for label in LABELS] for payload in concurrent]
    )
    # Same path, float32 logits: only the padding width of a batch may move the last bits.
    np.testing.assert_allclose(batched, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(single, expected, rtol=0, atol=1e-6)


def test_onnx_backend_matches_torch_over_http(tiny_artifact: Path, tmp_path: Path) -> None:
    from textguard.export import export_onnx

    artifact = tmp_path / "model"
    shutil.copytree(tiny_artifact, artifact)
    export_onnx(artifact, sample_texts=PARITY_TEXTS[:4], publish=False)
    expected = Scorer.from_artifact(artifact).predict_proba(PARITY_TEXTS)
    with live_server(create_app(service_settings(artifact, tmp_path, backend="onnx"))) as base_url:
        payloads = asyncio.run(_score_concurrently_open(base_url, PARITY_TEXTS))
        described = httpx.get(f"{base_url}/v1/model").json()
    assert described["backend"] == "onnx"
    served = np.array([[payload["results"][0]["scores"][label] for label in LABELS] for payload in payloads])
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-4)


async def _score_concurrently_open(base_url: str, texts: list[str]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/score", json={"messages": [{"id": "m", "text": text}]}) for text in texts)
        )
    return [response.json() for response in responses]


def test_openai_sdk_moderations_against_the_live_server(server: str) -> None:
    from openai import OpenAI
    from openai.types import ModerationCreateResponse

    client = OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0, timeout=30)
    response = client.moderations.create(
        input=["good morning everyone", "see you at noon"], model="textguard"
    )
    assert isinstance(response, ModerationCreateResponse)
    assert response.model.startswith("textguard:")
    assert len(response.results) == 2
    first = response.results[0]
    assert isinstance(first.flagged, bool)
    assert isinstance(first.categories.violence, bool)
    assert isinstance(first.categories.hate_threatening, bool)
    assert 0.0 <= first.category_scores.harassment_threatening <= 1.0
    assert first.category_applied_input_types.violence == ["text"]
    assert first.category_applied_input_types.sexual == []
    # The raw body passes the SDK's own pydantic validation (every required field present and typed).
    raw = client.moderations.with_raw_response.create(input="hello").http_response.json()
    ModerationCreateResponse.model_validate(raw)
    # A single string, a policy through extra_body, and the SDK's error for a bad key.
    strict = client.moderations.create(input="hello", extra_body={"policy": "strict"})
    assert len(strict.results) == 1
    import openai

    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).moderations.create(input="hello")


def test_metrics_count_requests_decisions_and_batches(server: str) -> None:
    httpx.post(f"{server}/v1/score", json={"messages": [{"id": "a", "text": "hello"}]}, headers=AUTH)
    text = httpx.get(f"{server}/metrics").text
    for name in (
        "textguard_http_requests_total",
        "textguard_http_request_duration_seconds_bucket",
        "textguard_batch_size_bucket",
        "textguard_queue_depth",
        "textguard_messages_total",
        "textguard_model_info",
    ):
        assert name in text, name
    assert 'route="/v1/score",status="200"' in text


def test_keys_are_checked_and_probes_stay_open(server: str) -> None:
    body = {"messages": [{"id": "a", "text": "hello"}]}
    assert httpx.post(f"{server}/v1/score", json=body).status_code == 401
    assert (
        httpx.post(f"{server}/v1/score", json=body, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    assert httpx.get(f"{server}/readyz").status_code == 200
    response = httpx.get(f"{server}/healthz", headers={"X-Request-ID": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123"


def test_rate_limit_over_http(tiny_artifact: Path, tmp_path: Path) -> None:
    scorer = Scorer.from_artifact(tiny_artifact)
    with live_server(
        create_app(service_settings(tiny_artifact, tmp_path, rate_limit_per_minute=3), scorer)
    ) as base_url:
        body = {"messages": [{"id": "a", "text": "hello"}]}
        statuses = [httpx.post(f"{base_url}/v1/score", json=body).status_code for _ in range(4)]
        limited = httpx.post(f"{base_url}/v1/score", json=body)
    assert statuses == [200, 200, 200, 429]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limited"


def test_overload_is_shed_with_503_and_retry_after(tiny_artifact: Path, tmp_path: Path) -> None:
    scorer = Scorer.from_artifact(tiny_artifact)
    settings = service_settings(tiny_artifact, tmp_path, max_queue=16, max_messages=16, batch_max_size=4)
    body = {"messages": [{"id": str(i), "text": f"message number {i} " * 8} for i in range(12)]}

    async def burst(base_url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            return list(await asyncio.gather(*(client.post("/v1/score", json=body) for _ in range(24))))

    with live_server(create_app(settings, scorer)) as base_url:
        responses = asyncio.run(burst(base_url))
        metrics = httpx.get(f"{base_url}/metrics").text
    statuses = sorted({response.status_code for response in responses})
    assert statuses == [200, 503], statuses
    shed = [response for response in responses if response.status_code == 503]
    assert all(response.json()["error"]["type"] == "overloaded" for response in shed)
    assert all(int(response.headers["retry-after"]) >= 1 for response in shed)
    assert f"textguard_overloaded_total {float(len(shed))}" in metrics


def test_graceful_shutdown_answers_requests_in_flight(tiny_artifact: Path, tmp_path: Path) -> None:
    import threading

    scorer = Scorer.from_artifact(tiny_artifact)
    body = {"messages": [{"id": str(i), "text": f"message {i} " * 20} for i in range(64)]}
    settings = service_settings(tiny_artifact, tmp_path, max_messages=64)
    statuses: list[int] = []

    async def in_flight(base_url: str) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            responses = await asyncio.gather(*(client.post("/v1/score", json=body) for _ in range(6)))
        statuses.extend(response.status_code for response in responses)

    with live_server(create_app(settings, scorer)) as base_url:
        sender = threading.Thread(target=asyncio.run, args=(in_flight(base_url),))
        sender.start()
        deadline = time.monotonic() + 30
        # Leave the context (= stop the server) once the first drain has started.
        while "textguard_batch_drain_texts_count 0.0" in httpx.get(f"{base_url}/metrics").text:
            assert time.monotonic() < deadline
            time.sleep(0.005)
    sender.join(timeout=60)
    assert statuses == [200] * 6


def test_audit_rows_match_the_answers(server: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    import sqlite3

    response = httpx.post(
        f"{server}/v1/score",
        json={"messages": [{"id": "audit-1", "text": "hello", "meeting_id": "meet-9"}], "policy": "strict"},
        headers=AUTH,
    ).json()
    databases = list(Path(tmp_path_factory.getbasetemp()).glob("serve*/audit.db"))
    assert databases
    started = time.monotonic()
    with sqlite3.connect(databases[0]) as db:
        query = "SELECT action, policy, scores FROM audit_decisions WHERE policy = ? ORDER BY created_at DESC"
        rows = db.execute(query, ("strict",)).fetchall()
    assert time.monotonic() - started < 5
    action, policy, scores = rows[0]
    assert (action, policy) == (response["results"][0]["action"], "strict")
    assert json.loads(scores) == response["results"][0]["scores"]
