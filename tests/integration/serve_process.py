"""`textguard serve` as a real child process for the robustness tests: its own process group, logs in a
file, bounded start and stop, and its resident memory sampled with psutil.

(serve_support.live_server runs uvicorn in a thread of the test process; these tests need the server's
memory, logs and signals on their own, so they use a separate process.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
from serve_support import free_port

from textguard.paths import project_root

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


class ServeProcess:
    """One `python -m textguard serve` on 127.0.0.1 with TEXTGUARD_* taken only from `env`."""

    def __init__(
        self, model: Path, workdir: Path, args: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = workdir / f"serve-{self.port}.log"
        command = [
            sys.executable,
            "-m",
            "textguard",
            "serve",
            "--model",
            str(model),
            "--port",
            str(self.port),
        ]
        command += ["--policy", str(project_root() / "configs/policies/default.yaml")]
        command += args or []
        environment = {k: v for k, v in os.environ.items() if not k.startswith("TEXTGUARD_")}
        environment.update(env or {})
        self._log = self.log_path.open("wb")
        # A process group of its own: stop() reaches anything the server starts, and nothing else.
        self.process = subprocess.Popen(
            command,
            cwd=workdir,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ps = psutil.Process(self.process.pid)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited during start-up:\n{self.log()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"the server was not ready within {timeout} s:\n{self.log()[-3000:]}")

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int | None:
        """SIGTERM (graceful), then SIGKILL to the whole group if it has not exited in time."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_S)
        self._log.close()
        return self.process.returncode


@contextlib.contextmanager
def serve_process(
    model: Path, workdir: Path, args: list[str] | None = None, env: dict[str, str] | None = None
) -> Iterator[ServeProcess]:
    server = ServeProcess(model, workdir, args, env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


class RssSampler:
    """Samples a process's RSS every `interval` seconds in a thread (at most `max_samples` samples)."""

    def __init__(self, process: ServeProcess, interval: float = 0.02, max_samples: int = 200_000) -> None:
        self.process = process
        self.interval = interval
        self.max_samples = max_samples
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.samples) < self.max_samples:
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic(), self.process.rss()))
            self._stop.wait(self.interval)

    def peak_since(self, since: float) -> int:
        values = [rss for at, rss in self.samples if at >= since]
        return max(values, default=self.process.rss())
