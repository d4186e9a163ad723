"""A real uvicorn server on 127.0.0.1 in a background thread, with bounded start and stop."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from textguard.service.connection import uvicorn_options
from textguard.service.settings import ServiceSettings

START_TIMEOUT_S = 60.0


def service_settings(model: Path, tmp_path: Path, **overrides: Any) -> ServiceSettings:
    """Settings of a test service on `model`: its own SQLite audit store under `tmp_path`, a fixed
    audit key, no registry polling; `overrides` on top."""
    values: dict[str, Any] = {
        "model": str(model),
        "audit_url": f"sqlite:///{tmp_path / 'audit.db'}",
        "audit_hash_key": SecretStr("integration"),
        "model_poll_seconds": 0,
        **overrides,
    }
    return ServiceSettings(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(app: FastAPI, *, wait_ready: bool = True) -> Iterator[str]:
    """Serve `app` and yield its base URL; the server stops (and its lifespan shuts down) on exit.

    uvicorn runs with the options `textguard serve` uses (connection limits, proxy headers off).
    """
    options = uvicorn_options(app.state.settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_config=None, access_log=False, **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{config.port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test server exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("the test server did not start")
            time.sleep(0.02)
        if wait_ready:
            wait_until_ready(base_url, deadline)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the test server did not stop within 30 s"


def wait_until_ready(base_url: str, deadline: float) -> None:
    while httpx.get(f"{base_url}/readyz", timeout=5).status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError("the test server never became ready")
        time.sleep(0.05)


def wait_for(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Traffic:
    """Sends one /v1/score request after another from a thread while a test changes the model.

    `results` holds (status, served model version) for answers and (status, body excerpt) for
    failures, kept for the assertion message.
    """

    def __init__(self, base_url: str, body: dict[str, Any]) -> None:
        self.base_url = base_url
        self.body = body
        self.results: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while not self._stop.is_set():
                response = client.post("/v1/score", json=self.body)
                if response.status_code == 200:
                    self.results.append((200, response.json()["model"]["version"]))
                else:
                    self.results.append((response.status_code, response.text[:300]))


def fuzz_settings(max_examples: int) -> Any:
    """Hypothesis settings for the schemathesis tests: derandomised, so CI runs the same cases every time
    (a failure there is reproducible, not luck); TEXTGUARD_FUZZ_EXPLORE=1 draws fresh cases to hunt for
    new failures (`TEXTGUARD_FUZZ_EXPLORE=1 pytest tests/integration/test_serve_fuzz.py`)."""
    import os

    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=not os.environ.get("TEXTGUARD_FUZZ_EXPLORE"),
    )
