"""Transparency figures from planted audit rows: the SQL aggregation, the endpoint and `textguard report`."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from textguard.audit import AuditRecord, AuditStore
from textguard.errors import DataError
from textguard.report import Suppression, aggregate, to_csv, to_markdown

SINCE, UNTIL = date(2025, 3, 1), date(2025, 3, 2)
NO_K = ("--min-count", "1", "--min-meetings", "1")
SCORES = {"violent_threat": 0.1, "extremist_glorification": 0.1, "hate_dehumanization": 0.1}

# (created_at, language, source, labels, action, model_version, policy, meeting)
PLANTED = [
    (
        datetime(2025, 2, 28, 23, 59, 59, tzinfo=UTC),
        "en",
        "chat",
        ["violent_threat"],
        "block",
        "1",
        "default",
        "A",
    ),
    (datetime(2025, 3, 1, 0, 0, tzinfo=UTC), "en", "chat", ["violent_threat"], "block", "1", "default", "A"),
    (datetime(2025, 3, 1, 9, 0, tzinfo=UTC), "en", "chat", [], "allow", "1", "default", "A"),
    (
        datetime(2025, 3, 1, 10, 0, tzinfo=UTC),
        "fr",
        "caption",
        ["violent_threat", "hate_dehumanization"],
        "review",
        "1",
        "default",
        "B",
    ),
    (
        datetime(2025, 3, 2, 8, 0, tzinfo=UTC),
        "de",
        "chat",
        ["extremist_glorification"],
        "review",
        "2",
        "strict",
        "C",
    ),
    (datetime(2025, 3, 2, 9, 0, tzinfo=UTC), "en", "caption", [], "allow", "2", "default", "B"),
    (datetime(2025, 3, 2, 10, 0, tzinfo=UTC), "en", "chat", [], "allow", "2", "default", None),
    (datetime(2025, 3, 2, 23, 59, 59, 999000, tzinfo=UTC), "en", "chat", [], "allow", "2", "default", "D"),
    (datetime(2025, 3, 3, 0, 0, tzinfo=UTC), "en", "chat", ["violent_threat"], "block", "2", "default", "E"),
]


def planted_records() -> list[AuditRecord]:
    return [
        AuditRecord(
            text=f"planted message {index}",
            scores=SCORES,
            labels=labels,
            action=action,
            model_name="textguard",
            model_version=version,
            policy=policy,
            source=source,
            language=language,
            message_id=f"m{index}",
            meeting_id=meeting,
            created_at=created_at,
        )
        for index, (created_at, language, source, labels, action, version, policy, meeting) in enumerate(
            PLANTED
        )
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    audit = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}", hash_key="report-test-key")
    audit.record_sync(planted_records())
    yield audit
    audit.close()


def by_key(items: list) -> dict:  # type: ignore[type-arg]
    return {item.key: (item.decisions, item.flagged, item.actions) for item in items}


def test_aggregate_counts_the_planted_rows(store: AuditStore) -> None:
    report = aggregate(store, SINCE, UNTIL)
    totals = report.totals
    # The rows just before `since` and at midnight after `until` are outside the period.
    assert (totals.decisions, totals.flagged) == (7, 3)
    assert totals.actions == {"allow": 4, "review": 2, "block": 1}
    # By label: decisions carrying the label, what followed, and how many carried it alone.
    assert {item.key: (item.flagged, item.actions, item.only_label) for item in report.by_label} == {
        "violent_threat": (2, {"allow": 0, "review": 1, "block": 1}, 1),
        "extremist_glorification": (1, {"allow": 0, "review": 1, "block": 0}, 1),
        "hate_dehumanization": (1, {"allow": 0, "review": 1, "block": 0}, 0),
    }
    assert [item.key for item in report.by_label] == [
        "violent_threat",
        "extremist_glorification",
        "hate_dehumanization",
    ]
    assert by_key(report.by_language) == {
        "en": (5, 1, {"allow": 4, "review": 0, "block": 1}),
        "fr": (1, 1, {"allow": 0, "review": 1, "block": 0}),
        "de": (1, 1, {"allow": 0, "review": 1, "block": 0}),
    }
    assert by_key(report.by_source) == {
        "chat": (5, 2, {"allow": 3, "review": 1, "block": 1}),
        "caption": (2, 1, {"allow": 1, "review": 1, "block": 0}),
    }
    assert by_key(report.by_day) == {
        "2025-03-01": (3, 2, {"allow": 1, "review": 1, "block": 1}),
        "2025-03-02": (4, 1, {"allow": 3, "review": 1, "block": 0}),
    }
    assert by_key(report.by_policy)["strict"] == (1, 1, {"allow": 0, "review": 1, "block": 0})
    assert (report.meetings, report.meetings_actioned) == (4, 3)
    assert [(m.model_version, m.decisions) for m in report.model_versions] == [("1", 3), ("2", 4)]
    assert report.model_versions[0].first_seen == datetime(2025, 3, 1, 0, 0, tzinfo=UTC)
    assert report.model_versions[1].last_seen == datetime(2025, 3, 2, 23, 59, 59, 999000, tzinfo=UTC)


def test_an_empty_period_has_zero_figures(store: AuditStore) -> None:
    report = aggregate(store, date(2024, 1, 1), date(2024, 1, 31))
    assert report.totals.decisions == 0 and report.totals.actions == {"allow": 0, "review": 0, "block": 0}
    assert [item.flagged for item in report.by_label] == [0, 0, 0]
    assert report.by_day == [] and report.model_versions == [] and report.meetings == 0


def test_the_widest_period_counts_everything(store: AuditStore) -> None:
    assert aggregate(store, date.min, date.max).totals.decisions == len(PLANTED)


def test_a_reversed_period_is_refused(store: AuditStore) -> None:
    with pytest.raises(DataError, match=r"until \(2025-03-01\) must be on or after since \(2025-03-02\)"):
        aggregate(store, UNTIL, SINCE)


def test_csv_and_markdown_carry_the_same_figures(store: AuditStore) -> None:
    report = aggregate(store, SINCE, UNTIL)
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    figures = {(row["section"], row["key"], row["metric"]): row["value"] for row in rows}
    assert figures[("summary", "decisions", "value")] == "7"
    assert figures[("by_label", "violent_threat", "block")] == "1"
    assert figures[("by_day", "2025-03-02", "flagged")] == "1"
    assert figures[("model_versions", "textguard@2", "decisions")] == "4"
    assert figures[("cross_tab", "violent_threat/fr/caption/review", "decisions")] == "1"
    markdown = to_markdown(report)
    assert "# textguard transparency report, 2025-03-01 to 2025-03-02" in markdown
    # label, flagged, allow/review/block, only, known_content, confirmed, overturned, appealed, reinstated
    assert "| violent_threat | 2 | 0 | 1 | 1 | 1 | 0 | 0 | 0 | 0 | 0 |" in markdown
    assert "| fr | 1 | 1 | 0 | 1 | 0 |" in markdown


# -- the endpoint ----------------------------------------------------------------------------------


@pytest.fixture
def client(store: AuditStore):  # type: ignore[no-untyped-def]
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from textguard.service.errors import install_error_handlers
    from textguard.service.transparency import router

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.audit = store
    with TestClient(app) as test_client:
        yield test_client


def test_endpoint_returns_the_aggregate(client, store: AuditStore) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/v1/transparency/report", params={"since": "2025-03-01", "until": "2025-03-02"})
    assert response.status_code == 200
    body = response.json()
    # The server suppresses small counts (k=10, 3 meetings by default).
    expected = aggregate(store, SINCE, UNTIL, suppression=Suppression()).model_dump(mode="json")
    body.pop("generated_at"), expected.pop("generated_at")
    assert body["totals"]["decisions"] is None and body["totals"]["actions"]["block"] is None
    assert body == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2025-13-01", "until": "2025-03-02"}, "since"),
        ({"since": "2025-03-01", "until": "yesterday"}, "until"),
        ({"until": "2025-03-02"}, "since"),
        ({"period": "2025-3"}, "period"),
        ({"since": "2025-03-05", "until": "2025-03-02"}, "until"),
    ],
)
def test_endpoint_names_the_bad_field(client, params: dict[str, str], field: str) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/v1/transparency/report", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "validation_error"
    assert response.json()["error"]["field"] == field


def test_endpoint_answers_503_when_the_store_cannot_be_read(client, store: AuditStore) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE audit_labels"))
    response = client.get("/v1/transparency/report", params={"since": "2025-03-01", "until": "2025-03-02"})
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "audit_unavailable"
    assert "no such table" in response.json()["error"]["message"]


# -- the CLI ---------------------------------------------------------------------------------------


def run_cli(*args: str) -> str:
    from textguard.cli import app

    result = CliRunner().invoke(app, ["report", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_json_matches_the_aggregate(store: AuditStore) -> None:
    url = str(store.url)
    printed = json.loads(
        run_cli("--audit-url", url, "--since", "2025-03-01", "--until", "2025-03-02", "-f", "json", *NO_K)
    )
    expected = aggregate(store, SINCE, UNTIL).model_dump(mode="json")
    printed.pop("generated_at"), expected.pop("generated_at")
    assert printed == expected


def test_cli_table_csv_and_markdown(store: AuditStore, tmp_path: Path) -> None:
    url = str(store.url)
    period = ("--since", "2025-03-01", "--until", "2025-03-02")
    table = run_cli("--audit-url", url, *period, *NO_K)
    assert "transparency report" in table and "violent_threat" in table and "2025-03-02" in table
    assert "decisions" in table and "7" in table
    assert "<10" in run_cli("--audit-url", url, *period)  # suppressed by default
    target = tmp_path / "out" / "report.csv"
    run_cli("--audit-url", url, *period, "--format", "csv", "--output", str(target))
    assert "summary,decisions,value,<10" in target.read_text(encoding="utf-8")
    assert "## By language" in run_cli("--audit-url", url, *period, "--format", "markdown")


def test_cli_reads_the_url_from_the_environment(store: AuditStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTGUARD_AUDIT_URL", str(store.url))
    printed = json.loads(run_cli("--since", "2025-03-01", "--until", "2025-03-01", "--format", "json", *NO_K))
    assert printed["totals"]["decisions"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "2025-03-02", "--until", "2025-03-01"), "must be on or after"),
        (("--since", "March", "--until", "2025-03-01"), "--since 'March' is not an ISO date"),
    ],
)
def test_cli_refuses_bad_periods(store: AuditStore, args: tuple[str, ...], message: str) -> None:
    from textguard.cli import app

    result = CliRunner().invoke(app, ["report", "--audit-url", str(store.url), *args])
    assert isinstance(result.exception, DataError) and message in str(result.exception)


PERIOD_ARGS = ("--since", "2025-01-01", "--until", "2025-01-02")


def test_cli_missing_database_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    result = subprocess.run(
        [sys.executable, "-m", "textguard", "report", "--audit-url", f"sqlite:///{missing}", *PERIOD_ARGS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: audit database {missing} does not exist (check --audit-url)"
    assert not missing.exists()
