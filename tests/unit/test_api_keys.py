"""Tenant API keys: the key file, `textguard keys new`, scopes (403), per-message and per-tenant rate
limits, and what /readyz tells a caller without an admin key (TestClient, the tiny model)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from textguard.cli import app as cli_app
from textguard.scorer import Scorer
from textguard.service.app import create_app
from textguard.service.keys import SCOPES, ApiKeyEntry, KeyFileError, append_key, read_key_file
from textguard.service.security import api_key_digest
from textguard.service.settings import ServiceSettings

KEYS = {
    "acme-score": ("tg_acme_score", "acme", ["score"]),
    "acme-report": ("tg_acme_report", "acme", ["report"]),
    "acme-ops": ("tg_acme_ops", "acme", ["admin"]),
    "globex-score": ("tg_globex_score", "globex", ["score"]),
}
DIGEST = api_key_digest("tg_some_key")


def _bearer(key_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[key_id][0]}"}


def _write_key_file(path: Path, tenants: dict[str, Any] | None = None, **per_key_limits: int) -> Path:
    keys = []
    for key_id, (key, tenant, scopes) in KEYS.items():
        entry: dict[str, Any] = {
            "id": key_id,
            "sha256": api_key_digest(key),
            "tenant": tenant,
            "scopes": scopes,
        }
        if key_id.replace("-", "_") in per_key_limits:
            entry["rate_limit_per_minute"] = per_key_limits[key_id.replace("-", "_")]
        keys.append(entry)
    path.write_text(yaml.safe_dump({"tenants": tenants or {}, "keys": keys}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def scorer(tiny_artifact: Path) -> Scorer:
    return Scorer.from_artifact(tiny_artifact)


@pytest.fixture
def serve(scorer: Scorer, tiny_artifact: Path, tmp_path: Path) -> Callable[..., Any]:
    @contextmanager
    def run(*, model_scorer: Scorer | None = scorer, **overrides: Any) -> Iterator[TestClient]:
        values: dict[str, Any] = {
            "model": str(tiny_artifact),
            "audit_url": f"sqlite:///{tmp_path / 'audit.db'}",
            "audit_hash_key": SecretStr("keys"),
            "model_poll_seconds": 0,
            **overrides,
        }
        with TestClient(create_app(ServiceSettings(**values), scorer=model_scorer)) as client:
            yield client

    return run


def _messages(count: int) -> dict[str, Any]:
    return {"messages": [{"id": f"m{i}", "text": "see you at the standup"} for i in range(count)]}


# -- the key file -----------------------------------------------------------------------------------------


def test_the_key_file_gives_each_key_a_tenant_and_scopes(tmp_path: Path) -> None:
    settings = ServiceSettings(api_keys_file=_write_key_file(tmp_path / "keys.yaml"), model=str(tmp_path))
    by_id = {key.id: key for key in settings.api_keys.keys}
    assert set(by_id) == set(KEYS)
    assert (by_id["acme-score"].tenant, by_id["acme-score"].scopes) == ("acme", ("score",))
    assert by_id["globex-score"].sha256 == api_key_digest("tg_globex_score")


def test_legacy_digests_are_one_default_tenant_with_every_scope(tmp_path: Path) -> None:
    lines = tmp_path / "digests.txt"
    lines.write_text(f"# ops\n{api_key_digest('tg_a')}\n", encoding="utf-8")
    settings = ServiceSettings(
        api_keys_file=lines, api_key_hashes=SecretStr(api_key_digest("tg_b")), model=str(tmp_path)
    )
    assert {(key.tenant, key.scopes) for key in settings.api_keys.keys} == {("default", SCOPES)}
    assert settings.api_key_digests == {api_key_digest("tg_a"), api_key_digest("tg_b")}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("keys:\n  - {id: a, sha256: tg_plaintext_key, tenant: t, scopes: [score]}\n", "keys.0.sha256"),
        (f"keys:\n  - {{id: a, sha256: {DIGEST}, tenant: t, scopes: [superuser]}}\n", "keys.0.scopes.0"),
        (f"keys:\n  - {{id: a, sha256: {DIGEST}, tenant: T!, scopes: [score]}}\n", "keys.0.tenant"),
        ("tg_plaintext_key: 1\nkeys: []\n", "top level: unknown field"),
        (f"{DIGEST}\ntg_plaintext_key\n", "line 2 is not a sha256 hex digest"),
        (
            "keys:\n"
            + "".join(
                f"  - {{id: a, sha256: {api_key_digest(k)}, tenant: t, scopes: [score]}}\n" for k in "xy"
            ),
            "key id 'a' is used twice",
        ),
    ],
)
def test_a_bad_key_file_is_refused_naming_the_entry_never_a_key(
    tmp_path: Path, document: str, problem: str
) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(document, encoding="utf-8")
    with pytest.raises(ValidationError) as caught:
        ServiceSettings(api_keys_file=path, model=str(tmp_path))
    assert problem in str(caught.value)
    assert "tg_plaintext_key" not in str(caught.value)


def test_keys_new_mints_a_key_and_appends_only_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    runner = CliRunner()
    first = runner.invoke(
        cli_app, ["keys", "new", "--tenant", "acme", "--scope", "score", "--file", str(path)]
    )
    second = runner.invoke(
        cli_app,
        ["keys", "new", "--tenant", "globex", "--scope", "report", "--scope", "review", "--id", "globex-1",
         "--rate-limit-per-minute", "60", "--file", str(path)],
    )  # fmt: skip
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    keys = [
        line.split()[1]
        for result in (first, second)
        for line in result.output.splitlines()
        if line.startswith("key ")
    ]
    assert all(key.startswith("tg_") for key in keys) and len(keys) == 2
    text = path.read_text(encoding="utf-8")
    assert not any(key in text for key in keys)
    parsed = read_key_file(path, text)
    assert [(k.tenant, k.scopes, k.sha256) for k in parsed.keys] == [
        ("acme", ("score",), api_key_digest(keys[0])),
        ("globex", ("report", "review"), api_key_digest(keys[1])),
    ]
    assert parsed.keys[1].id == "globex-1" and parsed.keys[1].rate_limit_per_minute == 60
    refused = runner.invoke(
        cli_app, ["keys", "new", "--tenant", "acme", "--scope", "root", "--file", str(path)]
    )
    assert refused.exit_code != 0 and path.read_text(encoding="utf-8") == text


def test_appending_to_a_bare_digest_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "digests.txt"
    path.write_text(api_key_digest("tg_a") + "\n", encoding="utf-8")
    entry = ApiKeyEntry(id="n", sha256=api_key_digest("tg_n"), tenant="acme", scopes=("score",))
    with pytest.raises(KeyFileError, match="bare digests"):
        append_key(path, entry)


# -- scopes ---------------------------------------------------------------------------------------------


def test_each_route_needs_its_scope(serve: Callable[..., Any], tmp_path: Path) -> None:
    from starlette.testclient import WebSocketDenialResponse

    with serve(api_keys_file=_write_key_file(tmp_path / "keys.yaml")) as client:
        report = "/v1/transparency/report?since=2026-01-01&until=2026-01-02"
        assert client.post("/v1/score", json=_messages(1), headers=_bearer("acme-score")).status_code == 200
        moderation = client.post("/v1/moderations", json={"input": "hi"}, headers=_bearer("acme-report"))
        assert (moderation.status_code, moderation.json()["error"]["type"]) == (403, "forbidden")
        assert "'score' scope" in moderation.json()["error"]["message"]
        denied = client.get(report, headers=_bearer("acme-score"))
        assert (denied.status_code, denied.json()["error"]["type"]) == (403, "forbidden")
        assert client.get(report, headers=_bearer("acme-report")).status_code == 200
        assert client.get(report, headers=_bearer("acme-ops")).status_code == 200  # admin has every scope
        assert client.get("/v1/model", headers=_bearer("acme-report")).status_code == 200  # any key
        with (
            pytest.raises(WebSocketDenialResponse) as refused,
            client.websocket_connect("/v1/meetings/m1/captions", headers=_bearer("acme-report")),
        ):
            pass
        assert refused.value.status_code == 403
        segment = {"segment_id": "s1", "speaker_id": "a", "text": "hi", "start": 0, "end": 1, "final": True}
        with client.websocket_connect("/v1/meetings/m1/captions", headers=_bearer("acme-score")) as socket:
            socket.send_json(segment)
            assert socket.receive_json()["segment_id"] == "s1"


# -- rate limits ----------------------------------------------------------------------------------------


def _status(client: TestClient, count: int, key_id: str, path: str = "/v1/score") -> int:
    if path == "/v1/model":
        return client.get(path, headers=_bearer(key_id)).status_code
    if path == "/v1/moderations":
        return client.post(path, json={"input": ["hi"] * count}, headers=_bearer(key_id)).status_code
    return client.post(path, json=_messages(count), headers=_bearer(key_id)).status_code


def test_rate_limits_count_messages_not_requests(serve: Callable[..., Any], tmp_path: Path) -> None:
    keys = _write_key_file(tmp_path / "keys.yaml")
    with serve(api_keys_file=keys, rate_limit_per_minute=10) as client:
        assert _status(client, 6, "acme-score") == 200
        limited = client.post("/v1/score", json=_messages(5), headers=_bearer("acme-score"))
        assert limited.status_code == 429 and limited.json()["error"]["type"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert _status(client, 4, "acme-score", "/v1/moderations") == 200  # 6 + 4 = 10 fit
        assert _status(client, 1, "acme-score") == 429
        too_big = client.post("/v1/score", json=_messages(11), headers=_bearer("globex-score"))
        assert (
            too_big.status_code == 429
            and "send fewer messages per request" in too_big.json()["error"]["message"]
        )
        assert _status(client, 10, "globex-score") == 200  # another key has its own count


def test_a_tenant_limit_covers_all_its_keys_and_a_key_may_have_its_own(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    keys = _write_key_file(
        tmp_path / "keys.yaml", tenants={"acme": {"rate_limit_per_minute": 8}}, globex_score=3
    )
    with serve(api_keys_file=keys, rate_limit_per_minute=100, tenant_rate_limit_per_minute=50) as client:
        assert _status(client, 5, "acme-score") == 200
        assert _status(client, 1, "acme-report", "/v1/model") == 200  # GET: one unit, same tenant
        tenant_limited = client.post("/v1/score", json=_messages(3), headers=_bearer("acme-ops"))
        assert tenant_limited.status_code == 429 and "per tenant" in tenant_limited.json()["error"]["message"]
        assert _status(client, 2, "acme-ops") == 200  # 5 + 1 + 2 = 8
        assert _status(client, 3, "globex-score") == 200
        assert _status(client, 1, "globex-score") == 429  # the key's own limit of 3


# -- /readyz ------------------------------------------------------------------------------------------------


def test_readyz_shows_paths_only_to_an_admin_key(
    serve: Callable[..., Any], tiny_artifact: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_artifact, broken)
    (broken / "tokenizer.json").write_text("{}", encoding="utf-8")  # no longer matches its checksum
    keys = _write_key_file(tmp_path / "keys.yaml")
    with serve(model_scorer=None, model=str(broken), api_keys_file=keys) as client:
        deadline = time.monotonic() + 60
        while "integrity" not in (anonymous := client.get("/readyz")).text:
            assert time.monotonic() < deadline, anonymous.text
            time.sleep(0.05)
        scoped = client.get("/readyz", headers=_bearer("acme-score"))
        admin = client.get("/readyz", headers=_bearer("acme-ops"))
    for response in (anonymous, scoped):
        assert response.status_code == 503
        message = response.json()["error"]["message"]
        assert str(tmp_path) not in message and "<path>" in message
        assert "tokenizer.json does not match its recorded sha256" in message
    assert admin.status_code == 503 and str(broken) in admin.json()["error"]["message"]
