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
- a request admitted on an estimate that turned out wrong is refused (503) rather than scored when its
  drain starts too late to end within the same share of the time it has left, so nothing is answered
  past its deadline by more than the work after scoring.

A client that comes back before the `Retry-After` of its last refusal (on a scoring route; the client is
the connection, or the address a trusted proxy forwarded) waits out the rest of it, up to
`retry_hold_ms`, and its request is then considered as if it arrived at that moment, its deadline
counted from then (`EarlyReturns`). Refusals are cheap but not free: clients that resend at once
drew 700-10,000 refusals a second from one process, whose event loop then took the GIL from the
inference threads, and admitted requests were answered seconds past their deadline (README,
Performance). Held, such a client costs one refusal per `Retry-After`, like one that honours it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textguard.service.errors import InvalidInput, Overloaded, error_response

__all__ = [
    "ADMISSION_SHARE",
    "DEADLINE_HEADER",
    "AdmissionGate",
    "DeadlineMiddleware",
    "EarlyReturns",
    "current_deadline",
    "deadline_after",
    "retry_after",
]

#: Share of the time left before a request's deadline that the estimate may fill; the rest is slack for
#: the estimate's error and the response's way out.
ADMISSION_SHARE = 0.75
#: Longest Retry-After a refusal suggests (seconds).
MAX_RETRY_AFTER_S = 30.0

DEADLINE_HEADER = "X-Deadline-Ms"
_HEADER_KEY = DEADLINE_HEADER.lower().encode("latin-1")

#: Absolute deadline of the request being handled (time.perf_counter() seconds); None = no deadline.
current_deadline: ContextVar[float | None] = ContextVar("textguard_deadline", default=None)


def deadline_after(milliseconds: float, start: float | None = None) -> float:
    """The absolute deadline `milliseconds` after `start` (default: now), on time.perf_counter()'s clock."""
    return (time.perf_counter() if start is None else start) + milliseconds / 1000.0


class DeadlineMiddleware:
    """Sets `current_deadline` for each HTTP request (the setting's default or the client's header) and,
    for the scoring routes, asks the admission gate before the body is read: when the work already
    admitted cannot be answered within this request's deadline, it is refused before it costs anything."""

    def __init__(
        self,
        app: ASGIApp,
        default_ms: int,
        min_ms: int,
        max_ms: int,
        gate: AdmissionGate | None = None,
        scored_paths: frozenset[str] = frozenset(),
        retry_hold_ms: int = 0,
    ) -> None:
        self.app = app
        self.default_ms = default_ms
        self.min_ms = min_ms
        self.max_ms = max_ms
        self.gate = gate
        self.scored_paths = scored_paths
        self.early = EarlyReturns(retry_hold_ms / 1000) if retry_hold_ms > 0 else None

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
        gate = self.gate if scope.get("path") in self.scored_paths else None
        early = self.early if gate is not None else None
        # The ASGI spec allows any two-item iterable here (uvicorn gives a tuple, others a list).
        client = tuple(scope["client"]) if scope.get("client") else None
        if early is not None:
            hold = early.hold(client, start)
            if hold > 0:
                # Back before its Retry-After: the request arrives, for its deadline too, when that ends.
                await asyncio.sleep(hold)
                start = time.perf_counter()
        deadline = deadline_after(milliseconds, start)
        token = current_deadline.set(deadline)
        try:
            estimate = None
            status = 0

            async def send_noting_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    if early is not None and status == 503:
                        early.refused(client, _retry_after_header(message), time.perf_counter())
                await send(message)

            if gate is not None:
                try:
                    estimate = gate.enter(deadline)
                except Overloaded as error:
                    # No route has matched yet: name it for the metrics and the access log.
                    scope.setdefault("state", {})["route_path"] = scope.get("path")
                    await error_response(error)(scope, receive, send_noting_status)
                    return
            try:
                await self.app(scope, receive, send_noting_status if gate is not None else send)
            finally:
                if gate is not None:
                    # Only answered requests measure the estimate (a refusal at `admit` is quick).
                    gate.leave(start, estimate if status == 200 else None)
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


class AdmissionGate:
    """Admission by deadline at the front of the service, before any work (used from the event loop only).

    It counts the work admitted and not yet answered: messages in the decision path (language and context,
    scoring, audit write) and scoring requests whose body is still being read and validated (each counted
    as the average request's messages), and it measures how many messages per second the service answers
    while it is busy. A request whose estimated answer time, (work ahead + its own) / rate, is past
    `share` of the time left to its deadline is refused at once with `Overloaded` and a Retry-After of the
    time the work ahead needs: once before its body is read (`enter`: the work ahead only), once more
    when its messages are known (`admit`). Until a busy period has been measured there is no estimate
    and requests are admitted.
    """

    #: Busy time a rate sample spans: long enough to hold several requests' completions.
    SAMPLE_S = 0.25

    def __init__(self, share: float = ADMISSION_SHARE, on_refusal: Callable[[], None] | None = None) -> None:
        self.share = share
        self.on_refusal = on_refusal
        self.requests = 0  # scoring requests between `enter` and `leave` (HTTP)
        self.deciding = 0  # requests between `admit` and `done` (HTTP and WebSocket)
        self.in_flight = 0  # their messages
        self.rate: float | None = None  # messages answered per busy second
        self._messages_per_request = 1.0
        self._changed_at = time.perf_counter()
        self._busy = 0.0  # busy seconds since the last sample
        self._done = 0  # messages answered since the last sample
        #: How much longer requests admitted with work ahead took than estimated (moving average, 1-4):
        #: the rate covers the decision path, not the event loop's time to read and answer requests,
        #: which grows with the work admitted (answered p99 1.36 s against a 1 s deadline without it).
        self.slowdown = 1.0

    def seconds_ahead(self) -> float:
        """Estimated time to answer the work admitted now (0 without an estimate)."""
        if self.rate is None:
            return 0.0
        unread = max(0, self.requests - self.deciding) * self._messages_per_request
        return (self.in_flight + unread) / self.rate

    def enter(self, deadline: float | None) -> float | None:
        """A scoring request whose body is not read yet: refuse it if the work ahead already misses its
        deadline, else count it in (`leave` when it is answered). Returns the seconds estimated for it
        (None without an estimate or with nothing ahead), for `leave`."""
        now = time.perf_counter()
        estimate = self._check(deadline, now, self._messages_per_request)
        self._tick(now)
        self.requests += 1
        return estimate

    def leave(self, entered: float | None = None, estimate: float | None = None) -> None:
        """A request counted in by `enter` (at `entered`, estimated `estimate` seconds) was answered."""
        now = time.perf_counter()
        self._tick(now)
        self.requests -= 1
        if entered is not None and estimate:
            ratio = min(4.0, max(1.0, (now - entered) / estimate))
            self.slowdown = 0.8 * self.slowdown + 0.2 * ratio

    def admit(self, messages: int) -> None:
        """Refuse (Overloaded) or count `messages` in; the caller must call `done(messages)` after."""
        now = time.perf_counter()
        self._messages_per_request = 0.9 * self._messages_per_request + 0.1 * messages
        # This request's own unread estimate is replaced by its real message count.
        self._check(current_deadline.get(), now, messages, counted=self.requests > self.deciding)
        self._tick(now)
        self.deciding += 1
        self.in_flight += messages

    def done(self, messages: int) -> None:
        now = time.perf_counter()
        self._tick(now)
        self.deciding -= 1
        self.in_flight -= messages
        self._done += messages
        if self._busy >= self.SAMPLE_S:
            sample = self._done / self._busy
            self.rate = sample if self.rate is None else 0.7 * self.rate + 0.3 * sample
            self._busy = 0.0
            self._done = 0

    def _check(
        self, deadline: float | None, now: float, messages: float, counted: bool = False
    ) -> float | None:
        """Refuse (Overloaded) a request that would miss its deadline; else the seconds the rate alone
        estimates for it (None with no estimate or nothing ahead), which `leave` compares with its time."""
        if deadline is None or self.rate is None:
            return None
        ahead = self.seconds_ahead()
        if counted:
            ahead = max(0.0, ahead - self._messages_per_request / self.rate)
        if ahead == 0.0:
            return None  # nothing ahead: the request is answered as fast as this server can
        estimate = ahead + messages / self.rate
        # Scaled by how much longer than estimated recent requests took (`leave`).
        ahead *= self.slowdown
        needed = estimate * self.slowdown
        allowed = self.share * (deadline - now)
        if needed > allowed:
            if self.on_refusal is not None:
                self.on_refusal()
            raise Overloaded(
                f"the request cannot be answered within its deadline (about {needed * 1000:.0f} ms "
                f"needed, {max(0.0, allowed) * 1000:.0f} ms available); retry later, send fewer "
                "messages per request or allow a longer deadline",
                retry_after=retry_after(ahead),
            )
        return estimate

    def _tick(self, now: float) -> None:
        if self.requests > 0 or self.in_flight > 0:
            self._busy += now - self._changed_at
        self._changed_at = now


class EarlyReturns:
    """Clients refused with a `Retry-After`, and how long a request of theirs that comes back before it
    is held (at most `max_hold_s`). Bounded: past `capacity` clients, expired entries are dropped, and
    while it is still full nobody new is recorded (nobody is held rather than somebody wrongly)."""

    def __init__(self, max_hold_s: float, capacity: int = 65_536) -> None:
        self.max_hold_s = max_hold_s
        self.capacity = capacity
        self._until: dict[Hashable, float] = {}

    def refused(self, client: Hashable, retry_after_s: float | None, now: float) -> None:
        """`client` was refused at `now` and told to come back after `retry_after_s` seconds."""
        if client is None or not retry_after_s:
            return
        if len(self._until) >= self.capacity and client not in self._until:
            self._until = {key: until for key, until in self._until.items() if until > now}
            if len(self._until) >= self.capacity:
                return
        self._until[client] = now + retry_after_s

    def hold(self, client: Hashable, now: float) -> float:
        """Seconds a request of `client` arriving at `now` waits (0 when it honoured its Retry-After)."""
        until = self._until.get(client)
        if until is None:
            return 0.0
        if until <= now:
            del self._until[client]
            return 0.0
        return min(until - now, self.max_hold_s)


def _retry_after_header(message: Message) -> float | None:
    for name, value in message.get("headers", []):
        if name.lower() == b"retry-after":
            text = value.decode("latin-1").strip()
            return float(text) if text.isdigit() else None
    return None


def retry_after(seconds_ahead: float) -> float:
    """When the work ahead will have drained: what a refused client should wait (1 s to 30 s)."""
    return min(MAX_RETRY_AFTER_S, max(1.0, seconds_ahead))
