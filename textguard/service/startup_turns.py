"""Server processes take turns through their model's first load (`textguard serve --workers N`).

Started together, N processes each load the model (tokenizer, inference worker, weights, warm-up) on
the same cores at once, so none is ready before several start-ups' worth of CPU has been spent, and
until one is, every connection waits in the listening socket's backlog. Taking turns, the first
process is ready after about one start-up and answers everything while the next loads (a process
accepts connections only once its first load has settled: `textguard.service.app`). Measured with
interleaved starts of two processes (README Performance): e5 ready in 3.5 s against 5.0 s, MiniLM 2.7
against 3.0 s. The inference workers inside one process take turns the same way (`ProcessScorer`).

The turn is an exclusive `flock` on a file the parent names in `TEXTGUARD_STARTUP_TURNS`; a process
that dies holding it releases it with its file descriptor. Polled rather than blocking, so that a
process stopped while it waits is not held by a thread stuck in `flock`.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time

#: Path of the lock file the server processes take turns on (set by `textguard serve --workers N`).
ENV = "TEXTGUARD_STARTUP_TURNS"
#: How often a waiting process tries the lock again.
POLL_S = 0.05


class StartupTurn:
    """One process's turn: `await acquire()` (or `acquire_blocking()`) before its first load,
    `release()` once it has settled. Acquiring a turn this process already holds returns at once."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @classmethod
    def from_environment(cls) -> StartupTurn | None:
        path = os.environ.get(ENV)
        return cls(path) if path else None

    async def acquire(self) -> None:
        while not self._try():
            await asyncio.sleep(POLL_S)

    def acquire_blocking(self) -> None:
        """`acquire` for a process whose event loop is not serving yet (`textguard.service.asgi`)."""
        while not self._try():
            time.sleep(POLL_S)

    def _try(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        """Give the turn up (closing the descriptor releases the lock); idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
