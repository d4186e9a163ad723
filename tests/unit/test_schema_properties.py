"""Property-based tests (hypothesis) of the request schemas through the real app (TestClient, tiny model).

- any JSON value at any field of /v1/score and /v1/moderations is either accepted (200) or refused with
  a 422 whose `field` is the path of that field (or a path inside it), never anything else;
- whether it is accepted agrees with the pydantic contract (`ScoreRequest` / `ModerationRequest`)
  plus the documented per-request checks, so the HTTP layer adds and loses nothing;
- valid generated requests get one result per message, in order, with the ids, languages and the
  library scorer's own scores for each text (whatever else shares its batch).

The schemathesis runs (generated from the OpenAPI schema) are in tests/integration/test_serve_fuzz.py
and, for the other endpoints, tests/integration/test_hostile_input.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from textguard.labels import LABELS
from textguard.scorer import Scorer
from textguard.service.app import create_app
from textguard.service.errors import InvalidInput, field_path
from textguard.service.openai_moderation import check_model_name
from textguard.service.schemas import ModerationRequest, ScoreRequest, moderation_texts
from textguard.service.settings import ServiceSettings

MAX_MESSAGES = 8
MAX_TEXT_CHARS = 64
POLICIES = ("default", "strict", "lenient", "monitor")
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def scorer(tiny_artifact: Path) -> Scorer:
    return Scorer.from_artifact(tiny_artifact)


@pytest.fixture(scope="module")
def client(
    tiny_artifact: Path, scorer: Scorer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    service_settings = ServiceSettings(
        model=str(tiny_artifact),
        audit_url=f"sqlite:///{tmp_path_factory.mktemp('properties') / 'audit.db'}",
        audit_hash_key=SecretStr("properties"),
        model_poll_seconds=0,
        max_messages=MAX_MESSAGES,
        max_text_chars=MAX_TEXT_CHARS,
    )
    with TestClient(create_app(service_settings, scorer)) as test_client:
        yield test_client


# -- strategies ----------------------------------------------------------------------------------------

# Text as hostile clients send it: any code point, lone surrogates included (JSON `\ud800` escapes).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    ["", "\ud800", "a\udfffb", "\x00", "chat", "caption", "en", "pt-BR", "default", "strict", "x" * 70]
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3),
    max_leaves=6,
)

# Printable ids (no control characters) and texts without lone surrogates: what the API accepts.
identifier = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=20)
valid_text = st.text(st.characters(codec="utf-8"), max_size=MAX_TEXT_CHARS)
language = st.sampled_from(["en", "fr", "de", "pt-BR", "zh-Hant-TW", "und", "ar"])


@st.composite
def valid_message(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {"id": draw(identifier), "text": draw(valid_text)}
    for key, strategy in (
        ("language", language),
        ("source", st.sampled_from(["chat", "caption"])),
        ("meeting_id", identifier),
        ("speaker_id", identifier),
    ):
        if draw(st.booleans()):
            message[key] = draw(strategy)
    return message


valid_request = st.fixed_dictionaries(
    {"messages": st.lists(valid_message(), min_size=1, max_size=MAX_MESSAGES, unique_by=lambda m: m["id"])},
    optional={"policy": st.sampled_from(POLICIES)},
)


# -- the oracle: the pydantic contract plus the documented per-request checks -------------------------


def _expected_score_error(body: Any) -> str | None:
    """The field a 422 must name for `body`, or None if it must be scored."""
    try:
        request = ScoreRequest.model_validate(body)
    except ValidationError as exc:
        return field_path(exc.errors()[0]["loc"]) or "body"
    if len(request.messages) > MAX_MESSAGES:
        return "messages"
    seen: set[str] = set()
    for index, message in enumerate(request.messages):
        if len(message.text) > MAX_TEXT_CHARS:
            return f"messages.{index}.text"
        if message.id in seen:
            return f"messages.{index}.id"
        seen.add(message.id)
    if request.policy is not None and request.policy not in POLICIES:
        return "policy"
    return None


def _expected_moderation_error(body: Any) -> str | None:
    try:
        request = ModerationRequest.model_validate(body)
    except ValidationError as exc:
        return field_path(exc.errors()[0]["loc"]) or "body"
    try:
        check_model_name(request.model, "textguard")
    except InvalidInput:
        return "model"
    if isinstance(request.input, list) and len(request.input) > MAX_MESSAGES:
        return "input"
    try:
        texts = moderation_texts(request)
    except ValueError as exc:
        return str(exc).split(": ", 1)[0]
    for where, text in texts:
        if len(text) > MAX_TEXT_CHARS:
            return where
    if request.policy is not None and request.policy not in POLICIES:
        return "policy"
    return None


def _post(client: TestClient, path: str, body: Any) -> Any:
    # ensure_ascii: lone surrogates travel as \ud800 escapes, as a hostile client would send them.
    content = json.dumps(body, ensure_ascii=True).encode()
    return client.post(path, content=content, headers={"content-type": "application/json"})


def _check(response: Any, expected_field: str | None, owner: str) -> None:
    if expected_field is None:
        assert response.status_code == 200, response.text[:300]
        return
    assert response.status_code == 422, response.text[:300]
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert error["field"] == expected_field
    assert error["field"] == owner or error["field"].startswith(f"{owner}."), (owner, error)


# -- properties ---------------------------------------------------------------------------------------

MESSAGE_FIELDS = ("id", "text", "language", "source", "meeting_id", "speaker_id", "colour")


@PROPERTY_SETTINGS
@given(field=st.sampled_from(MESSAGE_FIELDS), value=json_values)
def test_any_value_at_a_message_field_is_scored_or_named(client: TestClient, field: str, value: Any) -> None:
    body = {"messages": [{"id": "m0", "text": "hello", field: value}]}
    _check(_post(client, "/v1/score", body), _expected_score_error(body), f"messages.0.{field}")


@PROPERTY_SETTINGS
@given(field=st.sampled_from(("messages", "policy", "extra")), value=json_values)
def test_any_value_at_a_request_field_is_scored_or_named(client: TestClient, field: str, value: Any) -> None:
    body: dict[str, Any] = {"messages": [{"id": "m0", "text": "hello"}], field: value}
    _check(_post(client, "/v1/score", body), _expected_score_error(body), field)


@PROPERTY_SETTINGS
@given(body=json_values)
def test_any_json_body_is_scored_or_refused_with_a_field(client: TestClient, body: Any) -> None:
    response = _post(client, "/v1/score", body)
    expected = _expected_score_error(body)
    if expected is None:
        assert response.status_code == 200
    else:
        assert response.status_code == 422 and response.json()["error"]["field"] == expected


@PROPERTY_SETTINGS
@given(field=st.sampled_from(("input", "model", "policy", "extra")), value=json_values)
def test_any_value_at_a_moderation_field_is_scored_or_named(
    client: TestClient, field: str, value: Any
) -> None:
    body: dict[str, Any] = {"input": "hello", field: value}
    _check(_post(client, "/v1/moderations", body), _expected_moderation_error(body), field)


@PROPERTY_SETTINGS
@given(items=st.lists(json_values | any_text, max_size=MAX_MESSAGES + 2))
def test_any_moderation_input_list_is_scored_or_named(client: TestClient, items: list[Any]) -> None:
    body = {"input": items}
    response = _post(client, "/v1/moderations", body)
    _check(response, _expected_moderation_error(body), "input")
    if response.status_code == 200:
        assert len(response.json()["results"]) == len(items)


@PROPERTY_SETTINGS
@given(body=valid_request)
def test_valid_requests_round_trip_one_result_per_message_in_order(
    client: TestClient, scorer: Scorer, body: dict[str, Any]
) -> None:
    response = _post(client, "/v1/score", body)
    assert response.status_code == 200, response.text[:300]
    payload = response.json()
    messages, results = body["messages"], payload["results"]
    assert [result["id"] for result in results] == [message["id"] for message in messages]
    assert payload["policy"] == body.get("policy", "default")
    for message, result in zip(messages, results, strict=True):
        assert list(result["scores"]) == list(LABELS)
        assert all(0.0 <= score <= 1.0 for score in result["scores"].values())
        assert set(result["labels"]) <= set(LABELS)
        assert result["action"] in ("allow", "review", "block")
        assert (result["action"] == "allow") == (result["labels"] == [])
        if "language" in message:
            assert result["language"] == message["language"]
    expected = scorer.predict_proba([message["text"] for message in messages])
    served = np.array([[result["scores"][label] for label in LABELS] for result in results])
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)
