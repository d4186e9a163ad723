"""Overload and soak against a real `textguard serve` process (127.0.0.1, tiny model).

- overload (fast): requests arrive on a fixed schedule (open loop) at ~2.5x what the server can score.
  With an unbounded queue latency would grow for as long as the overload lasts; with the bounded queue
  the excess is shed at once with 503 + Retry-After and the answered requests wait at most about one
  queue's worth of scoring time, from the start of the overload to its end;
- soak (slow): TEXTGUARD_SOAK_SECONDS (default 60) of closed-loop traffic from 32 clients (/v1/score,
  /v1/moderations and caption streams) with a queue small enough to shed now and then. Nothing fails
  except intended 429/503 answers with Retry-After, and the server's RSS, sampled every second, stays
  flat: after warm-up, the median of the last third is within 15% or 50 MB of the first third's.

bench/soak.py runs the same soak with the MiniLM model and prints percentiles and RSS per window.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_process import RssSampler, ServeProcess, serve_process

SENTENCE = "the quarterly numbers look good but the slide deck needs another pass before friday and we"
WORDS = SENTENCE.split()
SHED_STATUSES = (429, 503)


def _text(seed: int, words: int = 16) -> str:
    return " ".join(WORDS[(seed + k) % len(WORDS)] for k in range(words))


def _score_body(prefix: str, count: int) -> dict[str, Any]:
    return {"messages": [{"id": f"{prefix}-{k}", "text": _text(k), "language": "en"} for k in range(count)]}


@dataclass
class Outcome:
    sent_at: float
    latency: float
    status: int
    retry_after: str | None
    kind: str | None


async def _send(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> Outcome:
    sent_at = time.monotonic()
    try:
        response = await client.post(path, json=body)
    except httpx.TransportError as exc:
        return Outcome(sent_at, time.monotonic() - sent_at, 0, None, type(exc).__name__)
    kind = response.json().get("error", {}).get("type") if response.status_code != 200 else None
    return Outcome(
        sent_at, time.monotonic() - sent_at, response.status_code, response.headers.get("retry-after"), kind
    )


def _counter(metrics: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", metrics, flags=re.MULTILINE)
    assert match, f"{name} is not in /metrics"
    return float(match.group(1))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


# -- overload: open loop at 2.5x capacity ----------------------------------------------------------------

MAX_QUEUE = 64
PER_REQUEST = 32


async def _capacity(url: str, seconds: float, clients: int = 16) -> float:
    """Messages per second the server scores with `clients` in a closed loop (also warms it up)."""
    scored = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        end = time.monotonic() + seconds

        async def worker(number: int) -> None:
            nonlocal scored
            while time.monotonic() < end:
                outcome = await _send(client, "/v1/score", _score_body(f"c{number}", PER_REQUEST))
                scored += PER_REQUEST if outcome.status == 200 else 0

        await asyncio.gather(*(worker(number) for number in range(clients)))
    return scored / seconds


async def _open_loop(url: str, rate: float, seconds: float) -> list[Outcome]:
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        tasks = []
        start = time.monotonic()
        for number in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + number / rate - time.monotonic()))
            body = _score_body(f"o{number}", PER_REQUEST)
            tasks.append(asyncio.create_task(_send(client, "/v1/score", body)))
        return list(await asyncio.gather(*tasks))


@pytest.fixture
def small_queue_server(tiny_artifact: Path, tmp_path: Path) -> Any:
    # One inference worker: the Python client on the same two cores must send 2.5x what the server
    # scores, and with a worker per core the tiny model's capacity outgrew what it could send (65 of 142
    # requests/s). Shedding by a bounded queue does not depend on the worker count; the deadline test
    # (test_overload_deadline.py) overloads the default workers.
    # No Retry-After hold: the open-loop client sends on a pool of connections regardless of answers, so
    # holding a connection refused a moment ago adds its hold to the next request's latency without
    # slowing the load; this measures the queue's own shedding (the hold: test_overload_deadline.py).
    args = [
        "--model-poll-seconds", "0", "--audit-url", f"sqlite:///{tmp_path / 'audit.db'}",
        "--max-queue", str(MAX_QUEUE), "--max-messages", str(PER_REQUEST), "--log-level", "warning",
        "--inference-workers", "1", "--retry-hold-ms", "0",
    ]  # fmt: skip
    with serve_process(tiny_artifact, tmp_path, args, {"TEXTGUARD_AUDIT_HASH_KEY": "soak"}) as server:
        yield server


def test_overload_is_shed_at_once_and_latency_stays_bounded(small_queue_server: ServeProcess) -> None:
    # A timing test on two shared cores, beside its own Python client: one stall of the machine (a slow
    # fsync of the audit store, the client starved of CPU) failed a try in 3 of about 20 runs; a queue
    # that does not shed, or latency that grows with it, fails every try.
    try:
        _overload_is_shed(small_queue_server.url)
    except AssertionError:
        time.sleep(1.0)  # the queue of the first try drains
        _overload_is_shed(small_queue_server.url)


def _overload_is_shed(url: str) -> None:
    # 16 x 32 texts > MAX_QUEUE: this sheds already, so the answers measure what the server can score.
    # With 8 clients the tiny model's server outran their closed loop: it then took 2.5x that "capacity"
    # without shedding (1 run in 4 with the packed-token encoder).
    capacity = asyncio.run(_capacity(url, 2.0))
    assert capacity > 0
    shed_before = _counter(httpx.get(f"{url}/metrics", timeout=10).text, "textguard_overloaded_total")
    rate = 2.5 * capacity / PER_REQUEST  # requests per second
    seconds = 4.0
    outcomes = asyncio.run(_open_loop(url, rate, seconds))
    started = min(outcome.sent_at for outcome in outcomes)
    achieved = len(outcomes) / (max(outcome.sent_at for outcome in outcomes) - started)
    # What must hold is an overload, not the exact 2.5x: the Python client shares the two cores with
    # the server, and one CI run sent 110 of 174 req/s (1.6x capacity) when the server measured fast.
    assert achieved * PER_REQUEST > 1.5 * capacity, (
        f"the client could not overload the server ({achieved:.0f} req/s sent, {rate:.0f} asked, "
        f"capacity {capacity / PER_REQUEST:.0f})"
    )

    served = [outcome for outcome in outcomes if outcome.status == 200]
    shed = [outcome for outcome in outcomes if outcome.status != 200]
    assert {(outcome.status, outcome.kind) for outcome in shed} <= {(503, "overloaded")}
    assert all(outcome.retry_after is not None and int(outcome.retry_after) >= 1 for outcome in shed)
    # At 2.5x capacity a share must be refused; how much depends on how well capacity was measured on a
    # shared machine (one CI run shed 4.5%), so the bound is loose: shedding happens, it is not a trickle.
    assert len(shed) >= 0.03 * len(outcomes) and len(served) >= 0.1 * len(outcomes), (len(served), len(shed))

    # The bound: one queue of texts waiting plus one drain being scored, with slack for a busy machine.
    bound = max(1.0, 4 * 2 * MAX_QUEUE / capacity)
    served_latency = [outcome.latency for outcome in served]
    assert _percentile(served_latency, 95) < bound, (_percentile(served_latency, 95), bound)
    # ... from the first third of the overload to the last (an unbounded queue grows all along). Medians:
    # a third holds a few dozen answers, whose p95 is one or two of them (a full run on a busy machine
    # read 0.196 -> 0.695 s once, passing alone three times in three); a growing queue moves the median.
    thirds = [
        [
            o.latency
            for o in served
            if started + k * seconds / 3 <= o.sent_at < started + (k + 1) * seconds / 3
        ]
        for k in range(3)
    ]
    assert statistics.median(thirds[2]) < 2 * statistics.median(thirds[0]) + 0.25, [
        round(statistics.median(third), 3) for third in thirds
    ]
    # Shedding is immediate: a refusal costs no scoring time.
    shed_latency = [outcome.latency for outcome in shed]
    assert statistics.median(shed_latency) <= statistics.median(served_latency)
    assert _percentile(shed_latency, 95) < bound

    shed_after = _counter(httpx.get(f"{url}/metrics", timeout=10).text, "textguard_overloaded_total")
    assert shed_after - shed_before == len(shed)


# -- soak ------------------------------------------------------------------------------------------------


def _soak_seconds() -> float:
    return float(os.environ.get("TEXTGUARD_SOAK_SECONDS", "60"))


@dataclass
class SoakResult:
    outcomes: list[Outcome]
    caption_replies: int
    caption_failures: list[str]


async def _soak(url: str, ws_url: str, seconds: float, clients: int) -> SoakResult:
    outcomes: list[Outcome] = []
    caption_replies = 0
    caption_failures: list[str] = []
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def http_client(client: httpx.AsyncClient, number: int) -> None:
        rng = random.Random(number)
        sequence = 0
        while time.monotonic() < end:
            sequence += 1
            count = rng.randint(1, 8)
            if rng.random() < 0.2:
                body: dict[str, Any] = {"input": [_text(rng.randrange(100)) for _ in range(count)]}
                outcome = await _send(client, "/v1/moderations", body)
            else:
                outcome = await _send(client, "/v1/score", _score_body(f"s{number}-{sequence}", count))
            outcomes.append(outcome)
            if outcome.status in SHED_STATUSES:
                # A client backing off, though not for the whole Retry-After: keep the pressure on.
                await asyncio.sleep(0.05 + rng.random() * 0.1)

    async def caption_client(number: int) -> None:
        # A new meeting per connection, so the caption state meets many meetings over the soak.
        from websockets.asyncio.client import connect

        nonlocal caption_replies
        meeting = 0
        while time.monotonic() < end:
            meeting += 1
            async with connect(f"{ws_url}/v1/meetings/soak-{number}-{meeting}/captions") as socket_:
                for segment in range(20):
                    if time.monotonic() >= end:
                        break
                    frame: dict[str, Any] = {"segment_id": f"g{segment}", "speaker_id": f"spk{segment % 3}"}
                    frame.update(text=_text(segment, 8), start=segment, end=segment + 1, final=True)
                    await socket_.send(json.dumps(frame))
                    reply = json.loads(await asyncio.wait_for(socket_.recv(), 30))
                    if "scores" in reply:
                        caption_replies += 1
                    elif reply.get("error", {}).get("type") == "overloaded":
                        await asyncio.sleep(0.1)
                    else:
                        caption_failures.append(json.dumps(reply)[:200])

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await asyncio.gather(
            *(http_client(client, number) for number in range(clients - 2)),
            *(caption_client(number) for number in range(2)),
        )
    return SoakResult(outcomes, caption_replies, caption_failures)


@pytest.mark.slow
def test_soak_sheds_only_with_retry_after_and_memory_stays_flat(tiny_artifact: Path, tmp_path: Path) -> None:
    seconds = _soak_seconds()
    args = [
        "--model-poll-seconds", "0", "--audit-url", f"sqlite:///{tmp_path / 'audit.db'}",
        "--max-queue", "96", "--max-messages", "8", "--log-level", "warning",
    ]  # fmt: skip
    with serve_process(tiny_artifact, tmp_path, args, {"TEXTGUARD_AUDIT_HASH_KEY": "soak"}) as server:
        with RssSampler(server, interval=1.0) as rss:
            result = asyncio.run(_soak(server.url, server.ws_url, seconds, clients=32))
        ready = httpx.get(f"{server.url}/readyz", timeout=10).status_code
        log = server.log()

    outcomes = result.outcomes
    failures = [
        outcome
        for outcome in outcomes
        if outcome.status != 200 and not (outcome.status in SHED_STATUSES and outcome.retry_after)
    ]
    assert not failures, failures[:5]
    assert not result.caption_failures, result.caption_failures[:5]
    served = [outcome for outcome in outcomes if outcome.status == 200]
    assert len(served) >= 10 * seconds and result.caption_replies >= seconds, (
        len(served),
        result.caption_replies,
    )
    assert ready == 200
    assert '"level": "error"' not in log

    samples = [value for _, value in rss.samples]
    warm = samples[max(3, len(samples) // 10) :]  # after warm-up
    assert len(warm) >= 9, f"too few RSS samples: {len(samples)}"
    third = len(warm) // 3
    first, last = statistics.median(warm[:third]), statistics.median(warm[-third:])
    allowed = max(0.15 * first, 50e6)
    shed = len(outcomes) - len(served)
    print(
        f"soak {seconds:.0f} s: {len(served)} answered, {shed} shed with Retry-After, "
        f"{result.caption_replies} caption decisions; RSS median {first / 1e6:.0f} -> {last / 1e6:.0f} MB"
    )
    assert last - first <= allowed, f"RSS median went from {first / 1e6:.0f} MB to {last / 1e6:.0f} MB"
