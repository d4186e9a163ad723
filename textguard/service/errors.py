"""One map from error kind to HTTP status, and the one error body every endpoint answers with.

    {"error": {"type": "<kind>", "message": "<what to do>", "field": "messages.3.text" | null}}

Client input never produces a 500: malformed JSON and invalid UTF-8 are 400, a body not sent as JSON
415, schema problems 422 naming the field path, oversized bodies 413. Messages never echo request
content (it may be the harmful text itself) and 5xx bodies never carry exception details.
"""

from __future__ import annotations

import logging
import math
import traceback
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from textguard.policy import UnknownPolicyError

logger = logging.getLogger("textguard.service")

#: kind -> HTTP status. The only place statuses are chosen.
STATUS: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "rate_limited": 429,
    "headers_too_large": 431,
    "internal_error": 500,
    "not_ready": 503,
    "overloaded": 503,
    "audit_unavailable": 503,
    "context_unavailable": 503,
    "inference_unavailable": 503,
}
_HTTP_STATUS_KIND = {status: kind for kind, status in reversed(STATUS.items())}


class ServiceError(Exception):
    """An error with a kind (and so a status), a message for the client and optionally a field path."""

    default_kind: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        retry_after: float | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind or self.default_kind
        self.message = message
        self.field = field
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return STATUS[self.kind]

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return headers


class BadRequest(ServiceError):
    default_kind = "bad_request"


class InvalidInput(ServiceError):
    default_kind = "validation_error"


class PayloadTooLarge(ServiceError):
    default_kind = "payload_too_large"


class Unauthorized(ServiceError):
    default_kind = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="textguard"'}


class Forbidden(ServiceError):
    """An authenticated key without the scope this endpoint needs."""

    default_kind = "forbidden"


class NotFound(ServiceError):
    """A resource named in the path (a decision id) does not exist."""

    default_kind = "not_found"


class RateLimited(ServiceError):
    default_kind = "rate_limited"


class Overloaded(ServiceError):
    """The inference queue is full: shed load now rather than answer late (clients retry after a pause)."""

    default_kind = "overloaded"


class NotReady(ServiceError):
    default_kind = "not_ready"


class AuditUnavailable(ServiceError):
    """The audit record could not be written, so no decision is returned (write-before-answer)."""

    default_kind = "audit_unavailable"


class ContextUnavailable(ServiceError):
    """The shared meeting-context store (Redis) did not answer: no decision without the context."""

    default_kind = "context_unavailable"


def error_body(kind: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"type": kind, "message": _encodable(message), "field": _encodable(field)}}


def _encodable(text: str | None) -> str | None:
    """Lone surrogates (JSON \\ud800 escapes in a key or value) escaped: the body must encode as UTF-8."""
    return None if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(error: ServiceError) -> JSONResponse:
    return JSONResponse(
        error_body(error.kind, error.message, error.field), status_code=error.status, headers=error.headers()
    )


def field_path(loc: tuple[int | str, ...] | list[int | str]) -> str | None:
    """('body', 'messages', 3, 'text') -> 'messages.3.text'; the request part (body/query) is dropped."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        location = parts.pop(0)
        if not parts:
            return str(location)
    return ".".join(str(part) for part in parts) or None


def from_validation_error(exc: RequestValidationError) -> ServiceError:
    errors = list(exc.errors())
    if not errors:
        return InvalidInput("the request does not match the schema")
    first = errors[0]
    if tuple(first.get("loc", ())) == ("body",) and isinstance(first.get("input"), bytes):
        # FastAPI hands over raw bytes when the Content-Type is not JSON.
        return ServiceError(
            "send the body as JSON with `Content-Type: application/json`", kind="unsupported_media_type"
        )
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "syntax error")
        return BadRequest(f"the request body is not valid JSON: {reason}")
    problems = []
    for error in errors[:5]:
        where = field_path(error.get("loc", ())) or "body"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return InvalidInput("; ".join(problems) + more, field=field_path(first.get("loc", ())) or "body")


class BodyNotAccepted(StarletteHTTPException):
    """A body refused while it is decoded (not UTF-8, duplicate keys). An HTTPException because FastAPI
    re-raises only those from body parsing; anything else becomes a generic 400 without our message."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(status_code=error.status, detail=error.message)
        self.error = error


def from_http_exception(exc: StarletteHTTPException) -> ServiceError:
    if isinstance(exc, BodyNotAccepted):
        return exc.error
    kind = _HTTP_STATUS_KIND.get(
        exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error"
    )
    messages = {
        400: "the request body could not be parsed: send UTF-8 encoded JSON",
        404: "no such endpoint",
        405: "method not allowed on this endpoint",
        413: "the request body is too large; send fewer or shorter messages",
    }
    return ServiceError(messages.get(exc.status_code, str(exc.detail)), kind=kind)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(from_validation_error(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response = error_response(from_http_exception(exc))
    if exc.status_code == 405 and exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unknown_policy(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnknownPolicyError)
    return error_response(InvalidInput(str(exc), field="policy"))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Type and frames only: exception messages can quote the request text.
    frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
    logger.error("unhandled %s\n%s", type(exc).__name__, frames.rstrip())
    return error_response(ServiceError("internal error; the request was not scored"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(UnknownPolicyError, _unknown_policy)
    app.add_exception_handler(Exception, _unexpected)
