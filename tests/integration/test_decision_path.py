"""The one decision path, checked on every transport with a model that really knows a threat.

`threat_model` (tests/threat_model.py) is a tiny BERT fine-tuned to flag the English split threats of the
meeting suite when both parts are present, and nothing else. Each check first proves, through the scorer,
what makes it meaningful (the model flags the bare threat; reading only the first max_length tokens
misses it behind the padding; each part alone is allowed), so the assertions can only pass if the path
really reads every window, joins a speaker's messages, matches known content and finds the evidence.

Transports are real: the library's Moderator, `create_app` served by uvicorn on 127.0.0.1 (HTTP and the
caption WebSocket), and `textguard score` through its typer app; the parity test holds them to the same
decisions.

Evidence needs a model whose score falls when a word of the threat goes. The trained tiny model is
redundant inside a long message (with chat in front, deleting any one word or run of four words of the
threat leaves it flagged), so occlusion finds nothing there, correctly. The evidence check of the padded
threat therefore uses a deterministic backend that scores by token content (`KeywordBackend`: the threat
label fires in a window that holds every keyword's tokens) behind the real Scorer, Moderator and service;
the trained model's evidence is checked where it has some (a split threat, read across two messages).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from threat_model import REVIEW, padding, split_pairs
from typer.testing import CliRunner

from textguard.audit import decisions_table, matches_table
from textguard.cli import app as cli
from textguard.labels import LABELS
from textguard.moderation import ContextLimits, Item, MemoryContextStore, Moderator, ServedModel
from textguard.paths import project_root
from textguard.policy import PolicySet
from textguard.postprocess import probabilities
from textguard.scorer import Scorer

POLICIES = project_root() / "configs/policies/default.yaml"
#: A made-up "manifesto passage" for the hash list: the model has never seen anything like it.
PASSAGE = (
    "when the bells of the northern order ring at dawn every sworn member leaves the city "
    "and gathers at the old quarry to await the signal"
)
EDITED = PASSAGE.replace("sworn member", "loyal member").capitalize() + "!!"


#: The threat of the issue, and what the keyword backend reacts to.
ISSUE_THREAT = "I will shoot every one of them tomorrow"
#: Words of the threat that the padding does not use (it says "tomorrow" too).
KEYWORDS = ("shoot", "them")


class KeywordBackend:
    """Token content in, logits out: violent_threat is +6 in a window holding every keyword's tokens."""

    name = "keywords"

    def __init__(self, scorer: Scorer, keywords: tuple[str, ...]) -> None:
        self.keys = [scorer.window_tokenizer.encode(word, add_special_tokens=False).ids for word in keywords]

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        logits = np.full((len(input_ids), len(LABELS)), -6.0, dtype=np.float32)
        for row, (ids, mask) in enumerate(zip(input_ids, attention_mask, strict=True)):
            sequence = [int(token) for token in ids[mask.astype(bool)]]
            if all(_contains(sequence, key) for key in self.keys):
                logits[row, 0] = 6.0
        return logits


def _contains(sequence: list[int], key: list[int]) -> bool:
    return any(sequence[start : start + len(key)] == key for start in range(len(sequence) - len(key) + 1))


@pytest.fixture(scope="module")
def keyword_scorer(tiny_artifact: Path) -> Scorer:
    scorer = Scorer.from_artifact(tiny_artifact)
    return Scorer(scorer.spec, scorer.tokenizer, KeywordBackend(scorer, KEYWORDS), source="keywords")


def threat() -> str:
    first, second = split_pairs()[0]
    return f"{first} {second}"


def padded_threat() -> str:
    return f"{padding(400)} {threat()}"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def scorer(threat_model: Path) -> Scorer:
    return Scorer.from_artifact(threat_model)


@pytest.fixture(scope="module")
def hash_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("hashes") / "store"
    args = ["hashes", "add", "--list", "test-manifestos", "--text", PASSAGE, "--store", str(store)]
    result = CliRunner().invoke(cli, [*args, "--label", "extremist_glorification"])
    assert result.exit_code == 0, result.output
    return store


def test_the_model_makes_the_checks_meaningful(scorer: Scorer) -> None:
    first, second = split_pairs()[0]
    assert scorer.predict_proba([threat()])[0, 0] >= REVIEW  # flags the bare threat
    assert scorer.predict_proba([first, second]).max() < REVIEW  # but neither part alone
    assert scorer.predict_proba([padding(400), PASSAGE, EDITED]).max() < REVIEW  # nor chat or the passage
    # Truncation (the first max_length tokens only) misses the threat behind 400 characters of chat.
    truncated = probabilities(scorer.logits_from_ids(scorer.encode([padded_threat()])), scorer.spec)
    assert truncated[0, 0] < REVIEW
    assert len(scorer.windows([padded_threat()])) > 1


# -- the library -----------------------------------------------------------------------------------------


def test_library_reads_the_padded_threat(scorer: Scorer) -> None:
    moderator = Moderator(PolicySet.load(POLICIES))
    (decision,) = moderator.decide([Item("p1", padded_threat())], ServedModel.local(scorer)).decisions
    assert decision.labels == ["violent_threat"] and decision.action in ("review", "block")
    window = decision.windows["violent_threat"]
    assert not window.context and window.count > 1 and window.index > 0
    # The window that fired holds the threat: it starts in the padding and ends with the text.
    assert window.start < len(padding(400)) + 1 and window.end == len(padded_threat())


def test_library_evidence_of_the_padded_threat_lies_on_the_threat(keyword_scorer: Scorer) -> None:
    text = f"{padding(400)} {ISSUE_THREAT}"
    model = ServedModel.local(keyword_scorer)
    # Preconditions: the backend flags the bare threat, and the first window alone misses it.
    assert keyword_scorer.predict_proba([ISSUE_THREAT])[0, 0] > REVIEW
    assert keyword_scorer.logits_from_ids(keyword_scorer.encode([text]))[0, 0] < 0
    outcome = Moderator(PolicySet.load(POLICIES)).decide([Item("p1", text)], model, evidence=True)
    (decision,) = outcome.decisions
    assert decision.labels == ["violent_threat"]
    spans = (decision.evidence or {})["violent_threat"]
    threat_start = text.index(ISSUE_THREAT)
    assert {span.text for span in spans} == set(KEYWORDS)
    assert all(span.start >= threat_start and text[span.start : span.end] == span.text for span in spans)


def test_library_joins_a_speakers_split_threat_but_not_two_speakers_or_an_hour(scorer: Scorer) -> None:
    clock = Clock()
    moderator = Moderator(PolicySet.load(POLICIES), context=MemoryContextStore(ContextLimits()), clock=clock)
    model = ServedModel.local(scorer)
    first, second = split_pairs()[1]

    def send(message_id: str, text: str, speaker: str, meeting: str = "m") -> Any:
        item = Item(message_id, text, meeting_id=meeting, speaker_id=speaker)
        return moderator.decide([item], model, evidence=True).decisions[0]

    one = send("a1", first, "alice")
    clock.now += 5
    two = send("a2", second, "alice")
    assert one.action == "allow" and one.context == ("a1",)
    assert two.labels == ["violent_threat"] and two.context == ("a1", "a2")
    assert two.windows["violent_threat"].messages == ("a1", "a2") and two.windows["violent_threat"].context
    # Evidence of a joined window names the message each span lies in, in that message's own text. Which
    # words the tiny model leans on depends on the CPU's float kernels (on an AMX Xeon no single deletion
    # moves its score on this pair), so every pair is read, and some must show evidence.
    explained = 0
    for number, (pair_first, pair_second) in enumerate(split_pairs()):
        send(f"e{number}a", pair_first, f"erin{number}", f"m-evidence-{number}")
        clock.now += 5
        joined = send(f"e{number}b", pair_second, f"erin{number}", f"m-evidence-{number}")
        assert joined.labels == ["violent_threat"]
        spans = (joined.evidence or {})["violent_threat"]
        explained += bool(spans)
        texts = {f"e{number}a": pair_first, f"e{number}b": pair_second}
        for span in spans:
            assert texts[span.message_id][span.start : span.end] == span.text
    assert explained
    # Two speakers: not joined.
    send("b1", first, "bob", "m2")
    clock.now += 5
    other = send("c1", second, "carol", "m2")
    assert other.action == "allow" and other.context == ("c1",)
    # One speaker, an hour apart: not joined.
    send("d1", first, "dave", "m3")
    clock.now += 3600
    later = send("d2", second, "dave", "m3")
    assert later.action == "allow" and later.context == ("d2",)


# -- the service (HTTP and WebSocket) --------------------------------------------------------------------


@dataclass
class Server:
    url: str
    app: Any
    clock: Clock

    def score(self, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/v1/score", json={"messages": messages, **extra}, timeout=60)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def captions(self, meeting: str, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from websockets.asyncio.client import connect

        async def run() -> list[dict[str, Any]]:
            replies = []
            url = self.url.replace("http://", "ws://") + f"/v1/meetings/{meeting}/captions"
            async with connect(url, open_timeout=30, max_size=None) as websocket:
                for frame in frames:
                    await websocket.send(json.dumps(frame))
                    replies.append(json.loads(await asyncio.wait_for(websocket.recv(), 60)))
            return replies

        return asyncio.run(run())

    def audit_rows(self, table: Any = decisions_table) -> list[dict[str, Any]]:
        with self.app.state.audit.engine.connect() as connection:
            return [dict(row) for row in connection.execute(select(table)).mappings()]


@pytest.fixture(scope="module")
def server(
    threat_model: Path, hash_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    from serve_support import live_server

    from textguard.service.app import create_app
    from textguard.service.settings import ServiceSettings

    settings = ServiceSettings(
        model=str(threat_model),
        audit_url=f"sqlite:///{tmp_path_factory.mktemp('audit') / 'audit.db'}",
        audit_hash_key=SecretStr("decision-path"),
        hash_lists=hash_store,
        model_poll_seconds=0,
        warmup=False,
        report_min_count=1,  # the known-content test reads exact small counts
        report_min_meetings=1,
    )
    app = create_app(settings)
    clock = Clock()
    with live_server(app) as base_url:
        app.state.moderator.clock = clock  # chat messages are placed in time by the moderator's clock
        yield Server(base_url, app, clock)


def test_score_reads_the_padded_threat(server: Server) -> None:
    result = server.score([{"id": "p1", "text": padded_threat()}])["results"][0]
    assert result["labels"] == ["violent_threat"] and result["action"] in ("review", "block")
    assert result["windows"]["violent_threat"]["context"] is False
    assert result["windows"]["violent_threat"]["index"] > 0
    assert result["evidence"] is None  # not asked for: not computed


def test_score_evidence_of_the_padded_threat_lies_on_the_threat(
    keyword_scorer: Scorer, tmp_path: Path
) -> None:
    from serve_support import live_server

    from textguard.service.app import create_app
    from textguard.service.settings import ServiceSettings

    settings = ServiceSettings(
        model="unused: a prebuilt scorer is served",
        audit_url=f"sqlite:///{tmp_path / 'audit.db'}",
        audit_hash_key=SecretStr("evidence"),
        model_poll_seconds=0,
        warmup=False,
    )
    text = f"{padding(400)} {ISSUE_THREAT}"
    with live_server(create_app(settings, keyword_scorer)) as url:
        body = {"messages": [{"id": "e1", "text": text}], "evidence": True}
        response = httpx.post(f"{url}/v1/score", json=body, timeout=60)
    assert response.status_code == 200, response.text
    spans = response.json()["results"][0]["evidence"]["violent_threat"]
    assert {span["text"] for span in spans} == set(KEYWORDS)
    assert all(span["start"] >= text.index(ISSUE_THREAT) and span["message_id"] == "e1" for span in spans)


def test_score_joins_a_speakers_split_chat_messages(server: Server) -> None:
    first, second = split_pairs()[2]

    def send(message_id: str, text: str, speaker: str, meeting: str) -> dict[str, Any]:
        message = {"id": message_id, "text": text, "meeting_id": meeting, "speaker_id": speaker}
        return dict(server.score([message])["results"][0])

    assert send("s1", first, "alice", "chat-1")["action"] == "allow"
    server.clock.now += 10
    flagged = send("s2", second, "alice", "chat-1")
    assert flagged["labels"] == ["violent_threat"] and flagged["context"] == ["s1", "s2"]
    assert flagged["windows"]["violent_threat"]["messages"] == ["s1", "s2"]
    rows = server.audit_rows()
    audit = server.app.state.audit
    row = next(row for row in rows if row["message_hash"] == audit.hash_message_id("s2"))
    assert row["context_hashes"] == [audit.hash_message_id("s1")] and row["source"] == "chat"
    # Two speakers in one meeting, or one speaker an hour apart: not joined.
    send("t1", first, "bob", "chat-2")
    assert send("t2", second, "carol", "chat-2")["context"] == ["t2"]
    send("u1", first, "dave", "chat-3")
    server.clock.now += 3600
    later = send("u2", second, "dave", "chat-3")
    assert later["action"] == "allow" and later["context"] == ["u2"]
    # Messages without a meeting and speaker are never joined.
    assert server.score([{"id": "v1", "text": first}, {"id": "v2", "text": second}])["results"][1][
        "context"
    ] == ["v2"]


def test_known_content_is_matched_audited_and_reported(server: Server) -> None:
    results = server.score([{"id": "k1", "text": PASSAGE}, {"id": "k2", "text": EDITED}])["results"]
    exact, edited = results
    # Exact copy: the default policy blocks it; a light edit matches by MinHash and goes to review.
    assert exact["matches"][0]["kind"] == "exact" and exact["action"] == "block"
    assert [m["kind"] for m in edited["matches"]] == ["minhash"] and edited["action"] == "review"
    assert edited["matches"][0]["list_id"] == "test-manifestos" and edited["matches"][0]["distance"] > 0
    assert exact["labels"] == edited["labels"] == ["extremist_glorification"]
    assert max(exact["scores"].values()) < REVIEW  # the model alone would have allowed both
    unrelated = server.score([{"id": "k3", "text": padding(200)}])["results"][0]
    assert unrelated["matches"] == [] and unrelated["action"] == "allow"
    # The match is in the audit trail and in the transparency report.
    matches = server.audit_rows(matches_table)
    assert {row["kind"] for row in matches} >= {"exact", "minhash"}
    assert all(row["list_id"] == "test-manifestos" for row in matches)
    today = datetime.now(UTC).date().isoformat()
    report = httpx.get(f"{server.url}/v1/transparency/report", params={"since": today, "until": today}).json()
    by_list = {item["key"]: item for item in report["by_known_content"]}
    assert by_list["test-manifestos/minhash"]["actions"]["review"] >= 1
    assert by_list["test-manifestos/exact"]["actions"]["block"] >= 1
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'textguard_known_content_matches_total{kind="minhash",list_id="test-manifestos"}' in metrics


def test_hash_lists_changed_while_serving_are_matched(server: Server, hash_store: Path) -> None:
    from serve_support import wait_for

    slogan = "the northern order will rise again at dawn"
    assert server.score([{"id": "n1", "text": slogan}])["results"][0]["matches"] == []
    args = ["hashes", "add", "--list", "test-slogans", "--text", slogan, "--store", str(hash_store)]
    assert CliRunner().invoke(cli, args).exit_code == 0

    def matched() -> bool:
        return bool(server.score([{"id": "n2", "text": slogan.upper()}])["results"][0]["matches"])

    wait_for(matched, timeout=30)  # the store is checked every hash_lists_poll_seconds (2 s)


def test_caption_stream_reads_the_padded_threat_and_its_rows_carry_the_language(server: Server) -> None:
    frame = {"segment_id": "c1", "speaker_id": "spk", "text": padded_threat(), "start": 0, "end": 9}
    (reply,) = server.captions("captions-padded", [{**frame, "final": True}])
    assert reply["labels"] == ["violent_threat"] and reply["window_segments"] == ["c1"]
    assert "evidence" not in reply
    audit = server.app.state.audit
    row = next(row for row in server.audit_rows() if row["message_hash"] == audit.hash_message_id("c1"))
    assert row["source"] == "caption" and row["language"] == "en"


def test_caption_stream_evidence_spans_the_segments_of_a_split_threat(server: Server) -> None:
    # Every pair (see the library test above: which words the tiny model leans on depends on the CPU).
    explained = 0
    for number, (first, second) in enumerate(split_pairs()):
        frames = [
            {"segment_id": "e1", "speaker_id": "spk", "text": first, "start": 0, "end": 3, "final": True},
            {"segment_id": "e2", "speaker_id": "spk", "text": second, "start": 3, "end": 6, "final": True},
        ]
        replies = server.captions(f"captions-evidence-{number}", [frames[0], {**frames[1], "evidence": True}])
        assert replies[1]["labels"] == ["violent_threat"] and replies[1]["window_segments"] == ["e1", "e2"]
        spans = replies[1]["evidence"]["violent_threat"]
        explained += bool(spans)
        assert all(
            {"e1": first, "e2": second}[s["message_id"]][s["start"] : s["end"]] == s["text"] for s in spans
        )
    assert explained


def test_replicas_sharing_redis_join_a_speakers_messages(
    threat_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/15", socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis server answers on 127.0.0.1:6379")
    from serve_support import live_server

    from textguard.service.app import create_app
    from textguard.service.settings import ServiceSettings

    def replica(name: str) -> Any:
        settings = ServiceSettings(
            model=str(threat_model),
            audit_url=f"sqlite:///{tmp_path_factory.mktemp(name) / 'audit.db'}",
            audit_hash_key=SecretStr("replicas"),
            context_backend="redis",
            context_redis_url="redis://127.0.0.1:6379/15",
            model_poll_seconds=0,
            warmup=False,
        )
        return create_app(settings)

    first, second = split_pairs()[0]
    meeting = f"replicas-{datetime.now(UTC).timestamp()}"  # Redis outlives the test run
    with live_server(replica("a")) as url_a, live_server(replica("b")) as url_b:
        for url, message_id, text in ((url_a, "r1", first), (url_b, "r2", second)):
            message = {"id": message_id, "text": text, "meeting_id": meeting, "speaker_id": "alice"}
            response = httpx.post(f"{url}/v1/score", json={"messages": [message]}, timeout=60)
            assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    # The second message reached the other replica and was still read with the first.
    assert result["labels"] == ["violent_threat"] and result["context"] == ["r1", "r2"]


@pytest.fixture(scope="module")
def evidence_pair(scorer: Scorer) -> tuple[str, str]:
    """A split threat whose joined window has evidence with this machine's float kernels (see the
    library test above), found through the library."""
    for first, second in split_pairs():
        context = MemoryContextStore(ContextLimits())
        moderator = Moderator(PolicySet.load(POLICIES), context=context, clock=Clock())
        model = ServedModel.local(scorer)
        moderator.decide([Item("x1", first, meeting_id="m", speaker_id="s")], model)
        joined = moderator.decide([Item("x2", second, meeting_id="m", speaker_id="s")], model, evidence=True)
        if (joined.decisions[0].evidence or {}).get("violent_threat"):
            return first, second
    pytest.fail("the threat model shows evidence for no split threat")


def test_cli_reads_an_archive_with_context_and_evidence(
    threat_model: Path, evidence_pair: tuple[str, str], tmp_path: Path
) -> None:
    first, second = evidence_pair
    rows = [
        {
            "id": "a1",
            "text": first,
            "meeting_id": "m",
            "speaker_id": "alice",
            "sent_at": "2026-01-05T10:00:00Z",
        },
        {
            "id": "a2",
            "text": second,
            "meeting_id": "m",
            "speaker_id": "alice",
            "sent_at": "2026-01-05T10:00:08Z",
        },
        {
            "id": "b1",
            "text": second,
            "meeting_id": "m",
            "speaker_id": "bob",
            "sent_at": "2026-01-05T10:00:09Z",
        },
    ]
    source, output = tmp_path / "archive.jsonl", tmp_path / "decided.parquet"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    args = ["score", "--model", str(threat_model), "--input", str(source), "--output", str(output)]
    result = CliRunner().invoke(
        cli, [*args, "--policy", str(POLICIES), "--context", "--evidence", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    out = pd.read_parquet(output)
    assert out["action"].tolist()[0] == "allow" and out["action"].tolist()[2] == "allow"
    assert list(out["flagged_labels"][1]) == ["violent_threat"] and list(out["context"][1]) == ["a1", "a2"]
    spans = json.loads(out["evidence"][1])["violent_threat"]
    texts = {"a1": first, "a2": second}
    assert spans and all(texts[s["message_id"]][s["start"] : s["end"]] == s["text"] for s in spans)
    assert json.loads(out["evidence"][0]) == {}


# -- textguard score and parity ----------------------------------------------------------------------------


def test_parity_library_http_websocket_and_cli_give_the_same_decisions(
    server: Server, scorer: Scorer, hash_store: Path, tmp_path: Path
) -> None:
    first, second = split_pairs()[3]
    texts = [padded_threat(), threat(), padding(400), first, second, PASSAGE, EDITED, "ok see you all"]
    ids = [f"x{index}" for index in range(len(texts))]

    # The library, as a batch job would use it.
    from textguard.known_content import KnownContentIndex

    moderator = Moderator(PolicySet.load(POLICIES), known_content=KnownContentIndex.load(hash_store))
    library = moderator.decide(
        [Item(i, t) for i, t in zip(ids, texts, strict=True)], ServedModel.local(scorer)
    ).decisions
    expected = [(d.labels, d.action) for d in library]
    expected_scores = np.array([[d.scores[label] for label in LABELS] for d in library])
    assert expected[0][0] == ["violent_threat"] and expected[2] == ([], "allow")  # padded: flagged

    # POST /v1/score (no meeting: each message on its own).
    http = server.score([{"id": i, "text": t} for i, t in zip(ids, texts, strict=True)])["results"]
    # The caption WebSocket (each segment from its own speaker: no context).
    frames = [
        {"segment_id": i, "speaker_id": f"speaker-{i}", "text": t, "start": 0, "end": 1, "final": True}
        for i, t in zip(ids, texts, strict=True)
    ]
    captions = server.captions("parity", frames)
    # textguard score --policy (the CLI, through its typer app).
    source, output = tmp_path / "chat.csv", tmp_path / "scored.jsonl"
    pd.DataFrame({"id": ids, "text": texts}).to_csv(source, index=False)
    args = ["score", "--model", str(server.app.state.settings.model), "--input", str(source)]
    args += ["--output", str(output), "--policy", str(POLICIES), "--hash-lists", str(hash_store)]
    result = CliRunner().invoke(cli, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]

    def answers(replies: list[dict[str, Any]]) -> list[tuple[list[str], str, list[float]]]:
        return [(r["labels"], r["action"], [r["scores"][label] for label in LABELS]) for r in replies]

    by_cli = [(r["flagged_labels"], r["action"], [r[f"score_{label}"] for label in LABELS]) for r in rows]
    for name, found in (("/v1/score", answers(http)), ("websocket", answers(captions)), ("cli", by_cli)):
        assert [(labels, action) for labels, action, _ in found] == expected, name
        np.testing.assert_allclose([scores for _, _, scores in found], expected_scores, atol=1e-5)
    assert [len(row["matches"]) > 0 for row in rows] == [len(d.matches) > 0 for d in library]
