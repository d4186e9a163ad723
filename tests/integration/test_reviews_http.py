"""Reviews, exposure events and the tenant-scoped transparency report over a real uvicorn server.

Three keys: acme's and globex's (score, review, report) and an admin key. Audit rows record the tenant of
the key that asked; a key reviews, reports events on and reads reports of its own tenant only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from serve_support import live_server

from textguard.audit import AuditStore
from textguard.labels import LABELS
from textguard.report import Suppression, aggregate
from textguard.service.app import create_app
from textguard.service.security import api_key_digest
from textguard.service.settings import ServiceSettings

KEYS = {
    "acme": "tg_acme_key_for_tests",
    "globex": "tg_globex_key_for_tests",
    "admin": "tg_admin_key_for_tests",
}
SCORER_ONLY = "tg_acme_scorer_without_review"
HASH_KEY = "reviews-http"


@pytest.fixture(scope="module")
def served(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    tmp_path = tmp_path_factory.mktemp("reviews-http")
    keys_file = tmp_path / "keys.yaml"
    entries = [
        f"  - {{id: {name}-1, sha256: {api_key_digest(key)}, tenant: {name if name != 'admin' else 'ops'}, "
        f"scopes: [{'admin' if name == 'admin' else 'score, review, report'}]}}"
        for name, key in KEYS.items()
    ]
    entries.append(
        f"  - {{id: acme-scorer, sha256: {api_key_digest(SCORER_ONLY)}, tenant: acme, scopes: [score]}}"
    )
    keys_file.write_text("keys:\n" + "\n".join(entries) + "\n", encoding="utf-8")
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
    # The tiny model's scores are random: `quiet` allows everything, `flag_all` reviews everything.
    policy = tmp_path / "policies.yaml"
    policy.write_text(
        "version: 1\ndefault: quiet\npolicies:\n"
        "  quiet:\n    description: allow all\n    allow_laxer_than_model: true\n    thresholds:\n"
        + "".join(f"      {label}: {{review: 0.999999, block: null}}\n" for label in LABELS)
        + "  flag_all:\n    description: review all\n    thresholds:\n"
        + "".join(f"      {label}: {{review: 0.000001, block: null}}\n" for label in LABELS),
        encoding="utf-8",
    )
    settings = ServiceSettings(
        policy=policy,
        model=str(tiny_artifact),
        audit_url=audit_url,
        audit_hash_key=SecretStr(HASH_KEY),
        api_keys_file=keys_file,
        model_poll_seconds=0,
    )
    with live_server(create_app(settings)) as base_url:
        yield base_url, audit_url


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS.get(name, name)}"}


def score(base_url: str, tenant: str, texts: list[str], policy: str = "quiet") -> list[dict[str, Any]]:
    body = {
        "policy": policy,
        "messages": [
            {"id": f"{tenant}-{i}", "text": text, "meeting_id": f"{tenant}-m1", "speaker_id": f"s{i}"}
            for i, text in enumerate(texts)
        ],
    }
    response = httpx.post(f"{base_url}/v1/score", json=body, headers=auth(tenant), timeout=60)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def test_audit_rows_carry_the_tenant_and_decisions_have_ids(served: tuple[str, str]) -> None:
    base_url, audit_url = served
    results = score(base_url, "acme", ["hello everyone", "see you at the standup"])
    assert all(result["decision_id"] for result in results)
    store = AuditStore(audit_url, hash_key=HASH_KEY, create=False)
    info = store.decision(results[0]["decision_id"])
    store.close()
    assert info is not None and info.tenant == "acme"


def test_reviews_and_events_are_recorded_for_the_own_tenant_only(served: tuple[str, str]) -> None:
    base_url, audit_url = served
    flagged = score(base_url, "acme", ["please mute your microphone"], policy="flag_all")[0]
    assert flagged["action"] == "review"
    decision = flagged["decision_id"]
    other = score(base_url, "globex", ["the quarterly numbers are in"])[0]["decision_id"]
    url = f"{base_url}/v1/decisions/{decision}"

    appeal = httpx.post(f"{url}/review", json={"outcome": "appeal"}, headers=auth("acme"))
    assert appeal.status_code == 201, appeal.text
    assert appeal.json()["decision_id"] == decision and appeal.json()["outcome"] == "appeal"
    overturn = httpx.post(f"{url}/review", json={"outcome": "overturn"}, headers=auth("acme"))
    assert overturn.status_code == 201, overturn.text
    shown = datetime.now(UTC) - timedelta(seconds=30)
    event = httpx.post(
        f"{url}/events",
        json={
            "participants": 12,
            "shown_at": shown.isoformat(),
            "removed_at": (shown + timedelta(seconds=8)).isoformat(),
        },
        headers=auth("acme"),
    )
    assert event.status_code == 201, event.text

    # Another tenant's decision: 403, for a review and for an event; the admin key may review it.
    foreign = httpx.post(
        f"{base_url}/v1/decisions/{other}/review", json={"outcome": "confirm"}, headers=auth("acme")
    )
    assert foreign.status_code == 403 and foreign.json()["error"]["type"] == "forbidden"
    foreign_event = httpx.post(
        f"{base_url}/v1/decisions/{other}/events", json={"participants": 3}, headers=auth("acme")
    )
    assert foreign_event.status_code == 403
    assert (
        httpx.post(
            f"{base_url}/v1/decisions/{other}/review", json={"outcome": "confirm"}, headers=auth("admin")
        ).status_code
        == 201
    )

    store = AuditStore(audit_url, hash_key=HASH_KEY, create=False)
    reviews = [(r.decision_id, r.outcome, r.labels, r.reviewer) for r in store.reviews(tenant="acme")]
    store.close()
    assert (decision, "appeal", None, "acme-1") in reviews
    assert (decision, "overturn", None, "acme-1") in reviews  # a flagged decision overturned: benign
    assert all(decision_id != other for decision_id, *_ in reviews)


@pytest.mark.parametrize(
    ("path", "body", "key", "status", "field"),
    [
        ("/v1/decisions/{unknown}/review", {"outcome": "confirm"}, "acme", 404, "decision_id"),
        ("/v1/decisions/{unknown}/events", {"participants": 2}, "acme", 404, "decision_id"),
        ("/v1/decisions/{id}/review", {"outcome": "maybe"}, "acme", 422, "outcome"),
        ("/v1/decisions/{id}/review", {"outcome": "confirm", "labels": ["spam"]}, "acme", 422, "labels.0"),
        ("/v1/decisions/{id}/review", {"outcome": "overturn"}, "acme", 422, "labels"),  # an allow overturned
        ("/v1/decisions/{id}/events", {}, "acme", 422, None),
        ("/v1/decisions/{id}/events", {"participants": -1}, "acme", 422, "participants"),
        ("/v1/decisions/{id}/events", {"shown_at": "2026-11-01T10:00:00"}, "acme", 422, "shown_at"),
        ("/v1/decisions/{id}/review", {"outcome": "confirm"}, SCORER_ONLY, 403, None),  # no review scope
        ("/v1/decisions/{id}/review", {"outcome": "confirm"}, "tg_wrong", 401, None),
    ],
)
def test_bad_review_and_event_requests_are_clear_json_errors(
    served: tuple[str, str], path: str, body: dict[str, Any], key: str, status: int, field: str | None
) -> None:
    base_url, _ = served
    decision = score(base_url, "acme", ["what a lovely agenda"])[0]
    assert decision["action"] == "allow"
    url = base_url + path.format(unknown="f" * 32, id=decision["decision_id"])
    response = httpx.post(url, json=body, headers=auth(key))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if field is not None:
        assert error["field"] == field


def test_the_report_is_scoped_to_the_callers_tenant(served: tuple[str, str]) -> None:
    base_url, audit_url = served
    score(base_url, "globex", ["lunch is at noon"])
    today = datetime.now(UTC).date().isoformat()
    # `until` is optional: today.
    mine = httpx.get(f"{base_url}/v1/transparency/report", params={"since": today}, headers=auth("acme"))
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert body["tenant"] == "acme" and body["until"] == today
    assert body["suppression"] == {"min_count": 10, "min_meetings": 3}
    store = AuditStore(audit_url, hash_key=HASH_KEY, create=False)
    day = datetime.now(UTC).date()
    direct = aggregate(store, day, day, tenant="acme", suppression=Suppression(10, 3)).model_dump(mode="json")
    everyone = aggregate(store, day, day, suppression=Suppression(1, 1))
    globex = aggregate(store, day, day, tenant="globex", suppression=Suppression(1, 1))
    store.close()
    body.pop("generated_at"), direct.pop("generated_at"), body.pop("period"), direct.pop("period")
    assert body == direct

    theirs = httpx.get(
        f"{base_url}/v1/transparency/report",
        params={"since": today, "tenant": "globex"},
        headers=auth("acme"),
    )
    assert theirs.status_code == 403 and theirs.json()["error"]["type"] == "forbidden"
    admin_one = httpx.get(
        f"{base_url}/v1/transparency/report",
        params={"since": today, "tenant": "globex", "min_count": 10},
        headers=auth("admin"),
    )
    assert admin_one.status_code == 200 and admin_one.json()["tenant"] == "globex"
    admin_all = httpx.get(
        f"{base_url}/v1/transparency/report", params={"period": today[:7]}, headers=auth("admin")
    )
    assert admin_all.status_code == 200 and admin_all.json()["tenant"] is None
    assert (globex.totals.decisions or 0) >= 1 and (everyone.totals.decisions or 0) > (
        globex.totals.decisions or 0
    )

    lower = httpx.get(
        f"{base_url}/v1/transparency/report", params={"since": today, "min_count": 2}, headers=auth("acme")
    )
    assert lower.status_code == 422 and lower.json()["error"]["field"] == "min_count"
    for params, field in (
        ({"period": "2026-Q7"}, "period"),
        ({}, "since"),
        ({"period": "2026-11", "since": today}, "period"),
    ):
        refused = httpx.get(f"{base_url}/v1/transparency/report", params=params, headers=auth("acme"))
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field, refused.text
    page = httpx.get(
        f"{base_url}/v1/transparency/report", params={"since": today, "format": "html"}, headers=auth("acme")
    )
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "tenant acme" in page.text
    table = httpx.get(
        f"{base_url}/v1/transparency/report", params={"since": today, "format": "csv"}, headers=auth("acme")
    )
    assert table.headers["content-type"].startswith("text/csv") and table.text.startswith(
        "section,key,metric,value"
    )
