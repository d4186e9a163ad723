"""Connection hygiene on a real `textguard serve` process (textguard.service.connection).

Clients that hold connections without sending a request: headers trickled a byte at a time (slowloris),
a chunked body never finished, a 100 MB header, more connections than the cap, and a SIGTERM while such
clients hang on. Each is answered with the service's JSON error (408, 431, 503) or closed within its
timeout; the server's memory does not grow with the header size, and shutdown finishes within the drain
timeout with no client seeing a non-JSON 5xx. Every wait here is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from serve_process import RssSampler, ServeProcess, serve_process
from serve_support import free_port

from textguard.service.connection import uvicorn_options
from textguard.service.settings import ServiceSettings

HEADER_TIMEOUT_S = 1.5
BODY_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 32
#: Slack for a loaded 2-core machine between a deadline and the client seeing the close.
SLACK_S = 2.0
SCORE = {"messages": [{"id": "m", "text": "see you at the standup"}]}


def _serve_args(workdir: Path, *extra: str) -> list[str]:
    return [
        "--model-poll-seconds", "0",
        "--audit-url", f"sqlite:///{workdir / 'audit.db'}",
        "--header-timeout-seconds", str(HEADER_TIMEOUT_S),
        "--body-timeout-seconds", str(BODY_TIMEOUT_S),
        "--max-connections", str(MAX_CONNECTIONS),
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def server(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("connections")
    env = {"TEXTGUARD_AUDIT_HASH_KEY": "connections"}
    with serve_process(tiny_artifact, workdir, _serve_args(workdir), env) as process:
        for _ in range(3):  # settle the first requests' allocations before memory is compared
            httpx.post(f"{process.url}/v1/score", json=SCORE, timeout=30)
        yield process


def _read_answer(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (or `timeout`), and when the close came."""
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received, time.monotonic()
        if not chunk:
            return received, time.monotonic()
        received += chunk
    raise AssertionError(f"the server did not close within {timeout} s (received {received[:200]!r})")


def _parse(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


def _assert_json_error(answer: bytes, status: int, kind: str) -> dict[str, str]:
    code, headers, body = _parse(answer)
    assert (code, headers["content-type"], body["error"]["type"]) == (status, "application/json", kind)
    assert headers["connection"] == "close"
    return headers


def _server_still_scores(server: ServeProcess) -> None:
    response = httpx.post(f"{server.url}/v1/score", json=SCORE, timeout=30)
    assert response.status_code == 200, response.text


# -- headers -------------------------------------------------------------------------------------------


def test_slowloris_connections_are_closed_within_the_header_timeout(server: ServeProcess) -> None:
    count = 20
    sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(count)]
    started = time.monotonic()
    try:
        for sock in sockets:
            sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        _server_still_scores(server)  # held connections do not stop the others
        closed_at: dict[int, float] = {}
        answers: dict[int, bytes] = {}
        # One more header byte every 0.2 s on every socket still open, as slowloris does.
        while len(closed_at) < count and time.monotonic() - started < HEADER_TIMEOUT_S + SLACK_S + 5:
            for index, sock in enumerate(sockets):
                if index in closed_at:
                    continue
                if select.select([sock], [], [], 0)[0]:
                    answers[index], closed_at[index] = _read_answer(sock, SLACK_S)
                    continue
                with contextlib.suppress(OSError):
                    sock.sendall(b"X")
            time.sleep(0.2)
    finally:
        for sock in sockets:
            sock.close()
    assert len(closed_at) == count, f"{count - len(closed_at)} trickling connections were still open"
    assert max(closed_at.values()) - started < HEADER_TIMEOUT_S + SLACK_S
    for answer in answers.values():
        _assert_json_error(answer, 408, "request_timeout")
    _server_still_scores(server)


def test_a_connection_that_sends_nothing_is_closed_within_the_header_timeout(server: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        answer, closed = _read_answer(sock, HEADER_TIMEOUT_S + SLACK_S)
    assert closed - started < HEADER_TIMEOUT_S + SLACK_S
    _assert_json_error(answer, 408, "request_timeout")


def _send_big_header(port: int, size: int) -> tuple[bytes, int]:
    """Send a request whose one header is `size` bytes, stopping once the server answers."""
    piece = b"a" * 65_536
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        while sent < size:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer (or the close) is there
            try:
                sock.sendall(piece)
            except OSError:
                break
            sent += len(piece)
        answer, _ = _read_answer(sock, 10)
    return answer, sent


def test_a_100_mb_header_is_refused_with_431_without_growing_the_server(server: ServeProcess) -> None:
    size = 100_000_000
    with RssSampler(server) as rss:
        started, baseline = time.monotonic(), server.rss()
        results: list[tuple[bytes, int]] = []
        threads = [
            threading.Thread(target=lambda: results.append(_send_big_header(server.port, size)))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        peak = rss.peak_since(started)
    assert len(results) == 4
    for answer, sent in results:
        _assert_json_error(answer, 431, "headers_too_large")
        assert sent < 10_000_000, "the server kept reading the header long after its limit"
    growth_mb = (peak - baseline) / 1e6
    assert growth_mb < 5, f"RSS grew {growth_mb:.1f} MB while refusing four 100 MB headers"
    _server_still_scores(server)


def test_too_many_header_fields_are_refused_with_431(server: ServeProcess) -> None:
    headers = {f"x-field-{index}": "1" for index in range(150)}
    response = httpx.get(f"{server.url}/readyz", headers=headers, timeout=10)
    assert response.status_code == 431 and response.json()["error"]["type"] == "headers_too_large"


# -- bodies ----------------------------------------------------------------------------------------------


def test_a_never_finished_chunked_body_is_closed_within_the_body_timeout(server: ServeProcess) -> None:
    head = (
        b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(10)]
    try:
        started = time.monotonic()
        for sock in sockets:
            sock.sendall(head + b'5\r\n{"mes\r\n')
        answers = [_read_answer(sock, BODY_TIMEOUT_S + SLACK_S) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    for answer, closed in answers:
        assert closed - started < BODY_TIMEOUT_S + SLACK_S
        # One JSON answer per connection: the body timeout's 408, or, on a busy machine, the deadline
        # gate's immediate 503 (it refuses before reading the body when the work ahead cannot finish in
        # time), after which the guard closes the connection without a second response.
        code, headers, body = _parse(answer)  # json.loads fails on a second response in the same bytes
        if code == 503:
            assert (headers["content-type"], body["error"]["type"]) == ("application/json", "overloaded")
        else:
            _assert_json_error(answer, 408, "request_timeout")
    _server_still_scores(server)


def test_a_body_trickled_one_byte_at_a_time_is_still_bounded(server: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n")
        started = time.monotonic()
        while not select.select([sock], [], [], 0.2)[0]:
            assert time.monotonic() - started < BODY_TIMEOUT_S + SLACK_S, "still reading the trickle"
            sock.sendall(b" ")
        answer, _ = _read_answer(sock, SLACK_S)
    _assert_json_error(answer, 408, "request_timeout")


# -- the connection cap -----------------------------------------------------------------------------------


def test_connections_over_the_cap_get_a_json_503(server: ServeProcess) -> None:
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)  # accepted by the server
        response = httpx.post(f"{server.url}/v1/score", json=SCORE, timeout=10)
    finally:
        for sock in idle:
            sock.close()
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "overloaded" and response.headers["retry-after"] == "1"
    time.sleep(0.3)
    _server_still_scores(server)


# -- shutdown -----------------------------------------------------------------------------------------------


def test_sigterm_with_stalled_clients_exits_within_the_drain_timeout(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    drain = 4
    args = _serve_args(tmp_path, "--drain-timeout-seconds", str(drain), "--body-timeout-seconds", "60")
    process = ServeProcess(tiny_artifact, tmp_path, args, {"TEXTGUARD_AUDIT_HASH_KEY": "drain"})
    clients: list[socket.socket] = []
    try:
        process.wait_ready()
        port = process.port
        chunked = b'POST /v1/score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"mes\r\n'
        for opening in (chunked, chunked, b"POST /v1/score HTTP/1.1\r\nHost: x\r\n", b""):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(opening)
            clients.append(sock)
        keep_alive = socket.create_connection(("127.0.0.1", port), timeout=10)
        keep_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        clients.append(keep_alive)
        time.sleep(0.5)
        started = time.monotonic()
        process.process.send_signal(signal.SIGTERM)
        answers = [_read_answer(sock, drain + SLACK_S) for sock in clients]
        process.process.wait(timeout=drain + 15)
        exited = time.monotonic() - started
    finally:
        for sock in clients:
            sock.close()
        process.stop()
    assert exited < drain + 5, f"the server took {exited:.1f} s to exit after SIGTERM"
    # The stalled bodies and the half-sent headers were told to retry, before the drain timeout ran out.
    for answer, closed in answers[:3]:
        headers = _assert_json_error(answer, 503, "not_ready")
        assert headers["retry-after"] == "1" and closed - started < drain + SLACK_S
    assert answers[3][0] == b""  # the connection that had sent nothing was just closed
    status, headers, body = _parse(answers[4][0])  # the kept-alive one had its answer, then was closed
    assert (status, body) == (200, {"status": "ok"})


def test_a_request_cancelled_by_the_drain_timeout_answers_json_503(tmp_path: Path) -> None:
    """A request still running when the drain timeout ends is cancelled by uvicorn: the client gets the
    JSON 503, not uvicorn's plain-text 500."""
    entered = threading.Event()

    async def never_answers(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = (await receive())["type"]
                await send({"type": event + ".complete"})  # lifespan.startup / lifespan.shutdown
                if event == "lifespan.shutdown":
                    return
        entered.set()
        await asyncio.sleep(3600)

    settings = ServiceSettings(model=str(tmp_path), drain_timeout_seconds=1)
    port = free_port()
    config = uvicorn.Config(
        never_answers,
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            assert entered.wait(10)
            server.should_exit = True
            answer, _ = _read_answer(sock, 10)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    _assert_json_error(answer, 503, "not_ready")
