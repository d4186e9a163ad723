"""Contract tests for the HTTP API (TestClient, in process, the tiny model): every endpoint and every error
class answers with the documented status, error type and field path, and never with a 500."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr

from textguard.labels import LABELS
from textguard.policy import PolicySet
from textguard.scorer import Scorer
from textguard.service.app import create_app
from textguard.service.batcher import MicroBatcher, _Job
from textguard.service.errors import Overloaded
from textguard.service.logging import JsonFormatter
from textguard.service.model_manager import LoadedModel
from textguard.service.openai_moderation import CATEGORY_SOURCES
from textguard.service.security import api_key_digest
from textguard.service.settings import SECRET_FIELDS, ServiceSettings

# A marker that must never show up in logs: stands in for a message's text.
CANARY = "zebra-canary-7731"
OPENAI_CATEGORIES = {
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
    "violence/graphic",
}  # fmt: skip


@pytest.fixture(scope="module")
def scorer(tiny_artifact: Path) -> Scorer:
    return Scorer.from_artifact(tiny_artifact, max_batch_size=8)


@pytest.fixture
def settings_for(tiny_artifact: Path, tmp_path: Path) -> Callable[..., ServiceSettings]:
    def build(**overrides: Any) -> ServiceSettings:
        values: dict[str, Any] = {
            "model": str(tiny_artifact),
            "audit_url": f"sqlite:///{tmp_path / 'audit.db'}",
            "audit_hash_key": SecretStr("test-key"),
            "model_poll_seconds": 0,
        }
        values.update(overrides)
        return ServiceSettings(**values)

    return build


@pytest.fixture
def serve(scorer: Scorer, settings_for: Callable[..., ServiceSettings]) -> Callable[..., Any]:
    @contextmanager
    def run(**overrides: Any) -> Iterator[TestClient]:
        with TestClient(create_app(settings_for(**overrides), scorer=scorer)) as client:
            yield client

    return run


@pytest.fixture
def client(serve: Callable[..., Any]) -> Iterator[TestClient]:
    with serve() as test_client:
        yield test_client


def _messages(*texts: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"id": f"m{i}", "text": text} for i, text in enumerate(texts)], **extra}


def _assert_error(response: Any, status: int, kind: str, field: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == kind
    assert body["error"]["field"] == field
    assert body["error"]["message"]
    return dict(body["error"])


# -- /v1/score --------------------------------------------------------------------------------------


def test_score_answers_each_message_in_order_with_the_policy_decision(
    client: TestClient, scorer: Scorer
) -> None:
    texts = ["can you share your screen please", "merci à tous", "see you tomorrow at the standup"]
    body = _messages(*texts)
    body["messages"][1]["language"] = "fr"
    response = client.post("/v1/score", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["policy"] == "default"
    assert payload["model"]["name"] == "textguard"
    assert payload["model"]["version"].startswith("local-")
    assert [result["id"] for result in payload["results"]] == ["m0", "m1", "m2"]
    default = PolicySet.load("configs/policies/default.yaml").get("default")
    thresholds = scorer.spec.thresholds
    expected = scorer.predict_proba(texts)
    for row, result in zip(expected, payload["results"], strict=True):
        assert list(result["scores"]) == list(LABELS)
        np.testing.assert_allclose([result["scores"][label] for label in LABELS], row, atol=1e-5)
        decision = default.decide(result["scores"], thresholds)
        assert (result["labels"], result["action"]) == (decision.labels, decision.action)
    assert payload["results"][1]["language"] == "fr"
    assert payload["results"][0]["language"] == "en"


def test_named_policy_changes_the_action(serve: Callable[..., Any], tmp_path: Path) -> None:
    never = {label: {"review": 1.0, "block": None} for label in LABELS}
    always = {label: {"review": 0.0, "block": 0.0} for label in LABELS}
    path = tmp_path / "policies.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "default": "never",
                "policies": {
                    "never": {"thresholds": never, "allow_laxer_than_model": True},
                    "always": {"thresholds": always},
                },
            }
        )
    )
    with serve(policy=path) as client:
        allowed = client.post("/v1/score", json=_messages("hello")).json()["results"][0]
        blocked = client.post("/v1/score", json=_messages("hello", policy="always")).json()["results"][0]
    assert (allowed["action"], allowed["labels"]) == ("allow", [])
    assert (blocked["action"], blocked["labels"]) == ("block", list(LABELS))


def test_decisions_are_audited_before_the_answer_without_text(client: TestClient, tmp_path: Path) -> None:
    body = _messages(f"{CANARY} one", f"{CANARY} two")
    body["messages"][0]["meeting_id"] = "meeting-1"
    response = client.post("/v1/score", json=body)
    assert response.status_code == 200
    with sqlite3.connect(tmp_path / "audit.db") as db:
        rows = db.execute(
            "SELECT text, message_hash, meeting_hash, action, policy, model_version FROM audit_decisions"
        ).fetchall()
    assert len(rows) == 2
    version = response.json()["model"]["version"]
    for text, message_hash, _meeting_hash, action, policy, model_version in rows:
        assert text is None
        assert message_hash and len(message_hash) == 64
        assert (policy, model_version) == ("default", version)
        assert action in {"allow", "review", "block"}
    assert sum(row[2] is not None for row in rows) == 1


def test_nul_bytes_and_empty_text_are_scored(client: TestClient) -> None:
    response = client.post("/v1/score", json=_messages("a\u0000b", ""))
    assert response.status_code == 200
    assert [result["language"] for result in response.json()["results"]] == ["und", "und"]


# -- errors: one body, one status per kind, the field named ---------------------------------------------


def _one(**fields: Any) -> bytes:
    """A one-message request as JSON bytes; ensure_ascii keeps lone surrogates as \\ud800 escapes."""
    return json.dumps({"messages": [{"id": "a", "text": "x", **fields}]}, ensure_ascii=True).encode()


@pytest.mark.parametrize(
    ("content", "status", "kind", "field"),
    [
        (b'{"messages": [', 400, "bad_request", None),
        (b'{"messages": [{"id": "a", "text": "caf\xe9"}]}', 400, "bad_request", None),
        (_one(text="\ud800 lone"), 422, "validation_error", "messages.0.text"),
        (b"[]", 422, "validation_error", "body"),
        (b"", 422, "validation_error", "body"),
        (b'{"messages": "hello"}', 422, "validation_error", "messages"),
        (b'{"messages": []}', 422, "validation_error", "messages"),
        (_one(text=5), 422, "validation_error", "messages.0.text"),
        (b'{"messages": [{"text": "x"}]}', 422, "validation_error", "messages.0.id"),
        (_one(id="a\u0000"), 422, "validation_error", "messages.0.id"),
        (_one(colour=1), 422, "validation_error", "messages.0.colour"),
        (_one(source="email"), 422, "validation_error", "messages.0.source"),
        (_one(language="not a tag"), 422, "validation_error", "messages.0.language"),
        (_one(speaker_id=""), 422, "validation_error", "messages.0.speaker_id"),
        (
            b'{"messages": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}',
            422,
            "validation_error",
            "messages.1.id",
        ),
        (b'{"messages": [{"id": "a", "text": "x"}], "policy": "nope"}', 422, "validation_error", "policy"),
    ],
)
def test_malformed_requests_name_the_problem(
    client: TestClient, content: bytes, status: int, kind: str, field: str | None
) -> None:
    response = client.post("/v1/score", content=content, headers={"content-type": "application/json"})
    _assert_error(response, status, kind, field)


_UTF8_BODY = json.dumps(_messages("café"), ensure_ascii=False)


@pytest.mark.parametrize(
    ("content", "content_type", "named"),
    [
        (_UTF8_BODY.encode("utf-16"), "application/json", "UTF-16"),  # with a byte-order mark
        (_UTF8_BODY.encode("utf-16-le"), "application/json", "UTF-16-LE"),
        (_UTF8_BODY.encode("utf-16-be"), "application/json; charset=utf-16", "UTF-16-BE"),
        (_UTF8_BODY.encode("utf-32"), "application/json", "UTF-32"),
        (_UTF8_BODY.encode("latin-1"), "application/json; charset=latin-1", "not valid UTF-8"),
    ],
)
def test_a_body_that_is_not_utf8_is_refused_naming_its_encoding(
    client: TestClient, content: bytes, content_type: str, named: str
) -> None:
    for path in ("/v1/score", "/v1/moderations"):
        response = client.post(path, content=content, headers={"content-type": content_type})
        error = _assert_error(response, 400, "bad_request", None)
        assert named in error["message"] and "UTF-8" in error["message"]


def test_utf8_with_a_byte_order_mark_or_a_utf8_charset_is_accepted(client: TestClient) -> None:
    body = _UTF8_BODY.encode("utf-8-sig")
    for content_type in ("application/json", "application/json; charset=UTF-8"):
        assert (
            client.post("/v1/score", content=body, headers={"content-type": content_type}).status_code == 200
        )


@pytest.mark.parametrize(
    ("content", "key"),
    [
        (b'{"messages": [{"id": "a", "text": "have a nice day", "text": "<threat>"}]}', "text"),
        (b'{"messages": [{"id": "a", "text": "x"}], "messages": [{"id": "b", "text": "y"}]}', "messages"),
        (b'{"messages": [{"id": "a", "text": "x"}], "policy": "lenient", "policy": "strict"}', "policy"),
    ],
)
def test_duplicate_json_keys_are_refused_naming_the_key(client: TestClient, content: bytes, key: str) -> None:
    response = client.post("/v1/score", content=content, headers={"content-type": "application/json"})
    error = _assert_error(response, 400, "bad_request", None)
    assert f'duplicate key "{key}"' in error["message"]
    moderation = b'{"input": "have a nice day", "input": "<threat>"}'
    response = client.post(
        "/v1/moderations", content=moderation, headers={"content-type": "application/json"}
    )
    assert 'duplicate key "input"' in _assert_error(response, 400, "bad_request", None)["message"]


def test_limits_name_the_offending_field(serve: Callable[..., Any]) -> None:
    with serve(max_messages=3, max_text_chars=20) as client:
        error = _assert_error(
            client.post("/v1/score", json=_messages(*"abcd")), 422, "validation_error", "messages"
        )
        assert "at most 3" in error["message"]
        response = client.post("/v1/score", json=_messages("short", "x" * 21))
        error = _assert_error(response, 422, "validation_error", "messages.1.text")
        assert "limit is 20" in error["message"]
        response = client.post("/v1/moderations", json={"input": ["ok", "y" * 21]})
        _assert_error(response, 422, "validation_error", "input.1")


def test_body_size_is_enforced_from_the_header_and_while_streaming(serve: Callable[..., Any]) -> None:
    big = json.dumps(_messages("x" * 3000)).encode()
    with serve(max_body_bytes=2048) as client:
        response = client.post("/v1/score", content=big, headers={"content-type": "application/json"})
        _assert_error(response, 413, "payload_too_large", None)

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
            yield from (big[i : i + 512] for i in range(0, len(big), 512))

        response = client.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
        _assert_error(response, 413, "payload_too_large", None)
        assert client.post("/v1/score", json=_messages("fits")).status_code == 200


def test_a_body_that_is_not_declared_json_is_415(client: TestClient) -> None:
    response = client.post(
        "/v1/score", content=json.dumps(_messages("x")), headers={"content-type": "text/plain"}
    )
    error = _assert_error(response, 415, "unsupported_media_type", None)
    assert "application/json" in error["message"]


def test_unknown_routes_and_methods(client: TestClient) -> None:
    _assert_error(client.get("/v2/score"), 404, "not_found", None)
    response = client.get("/v1/score")
    _assert_error(response, 405, "method_not_allowed", None)
    assert "POST" in response.headers["allow"]


# -- /v1/moderations -----------------------------------------------------------------------------------


def test_moderations_answers_in_openai_shape(client: TestClient) -> None:
    response = client.post(
        "/v1/moderations", json={"input": ["hello there", "good morning"], "model": "textguard"}
    )
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["id"].startswith("modr-")
    assert payload["model"].startswith("textguard:local-")
    assert len(payload["results"]) == 2
    for result in payload["results"]:
        assert set(result["categories"]) == OPENAI_CATEGORIES
        assert set(result["category_scores"]) == OPENAI_CATEGORIES
        assert set(result["category_applied_input_types"]) == OPENAI_CATEGORIES
        assert result["flagged"] == any(result["categories"].values())
        for category, (_combine, sources) in CATEGORY_SOURCES.items():
            assert result["category_applied_input_types"][category] == (["text"] if sources else [])
            if not sources:
                assert (result["categories"][category], result["category_scores"][category]) == (False, 0.0)


def test_moderation_categories_follow_the_label_mapping(serve: Callable[..., Any], tmp_path: Path) -> None:
    # Only violent_threat is reviewed: violence and harassment(/threatening) flag, while
    # hate/threatening, a conjunction with hate, does not.
    thresholds = {label: {"review": 1.0, "block": None} for label in LABELS}
    thresholds["violent_threat"] = {"review": 0.0, "block": None}
    path = tmp_path / "p.yaml"
    policy = {"thresholds": thresholds, "allow_laxer_than_model": True}
    path.write_text(yaml.safe_dump({"default": "p", "policies": {"p": policy}}))
    with serve(policy=path) as client:
        scores = client.post("/v1/score", json=_messages("hello")).json()["results"][0]["scores"]
        result = client.post("/v1/moderations", json={"input": "hello"}).json()["results"][0]
    assert result["flagged"] is True
    flagged = {category for category, value in result["categories"].items() if value}
    assert flagged == {"violence", "harassment", "harassment/threatening"}
    assert result["category_scores"]["hate/threatening"] == pytest.approx(
        min(scores["violent_threat"], scores["hate_dehumanization"])
    )
    assert result["category_scores"]["violence"] == pytest.approx(
        max(scores["violent_threat"], scores["extremist_glorification"])
    )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (
            {"input": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}]},
            422,
            "input.1",
        ),
        ({"input": [{"type": "audio"}]}, 422, "input.0"),
        ({"input": 5}, 422, "input"),
        ({"input": []}, 422, "input"),
        ({"input": "hi", "model": "gpt-4o"}, 422, "model"),
        ({"input": "hi", "policy": "nope"}, 422, "policy"),
        ({"input": "\ud800"}, 422, "input"),
        ({"inputs": "hi"}, 422, "input"),
    ],
)
def test_moderation_errors_name_the_field(
    client: TestClient, body: dict[str, Any], status: int, field: str
) -> None:
    content = json.dumps(body, ensure_ascii=True).encode()
    response = client.post("/v1/moderations", content=content, headers={"content-type": "application/json"})
    _assert_error(response, status, "validation_error", field)


def test_moderation_accepts_text_parts_and_openai_model_names(client: TestClient) -> None:
    body = {
        "input": [{"type": "text", "text": "hello"}],
        "model": "omni-moderation-latest",
        "policy": "strict",
    }
    response = client.post("/v1/moderations", json=body)
    assert response.status_code == 200, response.text


# -- ops ---------------------------------------------------------------------------------------------


def test_health_ready_model_and_metrics(client: TestClient, scorer: Scorer) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    described = client.get("/v1/model").json()
    assert described["labels"] == list(LABELS)
    assert described["thresholds"] == scorer.spec.thresholds
    assert described["temperature"] == scorer.spec.temperature
    assert described["version"] == ready["model"]["version"]
    assert set(described["policies"]["policies"]) >= {"default", "strict"}
    assert client.post("/v1/score", json=_messages("a", "b", policy="strict")).status_code == 200
    text = client.get("/metrics").text
    assert 'textguard_http_requests_total{method="POST",route="/v1/score",status="200"} 1.0' in text
    assert "textguard_messages_total{action=" in text and 'policy="strict"' in text
    assert "textguard_batch_size_count" in text
    assert "textguard_queue_depth 0.0" in text
    assert 'textguard_model_info{alias="",name="textguard",version="local-' in text


def test_readiness_follows_the_model_load(
    tiny_artifact: Path, tmp_path: Path, settings_for: Callable[..., ServiceSettings]
) -> None:
    # The model directory appears only after start-up: /readyz says why it is not ready, then turns 200.
    target = tmp_path / "later"
    settings = settings_for(model=str(target), model_poll_seconds=0.2, warmup=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        error = _assert_error(client.get("/readyz"), 503, "not_ready", None)
        assert "not found" in error["message"] or "loading" in error["message"]
        _assert_error(client.post("/v1/score", json=_messages("hi")), 503, "not_ready", None)
        assert client.get("/readyz").headers["retry-after"] == "2"
        shutil.copytree(tiny_artifact, target)
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "model never became ready"
            time.sleep(0.1)
        assert client.post("/v1/score", json=_messages("hi")).status_code == 200


def test_readiness_fails_while_the_audit_store_is_locked(serve: Callable[..., Any], tmp_path: Path) -> None:
    with serve() as client:
        assert client.get("/readyz").status_code == 200
        holder = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            time.sleep(1.1)  # past the reuse period of the last probe's answer
            error = _assert_error(client.get("/readyz"), 503, "audit_unavailable", None)
            assert "locked" in error["message"]
            assert client.get("/readyz").headers["retry-after"] == "5"
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        time.sleep(1.1)
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/score", json=_messages("hi")).status_code == 200


# -- security ------------------------------------------------------------------------------------------


def test_api_keys_are_required_when_configured(serve: Callable[..., Any], tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# ops team\n{api_key_digest('tg_good')}\n")
    with serve(api_keys_file=keys) as client:
        response = client.post("/v1/score", json=_messages("x"))
        _assert_error(response, 401, "unauthorized", None)
        assert response.headers["www-authenticate"].startswith("Bearer")
        bad = client.post("/v1/score", json=_messages("x"), headers={"Authorization": "Bearer tg_bad"})
        _assert_error(bad, 401, "unauthorized", None)
        ok = client.post("/v1/score", json=_messages("x"), headers={"Authorization": "Bearer tg_good"})
        assert ok.status_code == 200
        assert client.get("/v1/model").status_code == 401
        # Probes and the scrape endpoint stay open.
        assert [client.get(path).status_code for path in ("/healthz", "/readyz", "/metrics")] == [
            200,
            200,
            200,
        ]


def test_caption_websocket_is_behind_the_same_key_check(serve: Callable[..., Any]) -> None:
    from starlette.testclient import WebSocketDenialResponse

    segment = {"segment_id": "s1", "speaker_id": "a", "text": "hello", "start": 0, "end": 1, "final": True}
    with serve(api_key_hashes=SecretStr(api_key_digest("tg_good"))) as client:
        with (
            pytest.raises(WebSocketDenialResponse) as denied,
            client.websocket_connect("/v1/meetings/m1/captions"),
        ):
            pass
        assert denied.value.status_code == 401
        headers = {"Authorization": "Bearer tg_good"}
        with client.websocket_connect("/v1/meetings/m1/captions", headers=headers) as socket:
            socket.send_json(segment)
            assert socket.receive_json()["segment_id"] == "s1"


def test_rate_limit_answers_429_with_retry_after(serve: Callable[..., Any]) -> None:
    with serve(rate_limit_per_minute=2) as client:
        statuses = [client.post("/v1/score", json=_messages("x")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        response = client.post("/v1/score", json=_messages("x"))
        _assert_error(response, 429, "rate_limited", None)
        # A moving window of one minute: the next message fits once the first one is a minute old.
        assert 50 <= int(response.headers["retry-after"]) <= 60


# -- the micro-batcher -----------------------------------------------------------------------------------


def _score_each_then_stop(batcher: MicroBatcher, texts: list[str]) -> np.ndarray:
    """Start `batcher`, send every text as a request of its own, all at once, and stop it: the
    probabilities in text order."""
    batcher.start()
    try:

        async def scenario() -> list[np.ndarray]:
            return list(await asyncio.gather(*(batcher.score([text]) for text in texts)))

        return np.vstack(asyncio.run(scenario()))
    finally:
        batcher.stop()


def test_batcher_sheds_load_and_keeps_input_order(scorer: Scorer) -> None:
    model = LoadedModel(scorer, "textguard", "v", None)
    batcher = MicroBatcher(lambda: model, max_batch_size=2, max_queue=4)
    batcher.start()
    try:
        texts = ["a much longer message than the others here", "hi", "hello there", "ok"]

        async def scenario() -> tuple[list[np.ndarray], Overloaded]:
            results = await asyncio.gather(*(batcher.score([text]) for text in texts))
            with pytest.raises(Overloaded, match="overloaded") as caught:
                await batcher.score(["x"] * 5)
            return list(results), caught.value

        results, overloaded = asyncio.run(scenario())
    finally:
        batcher.stop()
    np.testing.assert_allclose(np.vstack(results), scorer.predict_proba(texts), atol=1e-5)
    assert overloaded.status == 503
    assert int(overloaded.headers()["Retry-After"]) >= 1
    assert not batcher.alive


def test_two_workers_split_a_burst_and_answer_like_one(scorer: Scorer) -> None:
    model = LoadedModel(scorer, "textguard", "v", None)
    seen: list[str] = []
    batcher = MicroBatcher(
        lambda: model,
        max_batch_size=4,
        workers=2,
        on_worker_start=lambda: seen.append(threading.current_thread().name),
    )
    texts = [f"message {i} " + "word " * (i % 7) for i in range(40)]
    results = _score_each_then_stop(batcher, texts)
    assert sorted(seen) == ["textguard-inference-0", "textguard-inference-1"]
    np.testing.assert_allclose(results, scorer.predict_proba(texts), atol=1e-5)
    assert not batcher.alive and batcher.queue_depth == 0


def test_an_idle_worker_gathers_only_while_another_is_busy(scorer: Scorer) -> None:
    """With nobody else busy a request is taken at once; while another worker runs a forward pass, the
    idle one waits up to gather_seconds (or a full batch) so it does not run a pass per request."""
    batcher = MicroBatcher(lambda: LoadedModel(scorer, "textguard", "v", None), max_batch_size=4, workers=2)
    batcher.gather_seconds = 0.05
    loop = asyncio.new_event_loop()
    try:
        job = _Job(["hello"], loop.create_future(), loop, enqueued_at=100.0)
        batcher._jobs.append(job)
        batcher._queued_texts = 1
        assert batcher._gather_wait(now=100.0) == 0.0  # nobody else busy
        batcher._inflight[1] = (8, 99.9)
        assert batcher._gather_wait(now=100.01) == pytest.approx(0.04)
        assert batcher._gather_wait(now=100.06) < 0  # waited long enough
        batcher._queued_texts = 4  # a full batch is there
        assert batcher._gather_wait(now=100.01) == 0.0
        # Taking a share: with another idle worker, about half of the queued texts (whole jobs).
        batcher._jobs.clear()
        for index in range(4):
            batcher._jobs.append(_Job([f"t{index}"] * 2, loop.create_future(), loop))
        batcher._queued_texts, batcher._idle = 8, 1
        taken = batcher._take_share()
        assert sum(len(job.texts) for job in taken) == 4 and batcher._queued_texts == 4
    finally:
        loop.close()


def test_a_drain_takes_at_most_drain_max_texts_in_whole_requests(scorer: Scorer) -> None:
    """A worker alone takes the queue only up to `drain_max` texts, whole requests, at least one; the
    gather wait counts a full drain as enough; 0 takes everything."""
    batcher = MicroBatcher(
        lambda: LoadedModel(scorer, "textguard", "v", None), max_batch_size=32, workers=2, drain_max=8
    )
    loop = asyncio.new_event_loop()
    try:
        sizes = [3, 3, 3, 1, 20]
        for index, size in enumerate(sizes):
            batcher._jobs.append(_Job([f"t{index}"] * size, loop.create_future(), loop))
        batcher._queued_texts = sum(sizes)
        # 3 + 3 fit; the next 3 would make 9.
        assert [len(job.texts) for job in batcher._take_share()] == [3, 3]
        assert [len(job.texts) for job in batcher._take_share()] == [3, 1]
        assert [len(job.texts) for job in batcher._take_share()] == [20]  # larger than the cap: whole
        assert batcher._queued_texts == 0 and not batcher._jobs
        # While the other worker is busy, 8 queued texts are a full drain: no gathering wait.
        batcher.gather_seconds = 0.05
        batcher._inflight[1] = (8, 99.9)
        for index in range(8):
            batcher._jobs.append(_Job([f"g{index}"], loop.create_future(), loop, enqueued_at=100.0))
        batcher._queued_texts = 8
        assert batcher._gather_wait(now=100.01) == 0.0
        batcher.drain_max = 0  # no cap: everything queued, and a full forward batch to gather
        assert batcher._gather_wait(now=100.01) == pytest.approx(0.04)
        assert len(batcher._take_share()) == 8
    finally:
        loop.close()


def test_the_scoring_rate_is_measured_from_full_capped_drains(scorer: Scorer) -> None:
    """Under a drain cap smaller than a forward batch, a drain of `drain_max` texts is full: it measures
    the rate (else single-message traffic would never start admission by deadline here)."""
    batcher = MicroBatcher(
        lambda: LoadedModel(scorer, "textguard", "v", None), max_batch_size=32, workers=2, drain_max=8
    )
    batcher._measure(7, 0.01)  # not full: a forward's latency, not throughput
    assert not batcher._rate_measured
    batcher._measure(8, 0.02)
    assert batcher._rate_measured and batcher.texts_per_second == pytest.approx(400.0)
    uncapped = MicroBatcher(lambda: LoadedModel(scorer, "textguard", "v", None), max_batch_size=32)
    uncapped._measure(8, 0.02)
    assert not uncapped._rate_measured


def test_capped_drains_answer_like_one_forward_pass(scorer: Scorer) -> None:
    model = LoadedModel(scorer, "textguard", "v", None)
    batcher = MicroBatcher(lambda: model, max_batch_size=4, workers=2, drain_max=3)
    texts = [f"message {i} " + "word " * (i % 5) for i in range(25)]
    np.testing.assert_allclose(_score_each_then_stop(batcher, texts), scorer.predict_proba(texts), atol=1e-5)


def test_a_worker_finishing_its_drain_clears_only_its_own_forward_pass(scorer: Scorer) -> None:
    """The time-ahead estimate counts each worker's forward pass until that worker's last answer."""
    batcher = MicroBatcher(lambda: LoadedModel(scorer, "textguard", "v", None), max_batch_size=4, workers=2)
    loop = asyncio.new_event_loop()
    try:
        jobs = [_Job([f"text {index}"], loop.create_future(), loop) for index in range(3)]
        batcher._inflight = {0: (50, time.perf_counter()), 1: (3, time.perf_counter())}
        batcher._process(jobs, worker=1)
        assert list(batcher._inflight) == [0]  # worker 0 is still busy; worker 1 is done
    finally:
        loop.close()


# -- logs and settings -----------------------------------------------------------------------------------


def test_logs_never_contain_message_text(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client.post("/v1/score", json=_messages(f"{CANARY} hello"))
    rejected = json.dumps(_messages(f"{CANARY}\ud800"), ensure_ascii=True).encode()
    client.post("/v1/score", content=rejected, headers={"content-type": "application/json"})
    client.post("/v1/moderations", json={"input": [f"{CANARY}", {"type": "image_url"}]})
    client.post("/v1/score", content=f'{{"messages": [{{"id": "{CANARY}", "text": 1}}'.encode())
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    access = [json.loads(line) for line in lines if '"textguard.access"' in line]
    assert [entry["status"] for entry in access] == [200, 422, 422, 415]
    assert access[0]["messages"] == 1 and access[0]["route"] == "/v1/score"
    assert not [line for line in lines if CANARY in line]


def test_settings_come_from_env_and_secret_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text("s3cret-audit-key\n")
    monkeypatch.setenv("TEXTGUARD_AUDIT_HASH_KEY_FILE", str(key_file))
    monkeypatch.setenv("TEXTGUARD_API_KEY_HASHES", f"{api_key_digest('k1')}, {api_key_digest('k2')}")
    monkeypatch.setenv("TEXTGUARD_MAX_MESSAGES", "7")
    settings = ServiceSettings(port=9000)
    assert (settings.max_messages, settings.port) == (7, 9000)
    assert settings.audit_hash_key is not None
    assert settings.audit_hash_key.get_secret_value() == "s3cret-audit-key"
    assert not settings.audit_hash_key_generated
    assert settings.api_key_digests == {api_key_digest("k1"), api_key_digest("k2")}
    assert "s3cret" not in repr(settings) and "s3cret" not in json.dumps(settings.redacted())
    # Worker processes rebuild the same settings from the variables `textguard serve --workers` exports.
    monkeypatch.delenv("TEXTGUARD_AUDIT_HASH_KEY_FILE")
    rebuilt = ServiceSettings.model_validate(
        {name.removeprefix("TEXTGUARD_").lower(): value for name, value in settings.to_env().items()}
    )
    assert rebuilt == settings


def test_settings_refuse_plaintext_keys_without_echoing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTGUARD_API_KEY_HASHES", "tg_plaintext_secret")
    with pytest.raises(ValueError, match="api_key_hashes item 1 is not a sha256 hex digest") as caught:
        ServiceSettings()
    assert "tg_plaintext_secret" not in str(caught.value).split("input_value")[0]


def test_generated_audit_key_is_flagged_and_audit_url_password_redacted() -> None:
    settings = ServiceSettings(audit_url="postgresql+psycopg://svc:hunter2@db/audit")
    assert settings.audit_hash_key_generated
    assert "hunter2" not in json.dumps(settings.redacted())


def test_every_setting_is_a_serve_flag() -> None:
    import typer.main

    from textguard.cli import app

    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    flags = {param.name for param in command.params}
    for name in ServiceSettings.model_fields:
        expected = f"{name.removesuffix('_hashes')}s_file" if name == "api_key_hashes" else name
        expected = f"{name}_file" if name == "audit_hash_key" else expected
        assert expected in flags, f"ServiceSettings.{name} has no `textguard serve` flag"
    assert not set(SECRET_FIELDS) & flags
