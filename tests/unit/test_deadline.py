"""Admission by deadline (textguard.service.deadline, the micro-batcher): the header's bounds, a request
that cannot be answered in time refused at once with 503 + Retry-After, one that can answered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from textguard.scorer import Scorer
from textguard.service.app import create_app
from textguard.service.batcher import MicroBatcher, _Job
from textguard.service.deadline import (
    DEADLINE_HEADER,
    AdmissionGate,
    DeadlineMiddleware,
    EarlyReturns,
    current_deadline,
    deadline_after,
)
from textguard.service.errors import Overloaded
from textguard.service.model_manager import LoadedModel
from textguard.service.settings import ServiceSettings


@pytest.fixture(scope="module")
def scorer(tiny_artifact: Path) -> Scorer:
    return Scorer.from_artifact(tiny_artifact, max_batch_size=8)


@pytest.fixture
def serve(scorer: Scorer, tiny_artifact: Path, tmp_path: Path) -> Callable[..., Any]:
    @contextmanager
    def run(**overrides: Any) -> Iterator[TestClient]:
        values: dict[str, Any] = {
            "model": str(tiny_artifact),
            "audit_url": f"sqlite:///{tmp_path / 'audit.db'}",
            "audit_hash_key": SecretStr("test-key"),
            "model_poll_seconds": 0,
            **overrides,
        }
        with TestClient(create_app(ServiceSettings(**values), scorer=scorer)) as client:
            yield client

    return run


def _body(count: int) -> dict[str, Any]:
    return {"messages": [{"id": f"m{i}", "text": f"see you at the standup {i}"} for i in range(count)]}


@pytest.mark.parametrize(
    ("value", "wording"),
    [("soon", "whole number"), ("-5", "whole number"), ("10", "between 50 and 30000"),
     ("30001", "between 50 and 30000"), ("9" * 5000, "between 50 and 30000")],
)  # fmt: skip
def test_a_deadline_header_out_of_bounds_is_a_422_naming_it(
    serve: Callable[..., Any], value: str, wording: str
) -> None:
    with serve() as client:
        response = client.post("/v1/score", json=_body(1), headers={DEADLINE_HEADER: value})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "validation_error" and error["field"] == DEADLINE_HEADER
    assert wording in error["message"]


def test_a_request_that_cannot_be_answered_in_time_is_refused_at_once(serve: Callable[..., Any]) -> None:
    with serve(deadline_min_ms=1) as client:
        assert client.post("/v1/score", json=_body(32), headers={DEADLINE_HEADER: "5000"}).status_code == 200
        started = time.perf_counter()
        response = client.post("/v1/score", json=_body(32), headers={DEADLINE_HEADER: "1"})
        elapsed = time.perf_counter() - started
        metrics = client.get("/metrics").text
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "overloaded" and "deadline" in error["message"]
    assert int(response.headers["retry-after"]) >= 1
    assert elapsed < 1.0  # refused, not queued
    assert "textguard_overloaded_total 1.0" in metrics


@pytest.mark.parametrize("hold_ms", [1000, 0])
def test_a_client_back_before_its_retry_after_waits_out_the_rest_of_it(
    serve: Callable[..., Any], hold_ms: int
) -> None:
    with serve(deadline_min_ms=1, retry_hold_ms=hold_ms) as client:
        assert client.post("/v1/score", json=_body(32), headers={DEADLINE_HEADER: "5000"}).status_code == 200
        refused = client.post("/v1/score", json=_body(32), headers={DEADLINE_HEADER: "1"})
        started = time.perf_counter()
        again = client.post("/v1/score", json=_body(1))  # at once, ignoring Retry-After
        waited = time.perf_counter() - started
        other = client.get("/metrics")  # not a scoring route: never held
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) == 1
    assert again.status_code == 200  # nothing ahead once it has waited: answered
    assert other.status_code == 200
    if hold_ms:
        assert 0.8 <= waited < 2.0  # the rest of the 1 s Retry-After
    else:
        assert waited < 0.8


def test_the_hold_keys_on_the_client_whatever_iterable_the_server_gives() -> None:
    """ASGI allows the client address as a list (uvicorn gives a tuple): it must key the hold, not crash."""
    answers = iter([503, 200])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        status = next(answers)
        headers = [(b"retry-after", b"1")] if status == 503 else []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = DeadlineMiddleware(
        app, default_ms=1000, min_ms=50, max_ms=30_000, gate=AdmissionGate(),
        scored_paths=frozenset({"/v1/score"}), retry_hold_ms=200,
    )  # fmt: skip

    async def request() -> tuple[int, float]:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "path": "/v1/score", "headers": [], "client": ["10.1.2.3", 4567]}
        started = time.perf_counter()
        await middleware(scope, receive, send)
        return sent[0]["status"], time.perf_counter() - started

    first, _ = asyncio.run(request())
    second, waited = asyncio.run(request())
    assert (first, second) == (503, 200)
    assert 0.15 <= waited < 1.0  # held for retry_hold_ms (0.2 s), not the whole 1 s Retry-After


def test_early_returns_hold_until_the_retry_after_and_stay_bounded() -> None:
    early = EarlyReturns(max_hold_s=1.0, capacity=2)
    early.refused(("10.0.0.1", 5000), 5.0, now=100.0)
    assert early.hold(("10.0.0.1", 5000), now=100.5) == 1.0  # 4.5 s early: held for the cap
    assert early.hold(("10.0.0.1", 5000), now=104.6) == pytest.approx(0.4)
    assert early.hold(("10.0.0.1", 5001), now=100.5) == 0.0  # another connection
    assert early.hold(("10.0.0.1", 5000), now=105.0) == 0.0  # honoured: forgotten
    early.refused(("a", 1), 1.0, now=200.0)
    early.refused(("b", 1), 1.0, now=200.0)
    early.refused(("c", 1), 1.0, now=200.5)  # full of live entries: not recorded
    assert early.hold(("c", 1), now=200.6) == 0.0 and early.hold(("a", 1), now=200.6) > 0
    early.refused(("c", 1), 1.0, now=201.5)  # the others expired: room again
    assert early.hold(("c", 1), now=201.6) > 0
    early.refused(None, 1.0, now=0.0)  # no client address (a bare ASGI scope): nothing to key on
    early.refused(("d", 1), None, now=0.0)  # a 503 without Retry-After: nothing to hold to


def test_deadline_settings_must_be_ordered(tiny_artifact: Path) -> None:
    with pytest.raises(ValidationError, match="deadline_ms"):
        ServiceSettings(model=str(tiny_artifact), deadline_ms=20, deadline_min_ms=50)


def test_the_batcher_admits_by_estimated_finish_time(scorer: Scorer) -> None:
    model = LoadedModel(scorer, "textguard", "v", None)
    batcher = MicroBatcher(lambda: model, max_batch_size=8, max_queue=4096)
    batcher.start()
    texts = [f"message {i} of the meeting chat" for i in range(64)]

    async def scenario() -> tuple[int, Overloaded]:
        await batcher.score(texts)  # measures the scoring rate
        rate = batcher.texts_per_second
        # Enough time for 64 texts at the measured rate: admitted.
        current_deadline.set(deadline_after(1000 * (64 / rate) * 4 + 200))
        answered = await batcher.score(texts)
        # With 2,560 texts ahead (enough to be still in the forward pass a moment later, however fast
        # the model), a deadline far shorter than they take at that rate: refused at once.
        ahead = asyncio.ensure_future(batcher.score(texts * 40))
        await asyncio.sleep(0)  # queued
        current_deadline.set(deadline_after(1000 * (64 / rate) / 2))
        with pytest.raises(Overloaded, match="deadline") as caught:
            await batcher.score(texts)
        await ahead
        # Nothing ahead: admitted even with a deadline shorter than its own estimate (scored as soon as
        # this server can; a refusal would teach nothing).
        current_deadline.set(deadline_after(1000 * (64 / rate) / 2))
        answered_alone = await batcher.score(texts)
        assert len(answered_alone) == 64
        return len(answered), caught.value

    try:
        answered, refused = asyncio.run(scenario())
    finally:
        batcher.stop()
    assert answered == 64
    assert refused.status == 503 and int(refused.headers()["Retry-After"]) >= 1
    assert batcher.queue_depth == 0


def test_a_drain_refuses_the_jobs_it_would_answer_past_their_deadline(scorer: Scorer) -> None:
    """At the start of a drain, a job admitted behind other work is refused unless the drain's time at the
    measured rate fits in admission's share of the time it has left (its admission estimate was wrong);
    one admitted with nothing ahead is scored whatever its deadline; a passed deadline is refused either
    way."""
    model = LoadedModel(scorer, "textguard", "v", None)
    batcher = MicroBatcher(lambda: model, max_batch_size=8, max_queue=4096)  # not started: no drains
    batcher._texts_per_second, batcher._rate_measured = 100.0, True
    # 40 texts: a 0.4 s drain, which needs 0.4 / ADMISSION_SHARE = 0.53 s left

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        now = time.perf_counter()

        def job(deadline_s: float | None, estimated: bool) -> _Job:
            deadline = None if deadline_s is None else now + deadline_s
            return _Job(["text"] * 10, loop.create_future(), loop, deadline, estimated=estimated)

        jobs = {
            "estimated, deadline inside the drain": job(0.2, True),
            "estimated, deadline after the drain and its share": job(0.6, True),
            "alone, deadline inside the drain": job(0.2, False),
            "alone, deadline passed": job(-0.01, False),
        }
        kept = batcher._drop_late(list(jobs.values()), now)
        await asyncio.sleep(0)  # refusals are delivered through the loop
        assert all(job.future.done() for job in jobs.values() if job not in kept)
        for name, queued in jobs.items():
            if queued.future.done():
                assert isinstance(queued.future.exception(), Overloaded), name
        return [name for name, queued in jobs.items() if queued in kept]

    assert asyncio.run(scenario()) == [
        "estimated, deadline after the drain and its share",
        "alone, deadline inside the drain",
    ]


def test_the_gate_refuses_what_the_work_ahead_makes_late_and_admits_when_nothing_is_ahead() -> None:
    gate = AdmissionGate(share=0.75)
    gate.admit(500)  # no deadline and no measured rate: admitted
    gate.rate = 1000.0  # messages per second, as measured while busy
    token = current_deadline.set(deadline_after(300))
    try:
        gate.admit(100)  # 0.6 s of work with this one: over 0.75 x 300 ms? 0.5 + 0.1 s > 0.225 s
    except Overloaded as refused:
        assert refused.status == 503 and "deadline" in refused.message
        assert refused.headers()["Retry-After"] == "1"  # 0.5 s of work ahead, rounded up to 1 s
    else:
        raise AssertionError("admitted although the work ahead needs 500 ms of a 300 ms deadline")
    with pytest.raises(Overloaded):
        gate.enter(current_deadline.get())  # before its body is read: the work ahead alone is too much
    gate.done(500)
    gate.enter(current_deadline.get())  # nothing ahead now
    gate.admit(10_000)  # nothing ahead: as fast as this server can, so admitted (not refused forever)
    gate.done(10_000)
    gate.leave()
    current_deadline.reset(token)
    assert gate.in_flight == 0 and gate.requests == 0 and gate.deciding == 0


def test_the_gate_measures_the_rate_while_busy() -> None:
    gate = AdmissionGate()
    for _ in range(5):
        gate.admit(32)
        time.sleep(0.06)
        gate.done(32)
    assert gate.rate is not None and 100 < gate.rate < 600  # 32 messages per ~0.06 s, measured


def test_the_gate_learns_how_much_longer_than_estimated_answers_take() -> None:
    """The rate covers the decision path only: when answers take longer than estimated (the event loop
    reading and answering requests under load), later estimates are scaled up, and back down."""
    gate = AdmissionGate(share=0.75)
    gate.rate = 1000.0
    token = current_deadline.set(deadline_after(1000))
    try:
        gate.admit(300)  # 0.3 s of work ahead
        estimate = gate.enter(current_deadline.get())
        assert estimate == pytest.approx(0.331, rel=0.01)  # the work ahead + an average request (30.9)
        # Answered three times slower than estimated, again and again: the estimates grow.
        for _ in range(10):
            gate.leave(time.perf_counter() - 3 * estimate, estimate)
            gate.requests += 1  # the same request again, for the test
        assert 2.5 < gate.slowdown <= 3.0
        with pytest.raises(Overloaded):  # 0.3 s x ~2.8 > 0.75 x 1 s
            gate.enter(current_deadline.get())
        # Answers as fast as estimated bring it back (a refusal or no estimate changes nothing).
        for _ in range(30):
            gate.leave(time.perf_counter() - estimate / 2, estimate)
            gate.requests += 1
        gate.leave(time.perf_counter() - 10, None)
        assert gate.slowdown < 1.01
        assert gate.enter(current_deadline.get()) is not None  # admitted again
    finally:
        current_deadline.reset(token)


@pytest.mark.parametrize(
    ("cores", "processes", "expected"), [(2, 1, (2, 1)), (2, 2, (1, 1)), (8, 2, (4, 1)), (1, 3, (1, 1))]
)
def test_inference_workers_share_the_cores_between_processes(
    cores: int, processes: int, expected: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One single-threaded inference worker per core, the cores divided between the worker processes."""
    import textguard.hardware

    monkeypatch.setattr(textguard.hardware, "available_cores", lambda: cores)
    settings = ServiceSettings(model="unused", workers=processes, audit_hash_key=SecretStr("k"))
    assert settings.inference_layout() == expected
    explicit = ServiceSettings(
        model="unused", workers=processes, inference_workers=1, audit_hash_key=SecretStr("k")
    )
    assert explicit.inference_layout() == (1, max(1, cores // processes))
