"""Crash safety of the audit trail: a decision a client received is on disk, whatever happens next.

- store level: a writer process is SIGKILLed right after commits it reported; every reported commit
  is in the database when it is reopened;
- service level: `textguard serve` (a real process) is SIGKILLed under concurrent /v1/score load and
  restarted; every decision any client received is in the audit store (matched by keyed message-id
  hash), and the restarted server serves and audits again;
- graceful stop: SIGTERM while requests are in flight; every one of them completes with a decision,
  and the process exits cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_support import free_port
from sqlalchemy import select

from textguard.audit import AuditStore, decisions_table
from textguard.paths import project_root

KEY = "crash-test-hash-key"
WORDS = [
    "can",
    "you",
    "share",
    "your",
    "screen",
    "please",
    "the",
    "meeting",
    "starts",
    "in",
    "five",
    "minutes",
]


def stored_message_hashes(db: Path) -> set[str]:
    store = AuditStore(f"sqlite:///{db}", hash_key=KEY, create=False)
    try:
        with store.engine.connect() as connection:
            return set(connection.execute(select(decisions_table.c.message_hash)).scalars())
    finally:
        store.close()


def hashes_of(message_ids: list[str]) -> set[str]:
    store = AuditStore("sqlite://", hash_key=KEY, create=False)
    return {store.hash_message_id(message_id) for message_id in message_ids}


def test_commits_a_writer_reported_survive_its_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    writer = textwrap.dedent(
        f"""
        import sys
        from textguard.audit import AuditRecord, AuditStore
        store = AuditStore("sqlite:///{db}", hash_key="{KEY}")
        scores = {{"violent_threat": 0.1, "extremist_glorification": 0.1, "hate_dehumanization": 0.1}}
        n = 0
        while True:
            ids = [f"m{{n}}-{{k}}" for k in range(3)]
            store.record_sync([AuditRecord(text="x", scores=scores, labels=[], action="allow", model_name="t",
                                           model_version="1", policy="default", message_id=i) for i in ids])
            print(" ".join(ids), flush=True)
            n += 1
        """
    )
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    reported: list[str] = []
    assert process.stdout is not None
    try:
        while len(reported) < 150:
            line = process.stdout.readline()
            assert line, "the writer died before committing anything"
            reported.extend(line.split())
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    assert process.returncode == -signal.SIGKILL
    assert hashes_of(reported) <= stored_message_hashes(db)


# -- the real service --------------------------------------------------------------------------------


class ServeProcess:
    def __init__(self, artifact: Path, db: Path, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        key_file = workdir / "hash.key"
        key_file.write_text(KEY, encoding="utf-8")
        command = [
            sys.executable,
            "-m",
            "textguard",
            "serve",
            "--model",
            str(artifact),
            "--port",
            str(self.port),
        ]
        command += ["--audit-url", f"sqlite:///{db}", "--audit-hash-key-file", str(key_file)]
        command += [
            "--model-poll-seconds",
            "0",
            "--no-warmup",
            "--log-level",
            "warning",
            "--max-queue",
            "4096",
        ]
        command += ["--policy", str(project_root() / "configs/policies/default.yaml")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTGUARD_")}
        self.log = (workdir / f"serve-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited early ({self.process.returncode})"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise AssertionError("the server did not become ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
        self.log.close()


@pytest.fixture
def serve(tiny_artifact: Path, tmp_path: Path) -> Iterator[Any]:
    started: list[ServeProcess] = []

    def start(db: Path) -> ServeProcess:
        server = ServeProcess(tiny_artifact, db, tmp_path)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


def message_batch(prefix: str, count: int, words: int) -> dict[str, Any]:
    return {
        "messages": [
            {
                "id": f"{prefix}-{k}",
                "text": " ".join(WORDS[(k + j) % len(WORDS)] for j in range(words)),
                "language": "en",
            }
            for k in range(count)
        ]
    }


async def drive_load(url: str, workers: int, received: list[str], stop: asyncio.Event) -> int:
    """Concurrent clients sending /v1/score until the server goes away; returns failed requests."""
    failures = 0

    async def client(worker: int) -> None:
        nonlocal failures
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            sequence = 0
            while not stop.is_set():
                body = message_batch(f"w{worker}-{sequence}", 4, 12)
                sequence += 1
                try:
                    response = await http.post("/v1/score", json=body)
                except httpx.TransportError:
                    failures += 1
                    return
                if response.status_code == 200:
                    received.extend(result["id"] for result in response.json()["results"])
                else:
                    failures += 1

    await asyncio.gather(*(client(worker) for worker in range(workers)))
    return failures


@pytest.mark.slow
def test_sigkill_under_load_loses_no_decision_a_client_received(serve: Any, tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    server = serve(db)
    received: list[str] = []

    async def scenario() -> int:
        stop = asyncio.Event()
        load = asyncio.create_task(drive_load(server.url, 8, received, stop))
        deadline = time.monotonic() + 60
        while len(received) < 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        server.process.send_signal(signal.SIGKILL)  # mid-load: requests are queued and in flight
        failures = await asyncio.wait_for(load, 60)
        stop.set()
        return failures

    failures = asyncio.run(scenario())
    server.process.wait(30)
    assert server.process.returncode == -signal.SIGKILL
    assert len(received) >= 200 and failures > 0, "the kill did not land mid-load"
    missing = hashes_of(received) - stored_message_hashes(db)
    assert not missing, f"{len(missing)} of {len(received)} answered decisions are not in the audit store"

    # The restarted server recovers the database (WAL replay) and keeps auditing.
    restarted = serve(db)
    response = httpx.post(f"{restarted.url}/v1/score", json=message_batch("after-restart", 2, 5), timeout=30)
    assert response.status_code == 200
    assert hashes_of(["after-restart-0", "after-restart-1"]) <= stored_message_hashes(db)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    report = httpx.get(
        f"{restarted.url}/v1/transparency/report", params={"since": today, "until": today}, timeout=30
    ).json()
    assert report["totals"]["decisions"] >= len(received) + 2


REQUESTS = 8


@pytest.mark.slow
def test_sigterm_drains_requests_in_flight(serve: Any, tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    server = serve(db)

    async def scenario() -> tuple[list[httpx.Response], float]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            bodies = [message_batch(f"drain{n}", 48, 40) for n in range(REQUESTS)]
            tasks = [asyncio.create_task(http.post("/v1/score", json=body)) for body in bodies]
            finished_at: dict[int, float] = {}

            def finished(index: int) -> Callable[[object], None]:
                def note(_task: object) -> None:
                    finished_at.setdefault(index, time.monotonic())

                return note

            for index, task in enumerate(tasks):
                task.add_done_callback(finished(index))
            # Terminate as soon as the first answer shows the server is busy with the others.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            terminated_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            responses = await asyncio.gather(*tasks)
            return responses, max(finished_at.values()) - terminated_at

    responses, last_after_term = asyncio.run(scenario())
    # uvicorn re-raises the signal once it has shut down gracefully, so -SIGTERM is a clean exit too.
    assert server.process.wait(60) in (0, -signal.SIGTERM)
    assert [response.status_code for response in responses] == [200] * REQUESTS
    assert last_after_term > 0, "every request finished before SIGTERM: nothing was in flight"
    answered = [result["id"] for response in responses for result in response.json()["results"]]
    assert len(answered) == REQUESTS * 48
    assert hashes_of(answered) <= stored_message_hashes(db)
