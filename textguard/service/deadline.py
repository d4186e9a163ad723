"""Admission by deadline: every request has a time by which it must be answered, or it is refused at once.

A request's deadline is `deadline_ms` after it reached the app (a setting), or what the client asks for
in the `X-Deadline-Ms` header, within [`deadline_min_ms`, `deadline_max_ms`] (outside those bounds, or
not a whole number: a 422 naming the header). Each caption segment of a WebSocket stream gets
`deadline_ms` from the moment its frame arrived.

The deadline travels in a context variable (`current_deadline`), so the one decision path
(`textguard.moderation.Moderator`) stays unaware of it; the micro-batcher reads it when the request's
texts are queued (textguard.service.batcher):

- admission: from the measured scoring rate (texts per second, a moving average over recent drains),
  the work still in the forward pass now and the texts queued ahead, the batcher estimates when this
  request's scores would be ready. If that is later than the deadline (less a share kept for the work
  after scoring: audit write, response), the request is refused at once: 503 `overloaded` with a
  `Retry-After` of the time the work ahead needs to drain (at least 1 s). It is never queued for seconds.
- a request admitted on an estimate that turned out wrong is refused (503) rather than scored once its
  deadline has passed while it waited, so nothing is answered far past its deadline.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

from textguard.service.errors import InvalidInput, error_response

__all__ = ["DEADLINE_HEADER", "DeadlineMiddleware", "current_deadline", "deadline_after"]

DEADLINE_HEADER = "X-Deadline-Ms"
_HEADER_KEY = DEADLINE_HEADER.lower().encode("latin-1")

#: Absolute deadline of the request being handled (time.perf_counter() seconds); None = no deadline.
current_deadline: ContextVar[float | None] = ContextVar("textguard_deadline", default=None)


def deadline_after(milliseconds: float, start: float | None = None) -> float:
    """The absolute deadline `milliseconds` after `start` (default: now), on time.perf_counter()'s clock."""
    return (time.perf_counter() if start is None else start) + milliseconds / 1000.0


class DeadlineMiddleware:
    """Sets `current_deadline` for each HTTP request: the setting's default or the client's header."""

    def __init__(self, app: ASGIApp, default_ms: int, min_ms: int, max_ms: int) -> None:
        self.app = app
        self.default_ms = default_ms
        self.min_ms = min_ms
        self.max_ms = max_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        milliseconds = self.default_ms
        for name, value in scope.get("headers", []):
            if name == _HEADER_KEY:
                try:
                    milliseconds = self.parse(value.decode("latin-1"))
                except InvalidInput as error:
                    await error_response(error)(scope, receive, send)
                    return
        token = current_deadline.set(deadline_after(milliseconds, start))
        try:
            await self.app(scope, receive, send)
        finally:
            current_deadline.reset(token)

    def parse(self, text: str) -> int:
        text = text.strip()
        if not text.isascii() or not text.isdigit():
            raise InvalidInput(
                f"{DEADLINE_HEADER} must be a whole number of milliseconds", field=DEADLINE_HEADER
            )
        value = int(text) if len(text) <= 12 else self.max_ms + 1
        if not self.min_ms <= value <= self.max_ms:
            raise InvalidInput(
                f"{DEADLINE_HEADER} must be between {self.min_ms} and {self.max_ms} (got {value})",
                field=DEADLINE_HEADER,
            )
        return value
