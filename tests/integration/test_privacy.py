"""Secrets and privacy of a real `textguard serve` process (127.0.0.1, tiny model, debug logs to a file,
an SQLite audit store in WAL mode).

The API-key digests and the audit hash key come from files named by TEXTGUARD_* variables (never the
command line). Distinctive random markers are sent as texts, message ids, meeting ids, speaker ids and
caption segment ids over /v1/score, /v1/moderations and the caption WebSocket, in valid requests and in
refused ones. Then the log file, the audit database bytes (main file, -wal and -shm, while serving and
after shutdown), /metrics, /v1/model, /openapi.json and the transparency report are searched: no
marker, no key and no key digest may appear anywhere. The audit rows hold keyed HMACs of the texts and
ids (checked against the key), never the text itself or an unkeyed hash of it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
from serve_process import serve_process

from textguard.service.security import api_key_digest
from textguard.text import normalize


def _marker(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(6)}"


def _hmac(key: str, domain: str, value: str) -> str:
    return hmac.new(key.encode(), domain.encode() + b"\x00" + value.encode(), hashlib.sha256).hexdigest()


def _database_bytes(db: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(db.parent.glob(db.name + "*")))


def test_no_text_id_or_secret_leaks_into_logs_audit_metrics_or_answers(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    from websockets.sync.client import connect

    api_key = "tg_" + secrets.token_urlsafe(24)
    hash_key = "audit-" + secrets.token_hex(16)
    (tmp_path / "keys.txt").write_text(f"# clients\n{api_key_digest(api_key)}\n", encoding="utf-8")
    (tmp_path / "hash.key").write_text(hash_key + "\n", encoding="utf-8")
    db = tmp_path / "audit" / "audit.db"
    env = {
        "TEXTGUARD_API_KEYS_FILE": str(tmp_path / "keys.txt"),
        "TEXTGUARD_AUDIT_HASH_KEY_FILE": str(tmp_path / "hash.key"),
        "TEXTGUARD_AUDIT_URL": f"sqlite:///{db}",
        "TEXTGUARD_LOG_LEVEL": "debug",
        "TEXTGUARD_MODEL_POLL_SECONDS": "0",
    }
    auth = {"Authorization": f"Bearer {api_key}"}
    texts = {name: _marker(name) for name in ("chat", "chat2", "moderation", "part", "caption", "interim")}
    ids = {
        name: _marker(name) for name in ("message", "message2", "meeting", "speaker", "segment", "segment2")
    }
    refused = {name: _marker(name) for name in ("too-long", "bad-json", "bad-frame", "bad-key")}
    answers: dict[str, Any] = {}

    with serve_process(tiny_artifact, tmp_path, env=env) as server:
        command_line = " ".join(server.ps.cmdline())
        with httpx.Client(base_url=server.url, timeout=30) as client:
            score = client.post(
                "/v1/score",
                headers=auth,
                json={
                    "messages": [
                        {"id": ids["message"], "text": f"{texts['chat']} see you at noon",
                         "meeting_id": ids["meeting"], "speaker_id": ids["speaker"]},
                        {"id": ids["message2"], "text": texts["chat2"], "language": "en"},
                    ],
                    "policy": "strict",
                },
            )  # fmt: skip
            moderation = client.post(
                "/v1/moderations",
                headers=auth,
                json={"input": [texts["moderation"], {"type": "text", "text": texts["part"]}]},
            )
            errors = [
                client.post(
                    "/v1/score",
                    headers=auth,
                    json={"messages": [{"id": "a", "text": refused["too-long"] + "x" * 5000}]},
                ),
                client.post(
                    "/v1/score",
                    headers={**auth, "content-type": "application/json"},
                    content=f'{{"messages": [{{"id": "a", "text": "{refused["bad-json"]}"'.encode(),
                ),
                client.post("/v1/score", headers={"Authorization": f"Bearer {refused['bad-key']}"}, json={}),
                client.get("/v1/model"),  # no key: 401
            ]
            with connect(
                f"{server.ws_url}/v1/meetings/{ids['meeting']}/captions?policy=strict",
                additional_headers=auth,
            ) as socket_:
                for segment_id, text, final in (
                    (ids["segment"], texts["caption"], True),
                    (ids["segment2"], texts["interim"], False),
                ):
                    segment = {"segment_id": segment_id, "speaker_id": ids["speaker"], "text": text}
                    socket_.send(json.dumps({**segment, "start": 0, "end": 1, "final": final}))
                    answers[segment_id] = json.loads(socket_.recv(timeout=30))
                socket_.send('{"text": "' + refused["bad-frame"])
                answers["bad-frame"] = json.loads(socket_.recv(timeout=30))
            served = {
                "metrics": client.get("/metrics").text,
                "model": client.get("/v1/model", headers=auth).text,
                "openapi": client.get("/openapi.json").text,
                "report": client.get(
                    "/v1/transparency/report",
                    headers=auth,
                    params={"since": time.strftime("%Y-%m-%d", time.gmtime()),
                            "until": time.strftime("%Y-%m-%d", time.gmtime())},
                ).text,
            }  # fmt: skip
        database_while_serving = _database_bytes(db)
        assert Path(f"{db}-wal").is_file(), "the audit store is not in WAL mode"
        code = server.stop()
    logs = server.log_path.read_text(encoding="utf-8")
    database_after = _database_bytes(db)

    # Everything was exercised as intended.
    assert score.status_code == 200 and moderation.status_code == 200
    assert [error.status_code for error in errors] == [422, 400, 401, 401]
    assert answers[ids["segment"]]["segment_id"] == ids["segment"] and "scores" in answers[ids["segment2"]]
    assert answers["bad-frame"]["error"]["type"] == "invalid_json"
    assert code in (0, -15)
    entries = [json.loads(line) for line in logs.splitlines() if line.strip()]
    routes = {entry.get("route") for entry in entries if entry["logger"] == "textguard.access"}
    assert {"/v1/score", "/v1/moderations", "/v1/model", "/metrics"} <= routes
    starting = next(entry for entry in entries if entry["msg"] == "service starting")
    assert starting["settings"]["audit_hash_key"] == "**********" and starting["settings"]["api_keys"] == 1
    assert any("WebSocket /v1/meetings/{meeting_id}/captions" in entry["msg"] for entry in entries)

    secret_values = {
        "api key": api_key,
        "api key digest": api_key_digest(api_key),
        "audit hash key": hash_key,
    }
    markers = {**texts, **ids, **refused}
    places = {
        "logs": logs,
        "audit db while serving": database_while_serving.decode("latin-1"),
        "audit db after shutdown": database_after.decode("latin-1"),
        **served,
    }
    leaks = [
        (what, where)
        for what, value in {**markers, **secret_values}.items()
        for where, content in places.items()
        if value in content
    ]
    assert not leaks, f"found in the wrong place: {leaks}"
    for error in errors:
        body = error.text
        assert not [value for value in [*refused.values(), *secret_values.values()] if value in body], body
    assert not [value for value in secret_values.values() if value in command_line]

    # The audit rows: keyed hashes of text and ids, no text, no unkeyed hash.
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT source, text, text_hash, message_hash, meeting_hash, speaker_hash FROM audit_decisions"
        ).fetchall()
    assert len(rows) == 2 + 2 + 1  # two chat messages, two moderation inputs, one final caption
    assert all(row[1] is None for row in rows)
    text_hashes = {row[2] for row in rows}
    for text in (
        f"{texts['chat']} see you at noon",
        texts["chat2"],
        texts["moderation"],
        texts["part"],
        texts["caption"],
    ):
        assert _hmac(hash_key, "text", normalize(text)) in text_hashes
        assert hashlib.sha256(text.encode()).hexdigest() not in database_after.decode("latin-1")
    message_hashes = {row[3] for row in rows}
    assert _hmac(hash_key, "message_id", ids["message"]) in message_hashes
    assert _hmac(hash_key, "message_id", ids["segment"]) in message_hashes
    assert _hmac(hash_key, "meeting_id", ids["meeting"]) in {row[4] for row in rows}
    assert _hmac(hash_key, "speaker_id", ids["speaker"]) in {row[5] for row in rows}
