"""Request and response contracts of the HTTP API (pydantic; the OpenAPI schema is generated from them).

Limits that depend on settings (messages per request, characters per text) are checked after
parsing by `textguard.service.scoring`, so they can name the offending field (`messages.3.text`).

Validation stops at the first bad message and the first unknown key: pydantic would otherwise report
one error per bad item or extra key, and a 1 MB body of `{}` items made ~600k errors, several seconds
of event-loop time and hundreds of MB of memory (tests/integration/test_hostile_input.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    FailFast,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails

Action = Literal["allow", "review", "block"]
Source = Literal["chat", "caption"]

_LANGUAGE = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"


def _valid_unicode(value: str) -> str:
    # JSON can carry "\ud800": a lone surrogate is not text, and tokenizers and databases reject it.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate (\\ud800-\\udfff): not valid Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(_valid_unicode)]
#: Caller ids are echoed back and stored (hashed) in the audit log: printable text only (HTTP and WebSocket).
IDENTIFIER_PATTERN = r"^[^\x00-\x1f\x7f]+$"
Identifier = Annotated[
    str, Field(min_length=1, max_length=128, pattern=IDENTIFIER_PATTERN), AfterValidator(_valid_unicode)
]
Language = Annotated[str, Field(max_length=35, pattern=_LANGUAGE, examples=["fr", "pt-BR"])]


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _first_unknown_key(cls, data: Any) -> Any:
        # extra="forbid" stays for the schema (additionalProperties: false), but it reports every extra
        # key; this stops at the first one, so a body of many keys costs one error. Missing required
        # fields come first, as pydantic would order them.
        if not isinstance(data, dict):
            return data
        unknown = next((key for key in data if key not in cls.model_fields), None)
        if unknown is None:
            return data
        details = [
            InitErrorDetails(type="missing", loc=(name,), input=data)
            for name, field in cls.model_fields.items()
            if field.is_required() and name not in data
        ]
        # Escaped: a lone surrogate in a key could not be encoded into the error body.
        where = str(unknown).encode("utf-8", "backslashreplace").decode("utf-8")
        details.append(InitErrorDetails(type="extra_forbidden", loc=(where,), input=data[unknown]))
        raise ValidationError.from_exception_data(cls.__name__, details)


# -- /v1/score ---------------------------------------------------------------------------------------


class MessageIn(Contract):
    id: Identifier = Field(description="the caller's message id (unique within the request)")
    text: Text = Field(description="the message as typed or captioned (normalised server-side)")
    language: Language | None = Field(default=None, description="BCP-47 tag; detected when absent")
    source: Source = "chat"
    meeting_id: Identifier | None = Field(
        default=None,
        description="with speaker_id: the message is also scored joined with this speaker's recent "
        "messages in this meeting (see `context` in the result)",
    )
    speaker_id: Identifier | None = None


class ScoreRequest(Contract):
    # FailFast: the first invalid message ends validation (one error, not one per item).
    messages: Annotated[list[MessageIn], FailFast()] = Field(min_length=1)
    policy: str | None = Field(default=None, description="policy name; the server's default when absent")
    evidence: bool = Field(
        default=False,
        description="also return, per flagged label, the spans of text that drove it (costs up to 33 "
        "extra texts scored per flagged window)",
    )


class ModelInfo(Contract):
    name: str
    version: str
    alias: str | None = None


class FiringWindow(Contract):
    """The window of text that gave a flagged label its score."""

    messages: list[str] = Field(description="ids of the messages the window covers, oldest first")
    context: bool = Field(description="true: the speaker's recent messages joined; false: this one alone")
    index: int = Field(description="which window of that text (0-based)")
    count: int = Field(description="how many windows the text was read in")
    start: int = Field(description="first character of the window in the normalised text")
    end: int = Field(description="end (exclusive) of the window in the normalised text")


class KnownContentMatch(Contract):
    """A match against a known-content hash list."""

    list_id: str
    list_version: str
    kind: str = Field(description="exact (sha256), or the fuzzy hash kind (minhash)")
    hash_id: str = Field(description="the list entry that matched")
    distance: float | None = Field(description="fuzzy hash distance: differing MinHash slots (0 if exact)")
    label: str | None = Field(description="the label the list entry carries")


class EvidenceSpan(Contract):
    """Characters of one message's text, as sent, whose deletion lowered the label's probability."""

    message_id: str = Field(description="the message the span lies in (this one, or one of its context)")
    start: int
    end: int = Field(description="end (exclusive), in characters of that message's text")
    text: str
    weight: float = Field(description="how far the label's probability fell without these words")


class MessageResult(Contract):
    id: str
    scores: dict[str, float] = Field(description="calibrated probability per label")
    labels: list[str] = Field(description="labels at or above the policy's review threshold")
    action: Action
    language: str
    context: list[str] = Field(
        default_factory=list,
        description="ids of the messages scored together with this one, oldest first, this one last",
    )
    windows: dict[str, FiringWindow] = Field(
        default_factory=dict, description="per flagged label, the window that gave it its score"
    )
    matches: list[KnownContentMatch] = Field(
        default_factory=list, description="known-content hash-list matches (the policy decides their action)"
    )
    evidence: dict[str, list[EvidenceSpan]] | None = Field(
        default=None, description="per flagged label, the spans that drove it (when the request asked)"
    )
    decision_id: str | None = Field(
        default=None,
        description="the audit trail's id of this decision: name it in /v1/decisions/{id}/review and /events",
    )


class ScoreResponse(Contract):
    model: ModelInfo
    policy: str
    results: list[MessageResult]


# -- /v1/moderations (OpenAI-compatible) --------------------------------------------------------------


def _string_or_list(value: Any) -> Any:
    if not isinstance(value, str | list):
        raise ValueError(
            "must be a string, a list of strings or a list of {'type': 'text', 'text': ...} parts"
        )
    return value


class ModerationRequest(Contract):
    # Items are checked one by one in `moderation_texts` so an error names its index (input.3).
    input: Annotated[str | list[Any], BeforeValidator(_string_or_list)] = Field(
        description="a string, a list of strings, or a list of {'type': 'text', 'text': ...} parts "
        "(image parts are refused: textguard classifies text only)"
    )
    model: str | None = None
    #: textguard extension (OpenAI SDK: `extra_body={"policy": "strict"}`).
    policy: str | None = None


def moderation_texts(request: ModerationRequest) -> list[tuple[str, str]]:
    """(field path, text) per input item; raises ValueError("field: problem") for a bad item."""
    if isinstance(request.input, str):
        return [("input", _checked_text(request.input, "input"))]
    if not request.input:
        raise ValueError("input: must not be empty")
    texts = []
    for index, item in enumerate(request.input):
        where = f"input.{index}"
        if isinstance(item, str):
            texts.append((where, _checked_text(item, where)))
        elif isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
            texts.append((f"{where}.text", _checked_text(item["text"], f"{where}.text")))
        elif isinstance(item, dict) and item.get("type") == "image_url":
            raise ValueError(f"{where}: image inputs are not supported; textguard classifies text only")
        else:
            raise ValueError(f"{where}: must be a string or a {{'type': 'text', 'text': ...}} part")
    return texts


def _checked_text(value: str, where: str) -> str:
    try:
        return _valid_unicode(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


class ModerationResult(Contract):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]


class ModerationResponse(Contract):
    id: str
    model: str
    results: list[ModerationResult]


# -- /v1/model ---------------------------------------------------------------------------------------


class ModelDescription(Contract):
    name: str
    version: str
    alias: str | None
    labels: list[str]
    taxonomy_version: str
    thresholds: dict[str, float] = Field(description="the model spec's tuned per-label thresholds")
    temperature: float
    max_length: int
    backend: str
    precision: str = Field(description="fp32 or bf16 (torch); see precision_reason")
    precision_reason: str = Field(description="why this precision: hardware and the artefact's parity record")
    policies: dict[str, Any] = Field(description="the loaded policy file: default and per-policy thresholds")


# -- errors ------------------------------------------------------------------------------------------


class ErrorDetail(Contract):
    type: str = Field(
        description="error kind: validation_error, bad_request, unauthorized, rate_limited, ..."
    )
    message: str
    field: str | None = Field(default=None, description="path of the offending field, e.g. messages.3.text")


class ErrorResponse(Contract):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the error statuses a route can answer (all share one body)."""
    descriptions = {
        400: "malformed JSON or invalid UTF-8",
        401: "missing or invalid API key",
        403: "the API key lacks the scope this endpoint needs",
        413: "request body too large",
        415: "the body was not sent as application/json",
        422: "a field is invalid (the error names it)",
        429: "rate limit exceeded (see Retry-After)",
        503: "not ready, overloaded, audit or context store unavailable (see Retry-After)",
    }
    return {status: {"model": ErrorResponse, "description": descriptions[status]} for status in statuses}


#: What every authenticated scoring route can answer besides 200.
SCORING_ERRORS = error_responses(400, 401, 403, 413, 415, 422, 429, 503)
