"""Admission by deadline under overload, on a real `textguard serve` process (textguard.service.deadline).

64 concurrent clients send 32-message requests for a few seconds, each again as soon as it has its
answer (after the Retry-After of a refusal, as well-behaved clients do), several times more than the
server can score within the deadline. Every request is
answered with decisions or a JSON 503 `overloaded` with a Retry-After; the answered ones arrive within
the deadline plus slack for a shared 2-core machine (the issue measured p50 16.6 s before admission by
deadline), and the refusals come at once, not after a wait in a queue. The client is bench/http_load.py
(prebuilt request bytes on asyncio streams): httpx with 64 connections on the same 2 cores measured its
own queueing, seconds of it, more than the server. Bounded: the burst lasts BURST_S seconds.
Clients that ignore Retry-After and resend at once are held until it (`retry_hold_ms`): the second test
floods the server with them and checks that they cost one refusal per Retry-After each, and that the
answered requests keep the deadline (without the hold one process answered them seconds late).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from serve_process import ServeProcess, serve_process

from textguard.paths import project_root

sys.path.insert(0, str(project_root() / "bench"))
from http_load import Answer, closed_loop, percentile, post_bytes

DEADLINE_MS = 300
CLIENTS = 64
MESSAGES = 32
BURST_S = 4.0
#: Between the server's deadline and the client reading the answer, on a machine shared with training.
SLACK_S = 0.5
#: How long a client back before its Retry-After is held at most (the server's default retry_hold_ms).
HOLD_S = 1.0
BODY = {
    "messages": [
        {"id": f"m{i}", "text": f"can you share your screen please, slide {i} of the quarterly review"}
        for i in range(MESSAGES)
    ]
}


@contextmanager
def _measured_server(tiny_artifact: Path, tmp_path: Path) -> Iterator[ServeProcess]:
    """A real server with the test's deadline, its scoring rate measured from a few real requests."""
    args = [
        "--model-poll-seconds", "0",
        "--audit-url", f"sqlite:///{tmp_path / 'audit.db'}",
        "--deadline-ms", str(DEADLINE_MS),
        "--max-messages", str(MESSAGES),
    ]  # fmt: skip
    with serve_process(tiny_artifact, tmp_path, args, {"TEXTGUARD_AUDIT_HASH_KEY": "overload"}) as server:
        for _ in range(5):
            assert httpx.post(f"{server.url}/v1/score", json=BODY, timeout=30).status_code == 200
        yield server


def _flood(server: ServeProcess, honour_retry_after: bool) -> list[Answer]:
    """CLIENTS closed-loop clients sending BODY for BURST_S; every answer is a decision or a 503."""
    request = post_bytes("/v1/score", json.dumps(BODY).encode())
    answers = asyncio.run(
        closed_loop(
            "127.0.0.1", server.port, request, CLIENTS, BURST_S,
            keep_bodies=True, honour_retry_after=honour_retry_after,
        )
    )  # fmt: skip
    assert {answer.status for answer in answers} <= {200, 503}
    return answers


def test_under_overload_answered_requests_keep_the_deadline_and_refusals_are_immediate(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    with _measured_server(tiny_artifact, tmp_path) as server:
        answers = _flood(server, honour_retry_after=True)
        after = httpx.post(f"{server.url}/v1/score", json=BODY, timeout=30)
    answered = [answer.seconds for answer in answers if answer.status == 200]
    refused = [answer for answer in answers if answer.status == 503]
    assert answered and refused, f"{len(answered)} answered, {len(refused)} refused: not an overload"
    for answer in refused:
        assert answer.json()["error"]["type"] == "overloaded"
        assert int(answer.headers["retry-after"]) >= 1
    refusal_seconds = [answer.seconds for answer in refused]
    summary = (
        f"{len(answered)} answered (p50 {statistics.median(answered) * 1000:.0f} ms, p99 "
        f"{percentile(answered, 99) * 1000:.0f} ms), {len(refused)} refused (p50 "
        f"{statistics.median(refusal_seconds) * 1000:.0f} ms, max {max(refusal_seconds) * 1000:.0f} ms)"
    )
    print(f"\n{summary}")
    limit = DEADLINE_MS / 1000 + SLACK_S
    assert percentile(answered, 99) <= limit, summary
    # Refusals are decided before any queueing: far quicker than the deadline.
    assert statistics.median(refusal_seconds) <= DEADLINE_MS / 1000 / 3, summary
    assert max(refusal_seconds) <= limit, summary
    assert after.status_code == 200  # the server recovers at once


def test_clients_that_resend_at_once_are_held_to_their_retry_after(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    with _measured_server(tiny_artifact, tmp_path) as server:
        answers = _flood(server, honour_retry_after=False)
    answered = [answer.seconds for answer in answers if answer.status == 200]
    refused = [answer.seconds for answer in answers if answer.status == 503]
    summary = (
        f"{len(answered)} answered (p99 {percentile(answered, 99) * 1000:.0f} ms), {len(refused)} refused "
        f"(p50 {statistics.median(refused or [0]) * 1000:.0f} ms)"
    )
    print(f"\n{summary}")
    assert answered and refused, summary
    # Without the hold: thousands of refusals a second. With it: about one per client per Retry-After (1 s).
    assert len(refused) <= CLIENTS * (BURST_S + 2), summary
    # A held request counts its deadline from the end of its hold (at most HOLD_S), as the client was told.
    assert percentile(answered, 99) <= HOLD_S + DEADLINE_MS / 1000 + SLACK_S, summary
