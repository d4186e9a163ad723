"""API keys (Bearer, stored as sha256 digests) and a per-client token-bucket rate limit.

Keys are random high-entropy strings, so a plain sha256 is enough to store them (no password
stretching needed) and the server never holds a plaintext key. Comparison uses
`hmac.compare_digest` against every stored digest, so timing reveals neither a match nor its position.
Clients are identified by a short prefix of their key digest (or by IP when keys are off); that id
goes into logs and rate-limit buckets, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from typing import Annotated

from fastapi import Depends
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textguard.service.errors import PayloadTooLarge, RateLimited, Unauthorized, error_response

API_KEY_PREFIX = "tg_"


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeyAuth:
    def __init__(self, digests: frozenset[str]) -> None:
        self._digests = tuple(sorted(digests))

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def client_id(self, authorization: str | None, client_host: str | None) -> str:
        """The caller's id for logs and rate limits; Unauthorized when keys are on and this one fails."""
        if not self.enabled:
            return f"ip:{client_host or 'unknown'}"
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
        try:
            digest = api_key_digest(token)
        except UnicodeEncodeError:
            raise Unauthorized("invalid API key") from None
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        if not matched:
            raise Unauthorized("invalid API key")
        return f"key:{digest[:12]}"


class TokenBucketLimiter:
    """`per_minute` requests per client, refilled continuously, bursting up to one minute's worth.

    Used from the event loop only (one thread), so no lock. The client table is bounded: the least
    recently seen clients are forgotten first, which at worst gives a forgotten client a fresh bucket.
    """

    def __init__(self, per_minute: int, max_clients: int = 10_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def acquire(self, client: str, now: float | None = None) -> float | None:
        """Take one token; None if allowed, else the seconds until a token is available."""
        if not self.enabled:
            return None
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return None if allowed else (1.0 - tokens) / self.rate


async def authorize(connection: HTTPConnection) -> str:
    """Dependency of every /v1 route: authenticate, then spend a rate-limit token; returns the client id."""
    # HTTPConnection, not Request: the same check guards the caption WebSocket (refused before accept).
    auth: ApiKeyAuth = connection.app.state.auth
    client = auth.client_id(
        connection.headers.get("authorization"), connection.client.host if connection.client else None
    )
    connection.state.client_id = client
    limiter: TokenBucketLimiter = connection.app.state.rate_limiter
    wait = limiter.acquire(client)
    if wait is not None:
        raise RateLimited(
            f"rate limit of {int(limiter.capacity)} requests per minute exceeded; retry later",
            retry_after=wait,
        )
    return client


#: `client: Client` in a route signature = authenticated and rate limited.
Client = Annotated[str, Depends(authorize)]


class BodyTooLarge(HTTPException):
    """Raised from `receive` while the body streams in; FastAPI re-raises HTTPExceptions from body reading,
    so the app's handler answers it as a JSON 413."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes`: at once when Content-Length says so, else while reading.

    Counting the received bytes matters because Content-Length can be absent (chunked) or lie.
    (FastAPI's own `max_body_size` answers in plain text, outside the one error format.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    response = error_response(PayloadTooLarge(self._message()))
                    await response(scope, receive, send)
                    return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return f"the request body exceeds {self.max_bytes} bytes; send fewer or shorter messages"
