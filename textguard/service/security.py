"""Who is calling: API keys (Bearer, stored as sha256 digests) -> an authenticated `Principal`.

Keys are random high-entropy strings, so a plain sha256 is enough to store them (no password
stretching needed) and the server never holds a plaintext key. Comparison uses
`hmac.compare_digest` against every stored digest, so timing reveals neither a match nor its position.

Every /v1 route depends on `require(scope)`: it authenticates the caller once per request, checks the
scope (403 without it), and, unless the route charges per message itself, spends one unit of the rate
limit (textguard.service.ratelimit.spend). The principal is on `request.state.principal` for handlers
(tenant for audit rows, report scoping); `request.state.client_id` (`key:<id>` or `ip:<address>`, never
a key) goes into logs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from textguard.service.errors import (
    Forbidden,
    PayloadTooLarge,
    ServiceError,
    Unauthorized,
    error_response,
)
from textguard.service.keys import DEFAULT_TENANT, SCOPES, ApiKeyEntry, KeyRegistry
from textguard.service.keys import Scope as KeyScope
from textguard.service.ratelimit import spend

API_KEY_PREFIX = "tg_"


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The caller of one request or WebSocket connection."""

    key_id: str | None  # None: authentication is off (anonymous caller, identified by address)
    tenant: str
    scopes: frozenset[str]
    client_id: str  # `key:<key id>` or `ip:<address>`: logs and rate-limit buckets
    rate_limit_per_minute: int | None = None  # this key's own limit; None = the server's

    @property
    def authenticated(self) -> bool:
        return self.key_id is not None

    def allows(self, scope: KeyScope) -> bool:
        return scope in self.scopes or "admin" in self.scopes


class ApiKeyAuth:
    def __init__(self, registry: KeyRegistry) -> None:
        self._keys: tuple[ApiKeyEntry, ...] = tuple(sorted(registry.keys, key=lambda key: key.sha256))

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, authorization: str | None, client_host: str | None) -> Principal:
        """The principal for an Authorization header; Unauthorized when keys are on and this one fails."""
        if not self.enabled:
            return Principal(None, DEFAULT_TENANT, frozenset(SCOPES), f"ip:{client_host or 'unknown'}")
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
        try:
            digest = api_key_digest(token)
        except UnicodeEncodeError:
            raise Unauthorized("invalid API key") from None
        matched: ApiKeyEntry | None = None
        for known in self._keys:
            if hmac.compare_digest(digest, known.sha256):
                matched = known
        if matched is None:
            raise Unauthorized("invalid API key")
        return Principal(
            matched.id,
            matched.tenant,
            frozenset(matched.scopes),
            f"key:{matched.id}",
            matched.rate_limit_per_minute,
        )

    def client_id(self, authorization: str | None, client_host: str | None) -> str:
        """The caption WebSocket's check (textguard.service.captions): a key with the `score` scope.

        Kept for that caller only; HTTP routes use `require`. (Part 2 of issue 12 moves the WebSocket to
        `authenticate` + `ratelimit.spend` per segment.)
        """
        principal = self.authenticate(authorization, client_host)
        _check_scope(principal, "score")
        return principal.client_id


def _check_scope(principal: Principal, scope: KeyScope | None) -> None:
    if scope is not None and not principal.allows(scope):
        raise Forbidden(f"this API key lacks the {scope!r} scope needed here")


async def authenticate(connection: HTTPConnection) -> Principal:
    """The caller of this request or WebSocket (once per connection scope); Unauthorized if the key fails."""
    principal: Principal | None = getattr(connection.state, "principal", None)
    if principal is not None:
        return principal
    auth: ApiKeyAuth = connection.app.state.auth
    principal = auth.authenticate(
        connection.headers.get("authorization"), connection.client.host if connection.client else None
    )
    connection.state.principal = principal
    connection.state.client_id = principal.client_id
    return principal


def optional_principal(connection: HTTPConnection) -> Principal | None:
    """The authenticated caller if the request carries a valid key, else None (never raises)."""
    auth: ApiKeyAuth = connection.app.state.auth
    if not auth.enabled:
        return None
    try:
        return auth.authenticate(connection.headers.get("authorization"), None)
    except Unauthorized:
        return None


def require(scope: KeyScope | None, *, cost: int = 1) -> Callable[[HTTPConnection], Awaitable[Principal]]:
    """A dependency: authenticate, check `scope` (None: any valid key), then spend `cost` rate-limit units.

    Routes that charge per message use cost=0 and call `ratelimit.spend(request, principal, n)` once
    they know n.
    """

    async def dependency(connection: HTTPConnection) -> Principal:
        principal = await authenticate(connection)
        _check_scope(principal, scope)
        if cost:
            await spend(connection, principal, cost)
        return principal

    return dependency


#: Dependencies as route parameter types: `caller: Caller` (any key, one unit), `caller: ScoreCaller`
#: (score scope; the route spends one unit per message), `ReportCaller` (report scope, one unit).
Caller = Annotated[Principal, Depends(require(None))]
ScoreCaller = Annotated[Principal, Depends(require("score", cost=0))]
ReportCaller = Annotated[Principal, Depends(require("report"))]


class WebSocketAdmission:
    """Authenticates WebSocket handshakes, checks the `score` scope and spends one rate-limit unit per
    connection, refusing with the usual JSON error (HTTP 401/403/429) before the route runs.

    Plain Starlette WebSocket routes do not run FastAPI dependencies, so this is middleware. (Part 2 of
    issue 12 counts each caption segment with `ratelimit.spend` inside the route.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        try:
            await require("score")(websocket)
        except ServiceError as error:
            if "websocket.http.response" in scope.get("extensions", {}):
                await websocket.send_denial_response(error_response(error))
            else:
                await websocket.close(code=1008, reason=error.message[:120])
            return
        await self.app(scope, receive, send)


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
