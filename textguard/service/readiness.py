"""What /readyz checks besides the model: that the audit store can take a write, and what it may say.

- `AuditProbe` runs the store's `health()` in a thread, one probe at a time, and reuses an answer for a
  second: a probe every few hundred milliseconds from several kubelets costs one cheap check, and a
  store that hangs never piles up threads (later probes wait on the one in flight, up to a timeout).
- `redact_paths` hides filesystem paths in the reasons /readyz gives to callers without an admin key:
  the full reason is in the server log and in /readyz for admin keys.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

#: Seconds an answer is reused, and the longest a probe may take before /readyz reports it.
PROBE_TTL_S = 1.0
PROBE_TIMEOUT_S = 2.0

#: An absolute path: a `/` that starts a token (not inside a URL or a `models:/` URI) and what follows.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\",;()\[\]]+")


def redact_paths(message: str) -> str:
    return _ABSOLUTE_PATH.sub("<path>", message)


class AuditProbe:
    def __init__(self, store: Any, ttl_s: float = PROBE_TTL_S, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._task: asyncio.Task[str | None] | None = None
        self._answer: tuple[float, str | None] | None = None

    async def problem(self) -> str | None:
        """None when the audit store can take a write now, else why not."""
        if self._answer is not None and time.monotonic() - self._answer[0] < self.ttl_s:
            return self._answer[1]
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(asyncio.to_thread(self.store.health, self.timeout_s / 2))
        try:
            problem = await asyncio.wait_for(asyncio.shield(self._task), self.timeout_s)
        except TimeoutError:
            return f"the audit store did not answer a health check within {self.timeout_s:g} s"
        except Exception as exc:  # a driver's own exception type: report it, never fail the probe
            problem = f"the audit store health check failed ({type(exc).__name__})"
        self._answer = (time.monotonic(), problem)
        return problem
