"""A lean closed-loop HTTP/1.1 load client: asyncio streams, keep-alive, a request prebuilt as bytes.

Python's full clients (httpx) cost about a millisecond of CPU per request; on 2 cores shared with the
server, 64 such clients measure their own queueing more than the server's latency. This one writes the
same prebuilt bytes each time and reads only the status line, the headers and Content-Length bytes of
body, so the latency it records is the server's plus little. (For throughput without any Python on the
client side, bench/serve_load.py also drives `wrk`.)

Used by bench/serve_load.py and tests/integration/test_overload_deadline.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Answer:
    status: int
    seconds: float
    started: float  # time.perf_counter() when the request was written
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


def post_bytes(
    path: str, body: bytes, host: str = "127.0.0.1", headers: dict[str, str] | None = None
) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def closed_loop(
    host: str,
    port: int,
    request: bytes,
    clients: int,
    seconds: float,
    *,
    keep_bodies: bool = False,
    timeout: float = 60.0,
    honour_retry_after: bool = False,
) -> list[Answer]:
    """`clients` connections each send `request` again as soon as the previous answer is read (or, with
    `honour_retry_after`, after the Retry-After of a 503 or 429), for `seconds`; every answer with its
    latency. A connection the server closes is reopened."""
    answers: list[Answer] = []
    stop_at = time.perf_counter() + seconds

    async def one_client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                writer.write(request)
                try:
                    status, headers, body = await asyncio.wait_for(_read_answer(reader), timeout)
                except (asyncio.IncompleteReadError, ConnectionError):
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                answers.append(
                    Answer(
                        status, time.perf_counter() - started, started, headers, body if keep_bodies else b""
                    )
                )
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                if honour_retry_after and status in (429, 503) and "retry-after" in headers:
                    pause = min(float(headers["retry-after"]), stop_at - time.perf_counter())
                    if pause > 0:
                        await asyncio.sleep(pause)
        finally:
            writer.close()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return answers


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]
