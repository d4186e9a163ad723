"""Live captions over a real WebSocket: `create_app` served by uvicorn on 127.0.0.1, `websockets` client.

The split-threat tests need a model that actually knows a threat from its halves: the session's
`threat_model` (tests/threat_model.py) is fine-tuned for a few seconds on the split-caption rows of the
meeting functional suite and served by `create_app` like any model. The tests first check through the
scorer that each half alone is below the review threshold and the joined text above it, so the WebSocket
assertions can only pass if the service really joins the speaker's earlier final segment with the current
one, and attributes the flag to the second segment.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from threat_model import REVIEW, padding, split_pairs

from textguard.audit import decisions_table

API_KEY = "tg_test-caption-stream-key"
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


@dataclass
class Server:
    url: str
    ws_url: str
    app: Any

    @property
    def audit(self) -> Any:
        return self.app.state.audit

    def audit_rows(self) -> list[dict[str, Any]]:
        with self.audit.engine.connect() as connection:
            rows = connection.execute(select(decisions_table).order_by(decisions_table.c.created_at))
            return [dict(row) for row in rows.mappings()]


@pytest.fixture(scope="module")
def split_model(threat_model: Path) -> Path:
    return threat_model


@pytest.fixture(scope="module")
def server(split_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from pydantic import SecretStr
    from serve_support import live_server

    from textguard.service.app import create_app
    from textguard.service.security import api_key_digest
    from textguard.service.settings import ServiceSettings

    settings = ServiceSettings(
        model=str(split_model),
        audit_url=f"sqlite:///{tmp_path_factory.mktemp('audit') / 'audit.db'}",
        audit_hash_key=SecretStr("caption-test-key"),
        api_key_hashes=SecretStr(api_key_digest(API_KEY)),
        model_poll_seconds=0,
        warmup=False,
        caption_window_segments=3,
        caption_window_seconds=30,
        # The report test checks exact counts of a handful of decisions: no small-count suppression.
        report_min_count=1,
        report_min_meetings=1,
    )
    app = create_app(settings)
    with live_server(app) as base_url:
        yield Server(base_url, base_url.replace("http://", "ws://"), app)


def segment(
    segment_id: str, speaker: str, text: str, start: float, *, final: bool = True, language: str | None = None
) -> str:
    frame: dict[str, Any] = {
        "segment_id": segment_id,
        "speaker_id": speaker,
        "text": text,
        "start": start,
        "end": start + 3,
        "final": final,
    }
    if language is not None:
        frame["language"] = language
    return json.dumps(frame)


async def exchange(
    url: str, frames: list[str], headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Send each frame and collect one reply per frame, over one connection."""
    from websockets.asyncio.client import connect

    replies = []
    async with connect(url, additional_headers=headers or HEADERS, open_timeout=30) as websocket:
        for frame in frames:
            await websocket.send(frame)
            replies.append(json.loads(await asyncio.wait_for(websocket.recv(), 60)))
    return replies


def stream(server: Server, meeting: str, frames: list[str], query: str = "") -> list[dict[str, Any]]:
    return asyncio.run(exchange(f"{server.ws_url}/v1/meetings/{meeting}/captions{query}", frames))


def test_the_model_knows_the_joined_threat_but_not_its_halves(split_model: Path) -> None:
    from textguard.scorer import Scorer

    scorer = Scorer.from_artifact(split_model)
    pairs = split_pairs()
    halves = scorer.predict_proba([a for a, _ in pairs] + [b for _, b in pairs])
    joined = scorer.predict_proba([f"{a} {b}" for a, b in pairs])
    assert halves.max() < REVIEW, (
        "a half alone already scores as a threat: the split test would prove nothing"
    )
    assert joined[:, 0].min() >= REVIEW


def test_a_threat_split_over_two_segments_is_flagged_on_the_second(server: Server) -> None:
    first, second = split_pairs()[0]
    before = len(server.audit_rows())
    replies = stream(
        server,
        "meeting-split",
        [
            segment("s1", "spk-a", first[: len(first) // 2], 0, final=False),  # interim hypothesis
            segment("s1", "spk-a", first, 0),
            segment("s2", "spk-a", second, 3),
        ],
    )
    interim, one, two = replies
    assert interim["final"] is False and interim["action"] == "allow" and interim["window_segments"] == ["s1"]
    assert one["action"] == "allow" and one["labels"] == [] and one["window_segments"] == ["s1"]
    assert two["labels"] == ["violent_threat"] and two["action"] in ("review", "block")
    assert two["window_segments"] == ["s1", "s2"] and two["scores"]["violent_threat"] >= REVIEW
    assert set(two) == {
        "segment_id", "speaker_id", "final", "scores", "labels", "action", "window_segments", "windows",
        "matches", "decision_id",
    }  # fmt: skip
    assert "decision_id" not in interim  # interim hypotheses are answered, not audited
    # The window that fired covers both segments: the threat was read across them.
    fired = two["windows"]["violent_threat"]
    assert fired["messages"] == ["s1", "s2"] and fired["context"] is True and two["matches"] == []

    # Both FINAL decisions were audited before the answers came back; the interim one was not.
    rows = server.audit_rows()[before:]
    audit = server.audit
    assert [row["message_hash"] for row in rows] == [audit.hash_message_id("s1"), audit.hash_message_id("s2")]
    assert all(row["source"] == "caption" and row["text"] is None for row in rows)
    assert rows[1]["labels"] == ["violent_threat"] and rows[1]["action"] == two["action"]
    assert rows[1]["context_hashes"] == [audit.hash_message_id("s1")]
    assert rows[1]["meeting_hash"] == audit.hash_meeting_id("meeting-split")
    assert rows[1]["text_hash"] == audit.hash_text(second)
    assert rows[1]["model_name"] == "textguard" and rows[1]["model_version"]
    # Caption rows carry their language (detected here: the frames did not say).
    assert [row["language"] for row in rows] == ["en", "en"]


def test_caption_audit_rows_carry_the_language_the_client_gave(server: Server) -> None:
    before = len(server.audit_rows())
    stream(
        server,
        "meeting-language",
        [segment("g1", "spk", "on se retrouve à quinze heures pour le point", 0, language="fr")],
    )
    assert [row["language"] for row in server.audit_rows()[before:]] == ["fr"]


def test_the_window_is_per_speaker(server: Server) -> None:
    first, second = split_pairs()[1]
    replies = stream(
        server, "meeting-two-speakers", [segment("a1", "alice", first, 0), segment("b1", "bob", second, 3)]
    )
    assert [reply["action"] for reply in replies] == ["allow", "allow"]
    assert replies[1]["window_segments"] == ["b1"]


def test_an_interim_never_joins_the_window(server: Server) -> None:
    first, second = split_pairs()[2]
    replies = stream(
        server,
        "meeting-interim",
        [segment("i1", "spk", first, 0, final=False), segment("i2", "spk", second, 3)],
    )
    assert [reply["action"] for reply in replies] == ["allow", "allow"]
    assert replies[1]["window_segments"] == ["i2"]


def test_after_a_flag_the_window_starts_afresh(server: Server) -> None:
    first, second = split_pairs()[3]
    replies = stream(
        server,
        "meeting-reset",
        [
            segment("r1", "spk", first, 0),
            segment("r2", "spk", second, 3),
            segment("r3", "spk", "thanks everyone for joining today", 6),
        ],
    )
    assert replies[1]["labels"] == ["violent_threat"]
    assert replies[2]["window_segments"] == ["r3"] and replies[2]["action"] == "allow"


def test_a_threat_after_a_long_preamble_in_one_segment_is_read(server: Server, split_model: Path) -> None:
    from textguard.postprocess import probabilities
    from textguard.scorer import Scorer

    first, second = split_pairs()[0]
    padded = f"{padding(400)} {first} {second}"
    scorer = Scorer.from_artifact(split_model)
    # Preconditions: the model flags the bare threat, and reading only the first max_length tokens (what
    # truncation did) misses it behind the preamble.
    assert scorer.predict_proba([f"{first} {second}"])[0, 0] >= REVIEW
    assert probabilities(scorer.logits_from_ids(scorer.encode([padded])), scorer.spec)[0, 0] < REVIEW
    (reply,) = stream(server, "meeting-padded", [segment("p1", "spk", padded, 0)])
    assert reply["labels"] == ["violent_threat"] and reply["action"] in ("review", "block")
    fired = reply["windows"]["violent_threat"]
    assert fired["context"] is False and fired["count"] > 1 and fired["index"] > 0


def test_a_long_earlier_segment_does_not_hide_the_current_one(server: Server) -> None:
    # The joined window is read whole (in windows), so a long earlier segment cannot push the current
    # segment out of what the model reads.
    first, second = split_pairs()[1]
    replies = stream(
        server,
        "meeting-long",
        [segment("l0", "spk", f"{padding(400)} {first}", 0), segment("l1", "spk", second, 3)],
    )
    assert replies[0]["action"] == "allow" and replies[0]["window_segments"] == ["l0"]
    assert replies[1]["window_segments"] == ["l0", "l1"] and replies[1]["labels"] == ["violent_threat"]


def test_a_named_policy_applies(server: Server) -> None:
    first, second = split_pairs()[0]
    replies = stream(
        server,
        "meeting-monitor",
        [segment("p1", "spk", first, 0), segment("p2", "spk", second, 3)],
        "?policy=monitor",
    )
    # The monitor policy flags like the default but never blocks.
    assert replies[1]["labels"] == ["violent_threat"] and replies[1]["action"] == "review"
    assert server.audit_rows()[-1]["policy"] == "monitor"


def test_malformed_messages_get_errors_and_the_stream_goes_on(server: Server) -> None:
    replies = stream(
        server,
        "meeting-errors",
        [
            "{not json",
            json.dumps({"segment_id": "e1", "speaker_id": "spk", "text": "hi", "start": 0, "end": 1}),
            segment("e2", "spk", "can you share your screen please", 0),
        ],
    )
    assert replies[0]["error"]["type"] == "invalid_json" and replies[0]["error"]["field"] is None
    assert replies[1] == {
        "error": {"type": "validation_error", "message": "Field required", "field": "final"}
    }
    assert replies[2]["segment_id"] == "e2" and replies[2]["action"] == "allow"


async def closing_code(url: str, frames: list[str]) -> tuple[int | None, list[dict[str, Any]]]:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    received = []
    async with connect(url, additional_headers=HEADERS, max_size=None) as websocket:
        try:
            for frame in frames:
                await websocket.send(frame)
            while True:
                received.append(json.loads(await asyncio.wait_for(websocket.recv(), 30)))
        except ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), received
    return None, received


def test_repeated_abuse_closes_with_1008(server: Server) -> None:
    code, received = asyncio.run(closing_code(f"{server.ws_url}/v1/meetings/m-abuse/captions", ["[]"] * 6))
    assert code == 1008
    assert len(received) == 5 and all("error" in reply for reply in received)


def test_an_oversized_message_closes_with_1008(server: Server) -> None:
    from textguard.service.captions import frame_limit

    oversized = "x" * (frame_limit(4096) + 1)  # no valid segment is that long, however it is escaped
    code, received = asyncio.run(closing_code(f"{server.ws_url}/v1/meetings/m-big/captions", [oversized]))
    assert code == 1008 and received[0]["error"]["type"] == "message_too_large"


def test_the_text_limit_counts_decoded_characters_not_json_escapes(server: Server) -> None:
    # json.dumps writes each emoji as a 12-character surrogate-pair escape: 4,000 emoji are 48,000
    # characters of frame but 4,000 characters of text, under max_text_chars (4096).
    emoji = segment("u1", "spk", "\U0001f600" * 4000, 0)
    assert len(emoji) > 12 * 4000
    over = segment("u2", "spk", "\U0001f600" * 4097, 3)
    after = segment("u3", "spk", "can you share your screen please", 6)
    replies = stream(server, "m-emoji", [emoji, over, after])
    assert replies[0]["segment_id"] == "u1" and "action" in replies[0]
    assert replies[1]["error"]["type"] == "validation_error" and replies[1]["error"]["field"] == "text"
    assert "4097 characters" in replies[1]["error"]["message"]
    assert replies[2]["segment_id"] == "u3" and replies[2]["action"] == "allow"  # the stream goes on


@pytest.mark.parametrize("field", ["segment_id", "speaker_id"])
@pytest.mark.parametrize("bad", ["a\x00b", "tab\there", "line\n", "del\x7f"])
def test_control_characters_in_websocket_ids_are_refused_as_in_http(
    server: Server, field: str, bad: str
) -> None:
    frame = json.loads(segment("c1", "spk", "hello everyone", 0))
    frame[field] = bad
    refused, answered = stream(
        server, "m-ids", [json.dumps(frame), segment("c2", "spk", "hello everyone", 3)]
    )
    assert refused["error"]["type"] == "validation_error" and refused["error"]["field"] == field
    assert answered["segment_id"] == "c2"
    http = httpx.post(
        f"{server.url}/v1/score",
        json={
            "messages": [
                {
                    "id": "m",
                    "text": "hello",
                    "speaker_id": "s",
                    "meeting_id": "m",
                    **({"id": bad} if field == "segment_id" else {"speaker_id": bad}),
                }
            ]
        },
        headers=HEADERS,
    )
    assert http.status_code == 422 and http.json()["error"]["field"].endswith(
        "id" if field == "segment_id" else "speaker_id"
    )


def test_a_meeting_id_with_a_control_character_is_refused_at_the_handshake(server: Server) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def handshake() -> tuple[int, dict[str, Any]]:
        try:
            async with connect(f"{server.ws_url}/v1/meetings/a%00b/captions", additional_headers=HEADERS):
                return 101, {}
        except InvalidStatus as refused:
            return int(refused.response.status_code), json.loads(refused.response.body or b"{}")

    status, body = asyncio.run(handshake())
    assert status == 422 and body["error"]["field"] == "meeting_id"


@pytest.mark.parametrize(
    ("path", "headers", "status", "kind"),
    [
        ("/v1/meetings/m/captions", {}, 401, "unauthorized"),
        ("/v1/meetings/m/captions", {"Authorization": "Bearer wrong"}, 401, "unauthorized"),
        ("/v1/meetings/m/captions?policy=nonesuch", HEADERS, 422, "validation_error"),
        ("/v1/meetings/" + "m" * 200 + "/captions", HEADERS, 422, "validation_error"),
    ],
)
def test_refused_handshakes_answer_http_errors(
    server: Server, path: str, headers: dict[str, str], status: int, kind: str
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def attempt() -> None:
        async with connect(f"{server.ws_url}{path}", additional_headers=headers):
            pass

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(attempt())
    assert refused.value.response.status_code == status
    assert json.loads(bytes(refused.value.response.body))["error"]["type"] == kind


def test_caption_decisions_appear_in_the_transparency_report(server: Server) -> None:
    from datetime import UTC, datetime

    stream(server, "meeting-report", [segment("t1", "spk", "the meeting starts now", 0)])
    today = datetime.now(UTC).date().isoformat()
    response = httpx.get(
        f"{server.url}/v1/transparency/report", params={"since": today, "until": today}, headers=HEADERS
    )
    assert response.status_code == 200
    report = response.json()
    captions = next(item for item in report["by_source"] if item["key"] == "caption")
    assert captions["decisions"] == len(server.audit_rows())
    assert report["by_label"][0]["key"] == "violent_threat" and report["by_label"][0]["flagged"] >= 1
    unauthenticated = httpx.get(
        f"{server.url}/v1/transparency/report", params={"since": today, "until": today}
    )
    assert unauthenticated.status_code == 401
    reversed_period = httpx.get(
        f"{server.url}/v1/transparency/report",
        params={"since": today, "until": "2000-01-01"},
        headers=HEADERS,
    )
    assert reversed_period.status_code == 422 and reversed_period.json()["error"]["field"] == "until"


def test_no_decision_is_answered_when_the_audit_store_is_down(server: Server) -> None:
    store = server.audit
    with store.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE audit_decisions RENAME TO audit_decisions_away")
    try:
        code, received = asyncio.run(
            closing_code(
                f"{server.ws_url}/v1/meetings/m-down/captions", [segment("d1", "spk", "hello all", 0)]
            )
        )
    finally:
        with store.engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE audit_decisions_away RENAME TO audit_decisions")
    assert code == 1013
    assert received == [
        {"error": {"type": "audit_unavailable", "message": received[0]["error"]["message"], "field": None}}
    ]
