"""Rate limits on real servers: X-Forwarded-For believed only from trusted proxies, one limit shared by two
`textguard serve` processes through Redis (127.0.0.1:6379; skipped when it does not answer), and a Redis
that stops answering falls back to per-process counting instead of failing requests or dropping the limit.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import httpx
import pytest
import yaml
from serve_process import serve_process
from serve_support import live_server, service_settings

from textguard.scorer import Scorer
from textguard.service.app import create_app
from textguard.service.security import api_key_digest

BODY = {"messages": [{"id": "m", "text": "see you at the standup"}]}
REDIS = ("127.0.0.1", 6379)


@pytest.fixture(scope="module")
def scorer(tiny_artifact: Path) -> Scorer:
    return Scorer.from_artifact(tiny_artifact)


def _statuses(base_url: str, forwarded_for: list[str]) -> list[int]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        return [
            client.post("/v1/score", json=BODY, headers={"X-Forwarded-For": address}).status_code
            for address in forwarded_for
        ]


def test_rotating_x_forwarded_for_from_an_untrusted_peer_does_not_reset_the_limit(
    tiny_artifact: Path, tmp_path: Path, scorer: Scorer
) -> None:
    settings = service_settings(tiny_artifact, tmp_path, rate_limit_per_minute=3)
    with live_server(create_app(settings, scorer)) as base_url:
        statuses = _statuses(base_url, [f"203.0.113.{index}" for index in range(6)])
    assert statuses == [200, 200, 200, 429, 429, 429]


def test_a_trusted_proxys_x_forwarded_for_names_the_client(
    tiny_artifact: Path, tmp_path: Path, scorer: Scorer
) -> None:
    settings = service_settings(
        tiny_artifact, tmp_path, rate_limit_per_minute=3, trusted_proxies="127.0.0.0/8"
    )
    with live_server(create_app(settings, scorer)) as base_url:
        distinct = _statuses(base_url, [f"203.0.113.{index}" for index in range(6)])
        same = _statuses(base_url, ["198.51.100.7"] * 4)
        # A client-supplied address in front of the proxy's entry is not believed: the rightmost
        # untrusted address (what the trusted proxy saw) is the client.
        spoofed = _statuses(base_url, [f"10.9.9.{index}, 198.51.100.7" for index in range(2)])
    assert distinct == [200] * 6
    assert same == [200, 200, 200, 429]
    assert spoofed == [429, 429]


def _redis_answers() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_two_server_processes_share_one_limit_through_redis(tiny_artifact: Path, tmp_path: Path) -> None:
    if not _redis_answers():
        pytest.skip("no Redis answers on 127.0.0.1:6379")
    key = "tg_" + secrets.token_urlsafe(16)
    # A key id of its own per run: the Redis counters of earlier runs never meet this one.
    key_id = f"replicas-{secrets.token_hex(6)}"
    keys = tmp_path / "keys.yaml"
    entry = {"id": key_id, "sha256": api_key_digest(key), "tenant": "acme", "scopes": ["score"]}
    keys.write_text(yaml.safe_dump({"keys": [entry]}), encoding="utf-8")
    env = {
        "TEXTGUARD_AUDIT_HASH_KEY": "replicas",
        "TEXTGUARD_API_KEYS_FILE": str(keys),
        "TEXTGUARD_RATE_LIMIT_PER_MINUTE": "10",
        "TEXTGUARD_RATE_LIMIT_REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0",
    }
    auth = {"Authorization": f"Bearer {key}"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    args = ["--model-poll-seconds", "0"]
    with (
        serve_process(tiny_artifact, tmp_path / "a", args, env) as first,
        serve_process(tiny_artifact, tmp_path / "b", args, env) as second,
    ):
        statuses = []
        for server in (first, second, first, second):
            statuses += [
                httpx.post(f"{server.url}/v1/score", json=BODY, headers=auth, timeout=30).status_code
            ]
            statuses += [
                httpx.post(f"{server.url}/v1/score", json=BODY, headers=auth, timeout=30).status_code
            ]
        batch = {"messages": [{"id": str(i), "text": "hello"} for i in range(3)]}
        over = httpx.post(f"{second.url}/v1/score", json=batch, headers=auth, timeout=30)
    assert statuses == [200] * 8
    assert over.status_code == 429  # 8 + 3 > 10 across both processes (each alone would have room)


def test_a_redis_that_does_not_answer_falls_back_to_counting_in_process(
    tiny_artifact: Path, tmp_path: Path, scorer: Scorer
) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = service_settings(
        tiny_artifact, tmp_path, rate_limit_per_minute=3, rate_limit_redis_url=f"redis://127.0.0.1:{port}/0"
    )
    with live_server(create_app(settings, scorer)) as base_url:
        statuses = _statuses(base_url, ["203.0.113.1"] * 4)
    assert statuses == [200, 200, 200, 429]
