"""Request bodies are UTF-8 JSON with each key once: `StrictJSONRoute` makes FastAPI parse them so.

Starlette's `Request.json()` is `json.loads(bytes)`, which silently accepts UTF-16 and UTF-32 (it sniffs
the encoding) and keeps the LAST of duplicate keys: `{"text": "have a nice day", "text": "<threat>"}`
would be scored as the threat while a proxy, a log or a WAF that keeps the first value saw the other
text. Both are refused here with a 400 naming the problem. (Surrogates encoded as UTF-8 bytes are let
through, as Starlette does, so the schema's lone-surrogate check names the field they are in.)
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from textguard.service.errors import BadRequest, BodyNotAccepted

#: A key longer than this is cut in the error message (keys are the client's bytes, not ours).
_MAX_KEY_IN_MESSAGE = 64


class DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return result


def parse_json_body(body: bytes) -> Any:
    """The body as JSON, or BodyNotAccepted (400); JSONDecodeError for syntax errors (FastAPI's 400)."""
    if body.startswith(codecs.BOM_UTF8):
        body = body[len(codecs.BOM_UTF8) :]  # a UTF-8 byte-order mark is still UTF-8 (RFC 8259 8.1)
    sniffed = json.detect_encoding(body)
    if sniffed not in ("utf-8", "utf-8-sig"):
        raise BodyNotAccepted(
            BadRequest(f"the body is {sniffed.upper()}, not UTF-8: send UTF-8 encoded JSON")
        )
    try:
        text = body.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise BodyNotAccepted(
            BadRequest(f"the body is not valid UTF-8 (byte {exc.start}): send UTF-8 encoded JSON")
        ) from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except DuplicateKeyError as exc:
        key = exc.key if len(exc.key) <= _MAX_KEY_IN_MESSAGE else exc.key[:_MAX_KEY_IN_MESSAGE] + "..."
        raise BodyNotAccepted(
            BadRequest(f"duplicate key {json.dumps(key)} in a JSON object: send each key once")
        ) from None


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An APIRoute whose request bodies go through `parse_json_body` (set as a router's route_class)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
