"""`textguard serve` as a real process: readiness turns from 503 to 200, logs are JSON without message
text, SIGTERM shuts down cleanly, and bad settings fail in one line before anything starts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serve_support import free_port

CANARY = "quokka-canary-5521"
START_TIMEOUT_S = 120


def _serve(args: list[str], cwd: Path, **env: str) -> subprocess.Popen[str]:
    environment = {**os.environ, **env}
    return subprocess.Popen(
        [sys.executable, "-m", "textguard", "serve", *args],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _readiness_until_ready(base_url: str, process: subprocess.Popen[str]) -> list[int]:
    statuses: list[int] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while not statuses or statuses[-1] != 200:
        assert process.poll() is None, "the server exited during start-up"
        assert time.monotonic() < deadline, f"not ready after {START_TIMEOUT_S} s: {statuses[-5:]}"
        with contextlib.suppress(httpx.TransportError):  # not listening yet
            statuses.append(httpx.get(f"{base_url}/readyz", timeout=5).status_code)
        time.sleep(0.02)
    return statuses


def _connections_per_listening_process(parent: int, port: int) -> list[int]:
    """Once every process of `textguard serve --workers N` listens on a socket of its own, open 32
    connections at once and count those each process accepted."""
    import psutil

    def listening() -> dict[int, set[int]]:
        sockets: dict[int, set[int]] = {}
        for child in psutil.Process(parent).children():
            for connection in child.net_connections(kind="tcp"):
                if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                    inode = os.stat(f"/proc/{child.pid}/fd/{connection.fd}").st_ino
                    sockets.setdefault(child.pid, set()).add(inode)
        return sockets

    deadline = time.monotonic() + START_TIMEOUT_S
    while len(sockets := listening()) < 2 or len(set.union(*sockets.values())) < 2:
        assert time.monotonic() < deadline, f"not every process listens on a socket of its own: {sockets}"
        time.sleep(0.1)

    def accepted() -> list[int]:
        return [
            sum(
                1
                for connection in psutil.Process(pid).net_connections(kind="tcp")
                if connection.status == psutil.CONN_ESTABLISHED and connection.laddr.port == port
            )
            for pid in sockets
        ]

    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(32)]
    try:
        deadline = time.monotonic() + 10  # until the processes have accepted them all (a busy machine)
        while sum(counts := accepted()) < 32 and time.monotonic() < deadline:
            time.sleep(0.05)
        return counts
    finally:
        for client in clients:
            client.close()


def _stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail("the server did not stop within 60 s of SIGTERM")
    return process.returncode, output


def test_serve_command_end_to_end(tiny_artifact: Path, tmp_path: Path) -> None:
    port = free_port()
    key_file = tmp_path / "audit.key"
    key_file.write_text("cli-test-key\n")
    process = _serve(
        [
            "--model", str(tiny_artifact),
            "--port", str(port),
            "--audit-url", f"sqlite:///{tmp_path / 'audit.db'}",
            "--audit-hash-key-file", str(key_file),
            "--max-messages", "5",
        ],
        cwd=tmp_path,  # the default policy path must resolve outside the checkout too
        TEXTGUARD_MODEL_POLL_SECONDS="0",
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        statuses = _readiness_until_ready(base_url, process)
        ok = httpx.post(f"{base_url}/v1/score", json={"messages": [{"id": "1", "text": f"{CANARY} hello"}]})
        too_many = httpx.post(
            f"{base_url}/v1/score", json={"messages": [{"id": str(i), "text": CANARY} for i in range(6)]}
        )
    finally:
        code, output = _stop(process)
    assert set(statuses[:-1]) <= {503}, statuses
    assert ok.status_code == 200
    assert (too_many.status_code, too_many.json()["error"]["field"]) == (422, "messages")
    # uvicorn re-raises the signal once its graceful shutdown is done.
    assert code in (0, -signal.SIGTERM)
    lines = [line for line in output.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert CANARY not in output
    access = [
        entry for entry in entries if entry["logger"] == "textguard.access" and entry["route"] == "/v1/score"
    ]
    assert [entry["status"] for entry in access] == [200, 422]
    assert any(entry["msg"] == "model loaded" for entry in entries)
    assert entries[-1]["msg"].startswith("Finished server process")
    assert not any("random per-process key" in entry["msg"] for entry in entries)


def test_invalid_settings_fail_in_one_line(tiny_artifact: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "textguard", "serve", "--model", str(tiny_artifact), "--batch-max-size", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: serve settings: batch_max_size: Input should be greater than or equal to 1"
    ]
    bad_policy = tmp_path / "policy.yaml"
    bad_policy.write_text("default: x\npolicies: {}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "textguard",
            "serve",
            "--model",
            str(tiny_artifact),
            "--policy",
            str(bad_policy),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "policies: List should have at least 1 item" in result.stderr or "at least 1" in result.stderr


def test_a_tampered_local_model_fails_at_start_in_one_line(tiny_artifact_copy: Path, tmp_path: Path) -> None:
    weights = tiny_artifact_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    result = subprocess.run(
        [sys.executable, "-m", "textguard", "serve", "--model", str(tiny_artifact_copy), "--port", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.safetensors does not match" in lines[0], result.stderr


@pytest.mark.slow
def test_several_workers_share_settings_from_the_environment(tiny_artifact: Path, tmp_path: Path) -> None:
    port = free_port()
    process = _serve(
        ["--model", str(tiny_artifact), "--port", str(port), "--workers", "2",
         "--audit-url", f"sqlite:///{tmp_path / 'audit.db'}", "--max-text-chars", "10"],
        cwd=tmp_path,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        _readiness_until_ready(base_url, process)
        responses = [
            httpx.post(f"{base_url}/v1/score", json={"messages": [{"id": "1", "text": "x" * 11}]})
            for _ in range(8)
        ]
        if sys.platform.startswith("linux"):
            held = _connections_per_listening_process(process.pid, port)
    finally:
        code, output = _stop(process)
    # Whichever worker answers, it applies the flag given to the parent process.
    assert {response.status_code for response in responses} == {422}
    if sys.platform.startswith("linux"):
        # Each process listens on a socket of its own (SO_REUSEPORT): 32 connections opened together
        # reach both (all on one: odds of 2**-31), where a shared socket gave the first to wake most.
        assert len(held) == 2 and min(held) > 0 and sum(held) == 32, held
    assert code in (0, -signal.SIGTERM)
    assert output.count('"service starting"') == 2
