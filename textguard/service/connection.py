"""Connection hygiene under uvicorn: what a client may hold before it has sent a whole request.

uvicorn (0.55, httptools parser) has no limit on header size or count and no header or body read
timeout: a 100 MB header is buffered and answered, and a client that trickles headers or never
finishes a chunked body holds its connection (and, on SIGTERM, the shutdown) indefinitely. Its
`limit_concurrency` and its drain-timeout cancellation answer in plain text. This module closes those
gaps in one place, `GuardedHttpToolsProtocol`, a subclass of uvicorn's httptools protocol:

- headers: at most `max_header_bytes` (request line + fields) and `max_headers` fields, else a 431;
  counted as the bytes arrive, so an oversized header costs at most one socket read of memory;
- header timeout: from the connection (or the first byte of a keep-alive request) to the last header,
  `header_timeout_seconds`, else a 408 and the connection closes (slowloris);
- body timeout: from the last header to the end of the body, `body_timeout_seconds`, total, not per
  chunk (a body trickled one byte at a time is still bounded), else a 408 and close;
- connections: more than `max_connections` open connections or requests in progress -> a JSON 503
  `overloaded` with Retry-After and `Connection: close`;
- shutdown (SIGTERM): idle connections close at once; a request still receiving its body gets until
  half the drain timeout, then a JSON 503; requests still running when uvicorn's drain timeout
  (`drain_timeout_seconds`) cancels them answer a JSON 503 instead of uvicorn's plain-text 500.
  Nothing this module or uvicorn sends is a non-JSON error.

Every refusal here is written straight to the socket as the service's JSON error body (the app is not
running yet, or not any more) with `Connection: close`.

`uvicorn_options(settings)` is how `textguard serve` (and the tests' live servers) start uvicorn. Run
uvicorn by hand with `--http textguard.service.connection:GuardedHttpToolsProtocol --no-proxy-headers`
(the limits then come from TEXTGUARD_* variables); docs/serving.md has the settings for proxies.
"""

from __future__ import annotations

import asyncio
import functools
import http
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from textguard.service.errors import error_body

if TYPE_CHECKING:
    from textguard.service.settings import ServiceSettings

logger = logging.getLogger("textguard.service.connection")

PROTOCOL_PATH = "textguard.service.connection:GuardedHttpToolsProtocol"

Phase = Literal["idle", "headers", "body", "upgraded"]


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 16_384
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 1000
    drain_timeout_s: float = 20.0

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> ConnectionLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout_s=settings.header_timeout_seconds,
            body_timeout_s=settings.body_timeout_seconds,
            max_connections=settings.max_connections,
            drain_timeout_s=float(settings.drain_timeout_seconds),
        )


@functools.cache
def _limits_from_environment() -> ConnectionLimits:
    """Worker processes (`--workers N`, or uvicorn started by hand) read their limits from TEXTGUARD_*."""
    from textguard.service.settings import ServiceSettings

    return ConnectionLimits.from_settings(ServiceSettings())


def error_bytes(status: int, kind: str, message: str, retry_after: int | None = None) -> bytes:
    """A complete HTTP/1.1 response carrying the service's JSON error body, closing the connection."""
    body = json.dumps(error_body(kind, message)).encode("utf-8")
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        lines.append(f"retry-after: {retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header/body limits and timeouts (see the module docstring)."""

    #: Set on a subclass by `protocol_class`; None = read from TEXTGUARD_* in this process.
    limits: ClassVar[ConnectionLimits | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = type(self).limits or _limits_from_environment()
        self.app = _Admission(self.app, self)
        self._phase: Phase = "idle"
        self._header_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._closed_by_guard = False
        self._draining = False

    # -- timers ------------------------------------------------------------------------------------

    def _arm(self, seconds: float, on_expiry: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.time() + seconds
        self._timer = self.loop.call_later(seconds, on_expiry)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_too_slow(self) -> None:
        self._timer = None
        self._refuse(
            408, "request_timeout", f"the request headers took over {self.guard.header_timeout_s:g} s"
        )

    def _body_too_slow(self) -> None:
        self._timer = None
        if self._draining:
            self._refuse(
                503, "not_ready", "the server is shutting down; send the request again", retry_after=1
            )
        else:
            self._refuse(
                408, "request_timeout", f"the request body took over {self.guard.body_timeout_s:g} s"
            )

    # -- refusing ------------------------------------------------------------------------------------

    def _refuse(self, status: int, kind: str, message: str, retry_after: int | None = None) -> None:
        """Answer with a JSON error if nothing has been answered for this request yet, then close."""
        if self._closed_by_guard or self.transport.is_closing():
            return
        self._closed_by_guard = True
        self._disarm()
        cycle = self.cycle
        # A request the app already answered in full while its body was still arriving (the deadline gate
        # refuses before reading the body) gets no second response: the connection just closes.
        answered_early = cycle is not None and cycle.response_complete and self._phase == "body"
        if cycle is None or not cycle.response_started or (cycle.response_complete and not answered_early):
            self.transport.write(error_bytes(status, kind, message, retry_after))
        if cycle is not None and not cycle.response_complete:
            # As if the client had left: the app's receive() returns http.disconnect, its send() is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        if status >= 500 or status == 431:
            logger.warning("connection refused", extra={"fields": {"status": status, "reason": kind}})
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """An unparseable request: the JSON error body instead of uvicorn's plain text."""
        self._refuse(400, "bad_request", "the request is not valid HTTP/1.1")

    # -- the protocol ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.guard.header_timeout_s, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._closed_by_guard:
            return
        if self._phase in ("idle", "headers"):
            if self._timer is None:  # the first byte of the next request on a kept-alive connection
                self._arm(self.guard.header_timeout_s, self._headers_too_slow)
            self._header_bytes += len(data)
        super().data_received(data)
        if self._phase in ("idle", "headers") and self._header_bytes > self.guard.max_header_bytes:
            self._refuse(431, "headers_too_large", self._headers_message())

    def on_message_begin(self) -> None:
        self._phase = "headers"
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if self._closed_by_guard:
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if len(self.headers) > self.guard.max_headers or size > self.guard.max_header_bytes:
            self._refuse(431, "headers_too_large", self._headers_message())
            return
        self._phase = "body"
        self._header_bytes = 0
        self._arm(self.guard.body_timeout_s, self._body_too_slow)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._closed_by_guard:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._closed_by_guard:
            return
        self._phase = "idle"
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        if self._closed_by_guard:
            return
        self._phase = "upgraded"
        self._disarm()  # the WebSocket protocol owns the transport from here
        super().handle_websocket_upgrade()

    def shutdown(self) -> None:
        """SIGTERM: close idle connections now; give a request still receiving its body a short grace."""
        self._draining = True
        if self._phase == "body" and not self._closed_by_guard:
            grace = min(self._deadline - self.loop.time(), self.guard.drain_timeout_s / 2)
            self._arm(max(0.0, grace), self._body_too_slow)
        if self._phase == "headers":
            self._refuse(
                503, "not_ready", "the server is shutting down; send the request again", retry_after=1
            )
            return
        super().shutdown()

    def _headers_message(self) -> str:
        return (
            f"the request headers exceed {self.guard.max_header_bytes} bytes or {self.guard.max_headers} "
            "fields; send fewer or shorter headers"
        )


class _Admission:
    """Wraps the ASGI app for each request: the connection cap, and a JSON 503 for a request cancelled
    by the drain timeout before it answered (uvicorn would send a plain-text 500)."""

    def __init__(self, app: Callable[..., Awaitable[None]], protocol: GuardedHttpToolsProtocol) -> None:
        self.app = app
        self.protocol = protocol

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        protocol = self.protocol
        cap = protocol.guard.max_connections
        # The current connection and task are counted already, hence `>`.
        if len(protocol.connections) > cap or len(protocol.tasks) > cap:
            await _send_error(send, 503, "overloaded", "too many open connections; retry shortly", 1)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if not started:
                message = "the server is shutting down; the request was not completed, send it again"
                await _send_error(send, 503, "not_ready", message, 1)
            raise


async def _send_error(send: Any, status: int, kind: str, message: str, retry_after: int | None) -> None:
    body = json.dumps(error_body(kind, message)).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"connection", b"close"),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def protocol_class(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


def uvicorn_options(settings: ServiceSettings, *, in_process: bool = True) -> dict[str, Any]:
    """uvicorn.run / uvicorn.Config keyword arguments for these settings.

    `in_process=False` (worker processes) names the protocol by import path: its limits then come from
    the TEXTGUARD_* environment the workers inherit.
    """
    return {
        "http": protocol_class(ConnectionLimits.from_settings(settings)) if in_process else PROTOCOL_PATH,
        # X-Forwarded-For is handled inside the app, from `trusted_proxies` only (uvicorn's own
        # middleware would trust 127.0.0.1 by default).
        "proxy_headers": False,
        "timeout_keep_alive": settings.keep_alive_seconds,
        "timeout_graceful_shutdown": settings.drain_timeout_seconds,
        # The connection cap is GuardedHttpToolsProtocol's (uvicorn's answers in plain text).
        "limit_concurrency": None,
    }
