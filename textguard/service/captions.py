"""`WebSocket /v1/meetings/{meeting_id}/captions`: live caption segments in, one decision per segment out.

Protocol (JSON text frames). The client sends caption segments

    {"segment_id": "s1", "speaker_id": "spk-1", "text": "...", "start": 12.3, "end": 14.0,
     "final": true, "language": "en", "evidence": false}        (language, evidence optional)

and gets, for each, in order

    {"segment_id", "speaker_id", "final", "scores": {label: p}, "labels": [...], "action",
     "window_segments": [ids whose text was scored together, oldest first, this one last],
     "windows": {label: the window that fired, as in /v1/score}, "matches": [known-content matches],
     "evidence": {label: [spans]} (only when the segment asked for it)}

Errors use the service's body, `{"error": {"type", "message", "field"}}`:
- a bad API key, rate limit, meeting id or policy name refuses the handshake (HTTP 401/429/422);
- a malformed message gets the error and the socket stays open (ids are printable text as in /v1/score:
  NUL and other control characters are refused, naming the field; a text over max_text_chars, counted
  in characters of the decoded text however the JSON escapes them, is a validation error); after
  MAX_CONSECUTIVE_ERRORS malformed messages in a row, or one frame that cannot hold a valid segment
  however it is escaped (`frame_limit`: every character of the longest text and ids written as a
  12-character surrogate-pair escape, plus 1 KiB), the server closes with 1008;
- a full inference queue, or a segment that cannot be scored within `deadline_ms` of its arrival
  (textguard.service.deadline), answers `{"error": {"type": "overloaded", ...}, "segment_id"}` at once
  and the client may resend that segment; if the model is not ready or the audit or context store is
  down, the server closes with 1013 (try again later) rather than answer with a decision it did not record.

Each final segment is decided by the library's `Moderator` like any chat message (source "caption"),
with the speaker's rolling window of earlier final segments as its context (see
textguard.moderation.context: caption time, not arrival time; interim hypotheses are scored with their
context but never kept in it; after a flag the speaker's window starts afresh). This module only
translates frames into items and decisions into replies; `window_segments` lists the segments scored
together, `windows` the window that fired per flagged label, `matches` any known-content match.

Final decisions are written to the audit store (source "caption", with the segment's language) before the
answer is sent; interim hypotheses are scored and answered but neither audited nor kept in the window.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.websockets import WebSocketState

from textguard.moderation import Item, ItemDecision
from textguard.policy import Policy, UnknownPolicyError
from textguard.service.deadline import current_deadline, deadline_after
from textguard.service.errors import STATUS, ServiceError
from textguard.service.routes_score import message_result
from textguard.service.schemas import IDENTIFIER_PATTERN, Identifier, Language, Text
from textguard.service.security import Principal

logger = logging.getLogger(__name__)

router = APIRouter(tags=["captions"])

#: Longest caption text when the app has no settings (the service uses settings.max_text_chars).
MAX_SEGMENT_CHARS = 4_096
MAX_ID_CHARS = 128
#: Per-segment deadline when the app has no settings (the service uses settings.deadline_ms).
DEFAULT_DEADLINE_MS = 1000
MAX_CONSECUTIVE_ERRORS = 5

CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


class CaptionMessage(BaseModel):
    """One caption segment as the client sends it (unknown keys are ignored for forward compatibility)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    segment_id: Identifier
    speaker_id: Identifier
    text: Text = Field(min_length=1)
    start: float = Field(ge=0, allow_inf_nan=False)
    end: float = Field(ge=0, allow_inf_nan=False)
    final: bool
    language: Language | None = None
    #: Also answer, per flagged label, the spans that drove it (as `"evidence": true` in /v1/score).
    evidence: bool = False

    @model_validator(mode="before")
    @classmethod
    def _numbers_may_be_ints(cls, data: Any) -> Any:
        # Strict mode refuses 12 for a float field; JSON clients often send whole seconds.
        if isinstance(data, dict):
            for key in ("start", "end"):
                if type(data.get(key)) is int:
                    data = {**data, key: float(data[key])}
        return data

    @model_validator(mode="after")
    def _end_after_start(self) -> CaptionMessage:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        if not self.text.strip():
            raise ValueError("text must contain more than whitespace")
        return self


class ProtocolError(Exception):
    """A message the protocol refuses; `field` names the offending key where there is one."""

    def __init__(self, type: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.field = field

    def payload(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "message": self.message, "field": self.field}}


#: Longest JSON escape of one character: a non-BMP character as a surrogate pair, "\\ud83d\\ude00".
MAX_ESCAPED_CHARS = 12


def frame_limit(max_text_chars: int) -> int:
    """Longest frame accepted (characters): the longest valid text and ids with every character written
    as its longest JSON escape, plus 1 KiB for keys, numbers and flags. The text limit itself counts
    characters of the decoded text (`parse_message`), so escaping never makes a valid segment too large."""
    return MAX_ESCAPED_CHARS * (max_text_chars + 2 * MAX_ID_CHARS + 35) + 1024


def parse_message(raw: str, max_text_chars: int = MAX_SEGMENT_CHARS) -> CaptionMessage:
    """Parse and validate one frame; raises ProtocolError naming the offending field."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProtocolError("invalid_json", f"message is not JSON: {exc.msg} at position {exc.pos}") from None
    except (ValueError, RecursionError):
        # An integer of more than 4300 digits, or arrays nested thousands deep: client input, not a crash.
        raise ProtocolError("invalid_json", "message is not JSON this server accepts") from None
    if not isinstance(data, dict):
        raise ProtocolError("validation_error", "message must be a JSON object")
    try:
        message = CaptionMessage.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        reason = str(error["msg"]).removeprefix("Value error, ")
        if field is None and "end must" in reason:
            field = "end"
        elif field is None and "text must" in reason:
            field = "text"
        raise ProtocolError("validation_error", reason, field) from None
    if len(message.text) > max_text_chars:
        limit = f"text is {len(message.text)} characters; the limit is {max_text_chars}"
        raise ProtocolError("validation_error", limit, "text")
    return message


def _policy(app_state: Any, name: str | None) -> Policy:
    try:
        policy: Policy = app_state.policies.get(name)
    except UnknownPolicyError as exc:
        raise ProtocolError("validation_error", str(exc), "policy") from None
    return policy


def caption_item(meeting_id: str, message: CaptionMessage) -> Item:
    return Item(
        id=message.segment_id,
        text=message.text,
        source="caption",
        language=message.language,
        meeting_id=meeting_id,
        speaker_id=message.speaker_id,
        start=message.start,
        end=message.end,
        final=message.final,
    )


@router.websocket_route("/v1/meetings/{meeting_id}/captions", name="caption_stream")
async def caption_stream(websocket: WebSocket) -> None:
    """One caption stream. Query parameter `policy` picks a named policy (default: the file's default).

    A plain Starlette WebSocket route on purpose: FastAPI applies router dependencies written for HTTP
    (`Request`) to API WebSocket routes too, where they cannot be resolved. Authentication and the
    rate limit are therefore checked here, with the service's own ApiKeyAuth and limiter, before the
    handshake completes: a refused client gets an HTTP 401/422/429 with the usual error body.
    """
    state = websocket.app.state
    meeting_id = str(websocket.path_params.get("meeting_id", ""))
    try:
        _authorize(websocket)
        if (
            not meeting_id
            or len(meeting_id) > MAX_ID_CHARS
            or not re.fullmatch(IDENTIFIER_PATTERN, meeting_id)
        ):
            raise ProtocolError(
                "validation_error",
                f"meeting id is 1-{MAX_ID_CHARS} printable characters (no control characters)",
                "meeting_id",
            )
        chosen_policy = _policy(state, websocket.query_params.get("policy"))
    except ProtocolError as error:
        await _deny(websocket, error)
        return
    await websocket.accept()
    max_text_chars = int(getattr(getattr(state, "settings", None), "max_text_chars", MAX_SEGMENT_CHARS))
    max_frame = frame_limit(max_text_chars)
    deadline_ms = int(getattr(getattr(state, "settings", None), "deadline_ms", DEFAULT_DEADLINE_MS))
    connection_id = uuid.uuid4().hex
    consecutive_errors = 0
    try:
        while True:
            frame = await websocket.receive()
            received_at = time.perf_counter()
            if frame["type"] == "websocket.disconnect":
                return
            raw = frame.get("text")
            try:
                if raw is None:
                    raise ProtocolError("unsupported_frame", "send caption segments as JSON text frames")
                if len(raw) > max_frame:
                    too_large = f"messages are limited to {max_frame} characters"
                    await _refuse(websocket, ProtocolError("message_too_large", too_large))
                    return
                message = parse_message(raw, max_text_chars)
            except ProtocolError as error:
                consecutive_errors += 1
                if consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                    await _refuse(websocket, error, reason="too many malformed messages")
                    return
                await websocket.send_json(error.payload())
                continue
            consecutive_errors = 0
            token = current_deadline.set(deadline_after(deadline_ms, received_at))
            try:
                principal = getattr(websocket.state, "principal", None)
                reply = await _decide(state, meeting_id, message, chosen_policy, connection_id, principal)
            except ServiceError as exc:
                kind = exc.kind
                failure = ProtocolError(kind, str(exc))
                if kind == "overloaded":
                    # Transient and per segment: the client may resend it; the stream stays open.
                    await websocket.send_json({**failure.payload(), "segment_id": message.segment_id})
                    continue
                # Not ready, shutting down, the audit or context store is down: no decision may be given.
                await _refuse(websocket, failure, code=CLOSE_TRY_AGAIN_LATER)
                return
            finally:
                current_deadline.reset(token)
            await websocket.send_json(reply)
    except WebSocketDisconnect:
        return
    except Exception as exc:
        # Type and frames only, like the HTTP handler: exception messages can quote caption text.
        frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
        logger.error("caption stream failed: %s\n%s", type(exc).__name__, frames.rstrip())
        internal = ProtocolError("internal_error", "internal error; the segment was not scored")
        await _refuse(websocket, internal, code=CLOSE_INTERNAL_ERROR)


def _authorize(websocket: WebSocket) -> None:
    """The service's API-key check (Authorization: Bearer) and one rate-limit token per connection."""
    state = websocket.app.state
    auth = getattr(state, "auth", None)
    if auth is None:
        return
    host = websocket.client.host if websocket.client else None
    try:
        client = auth.client_id(websocket.headers.get("authorization"), host)
    except ServiceError as exc:
        raise ProtocolError(exc.kind, exc.message) from None
    limiter = getattr(state, "rate_limiter", None)
    if limiter is not None and limiter.acquire(client) is not None:
        raise ProtocolError("rate_limited", "rate limit exceeded; reconnect later")


async def _decide(
    state: Any,
    meeting_id: str,
    message: CaptionMessage,
    policy: Policy,
    connection_id: str,
    principal: Principal | None = None,
) -> dict[str, Any]:
    outcome = await state.scoring.decide(
        [(caption_item(meeting_id, message), "text")],
        policy.name,
        collection="segments",
        request_id=connection_id,
        evidence=message.evidence,
        tenant=principal.tenant if principal is not None else None,
        key_id=principal.key_id if principal is not None else None,
    )
    return caption_reply(outcome.decisions[0])


def caption_reply(decision: ItemDecision) -> dict[str, Any]:
    result = message_result(decision)
    reply: dict[str, Any] = {
        "segment_id": decision.item.id,
        "speaker_id": decision.item.speaker_id,
        "final": decision.item.final,
        "scores": decision.scores,
        "labels": list(decision.labels),
        "action": str(decision.action),
        "window_segments": list(decision.context),
        "windows": {label: window.model_dump() for label, window in result.windows.items()},
        "matches": [match.model_dump() for match in result.matches],
    }
    if decision.decision_id is not None:
        reply["decision_id"] = decision.decision_id
    if result.evidence is not None:
        reply["evidence"] = {
            label: [span.model_dump() for span in spans] for label, spans in result.evidence.items()
        }
    return reply


async def _deny(websocket: WebSocket, error: ProtocolError) -> None:
    """Refuse the handshake with an HTTP error where the server supports it, else accept and close."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        status = STATUS.get(error.type, 400)
        await websocket.send_denial_response(JSONResponse(error.payload(), status_code=status))
        return
    await websocket.accept()
    await _refuse(websocket, error)


async def _refuse(
    websocket: WebSocket,
    error: ProtocolError,
    *,
    code: int = CLOSE_POLICY_VIOLATION,
    reason: str | None = None,
) -> None:
    """Send the error, then close; the close reason is short (a close frame carries 123 bytes)."""
    if websocket.application_state == WebSocketState.CONNECTED:
        try:
            await websocket.send_json(error.payload())
            await websocket.close(code=code, reason=(reason or error.message)[:120])
        except (WebSocketDisconnect, RuntimeError):
            logger.debug("client left before the caption stream was closed")
