"""The transparency report against a direct computation, small-count suppression, tenant scoping, the
additive schema migration, and `textguard data import-reviews`.

The store is planted with decisions, reviews, appeals, reinstatements and exposure events across two
months and two tenants (report_world.py); every figure of the report is compared with the same figure
computed in plain Python from the planted data, on SQLite and (where it answers) PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from report_world import build_world, expected, figures, fill, in_scope
from sqlalchemy import MetaData, Table, create_engine, insert, inspect
from typer.testing import CliRunner

from textguard.audit import (
    DECISIONS_TABLE,
    MIGRATED_COLUMNS,
    AuditRecord,
    AuditStore,
    decisions_table,
    labels_table,
    matches_table,
)
from textguard.errors import DataError
from textguard.labels import LABELS
from textguard.report import (
    NO_SUPPRESSION,
    Suppression,
    aggregate,
    parse_period,
    render,
    to_csv,
)

KEY = "report-world-key"
PERIODS = {
    "2026-10": parse_period("2026-10"),
    "2026-11": parse_period("2026-11"),
    "2026-Q4": parse_period("2026-Q4"),
}


@pytest.fixture(scope="module")
def world() -> list[Any]:
    return build_world()


@pytest.fixture(scope="module")
def store(world: list[Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditStore]:
    audit = AuditStore(f"sqlite:///{tmp_path_factory.mktemp('report') / 'audit.db'}", hash_key=KEY)
    fill(audit, world)
    yield audit
    audit.close()


def rounded(value: Any) -> Any:
    """Floats to 6 decimals, recursively (medians of seconds computed two ways)."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(rounded(item) for item in value)
    return value


def test_the_world_covers_what_the_report_counts(world: list[Any]) -> None:
    october = in_scope(world, *PERIODS["2026-10"], None)
    assert {item.tenant for item in october} == {"acme", "globex"}
    outcomes = {outcome for item in world for outcome, _, _ in item.reviews}
    assert outcomes == {"confirm", "overturn", "appeal", "reinstate"}
    assert any(len(item.events) == 2 for item in world) and any(item.matches for item in world)


@pytest.mark.parametrize("period", sorted(PERIODS))
@pytest.mark.parametrize("tenant", ["acme", "globex", None])
def test_every_figure_matches_a_direct_computation(
    store: AuditStore, world: list[Any], period: str, tenant: str | None
) -> None:
    since, until = PERIODS[period]
    report = aggregate(store, since, until, tenant=tenant, suppression=NO_SUPPRESSION, period=period)
    assert report.tenant == tenant and report.period == period
    assert rounded(figures(report)) == rounded(expected(world, since, until, tenant))


def test_the_by_label_columns_are_not_the_flagged_count_twice(store: AuditStore, world: list[Any]) -> None:
    report = aggregate(store, *PERIODS["2026-Q4"])
    rows = {item.key: item for item in report.by_label}
    # A label's row says how many decisions carry it and what became of them; the decisions assessed
    # for it (every decision) is the total, not repeated per label.
    assert not hasattr(rows[LABELS[0]], "decisions")
    assert any(item.only_label != item.flagged for item in report.by_label)
    assert sum(item.flagged or 0 for item in report.by_label) >= (report.totals.flagged or 0)


def test_small_counts_are_suppressed(store: AuditStore, world: list[Any]) -> None:
    since, until = PERIODS["2026-11"]
    rule = Suppression(min_count=10, min_meetings=3)
    report = aggregate(store, since, until, tenant="globex", suppression=rule)
    direct = expected(world, since, until, "globex")
    cells = {(c.label, c.language, c.source, c.action): c.decisions for c in report.cross_tab}
    small = [key for key, count in direct["cross_tab"].items() if 0 < count < 10]
    assert small, "the planted month must have small cross-tab cells"
    assert all(cells[key] is None for key in small)
    large = [key for key, count in direct["cross_tab"].items() if count >= 10]
    assert all(cells[key] == direct["cross_tab"][key] for key in large)
    # Medians over fewer than k decisions are withheld, larger ones published.
    for timing in report.time_to_action:
        n, median, _ = direct["time_to_action"][timing.key]
        assert timing.median_s == (None if n < 10 else pytest.approx(median))
        assert timing.n == (n if n == 0 or n >= 10 else None)
    markdown = render(report, "markdown")
    assert "<10" in markdown and "small-count suppression" in markdown
    assert ",<10" in to_csv(report)


def test_a_row_from_too_few_meetings_is_withheld(tmp_path: Path) -> None:
    audit = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}", hash_key=KEY)
    base = datetime(2026, 11, 3, 9, tzinfo=UTC)
    records = [
        AuditRecord(
            text=f"message {i}",
            scores=dict.fromkeys(LABELS, 0.1),
            labels=[],
            action="allow",
            model_name="textguard",
            model_version="2",
            policy="default",
            language="ga" if i < 12 else "en",
            meeting_id="one-irish-meeting" if i < 12 else f"meeting-{i % 5}",
            created_at=base + timedelta(minutes=i),
        )
        for i in range(40)
    ]
    audit.record_sync(records)
    report = aggregate(audit, date(2026, 11, 1), date(2026, 11, 30), suppression=Suppression(10, 3))
    rows = {item.key: item for item in report.by_language}
    # Twelve decisions (above k) but all from one meeting: the row would describe that meeting.
    assert rows["ga"].suppressed and rows["ga"].decisions is None
    assert not rows["en"].suppressed and rows["en"].decisions == 28
    assert report.totals.decisions == 40
    assert "suppressed" in render(report, "markdown")
    audit.close()


def test_periods_parse() -> None:
    assert parse_period("2026-02") == (date(2026, 2, 1), date(2026, 2, 28))
    assert parse_period("2026-q1") == (date(2026, 1, 1), date(2026, 3, 31))
    assert parse_period("2026-Q4") == (date(2026, 10, 1), date(2026, 12, 31))
    assert parse_period("2026") == (date(2026, 1, 1), date(2026, 12, 31))
    for bad in ("2026-13", "2026-Q5", "November"):
        with pytest.raises(DataError, match="period"):
            parse_period(bad)


def test_every_format_renders(store: AuditStore) -> None:
    report = aggregate(store, *PERIODS["2026-Q4"], tenant="acme", suppression=Suppression())
    assert json.loads(render(report, "json"))["tenant"] == "acme"
    page = render(report, "html")
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page and "<script" not in page
    assert "## By label, language, source and action" in render(report, "markdown")
    assert to_csv(report).splitlines()[0] == "section,key,metric,value"


# -- schema migration ------------------------------------------------------------------------------


def _old_store(url: str, schema: str | None = None) -> None:
    """The audit schema before issue 13 (no tenant/key_id/policy_version, no reviews or events), one row."""
    old = MetaData(schema=schema)
    added = {name for name, _ in MIGRATED_COLUMNS}
    decisions = Table(
        DECISIONS_TABLE,
        old,
        *[column._copy() for column in decisions_table.columns if column.name not in added],
    )
    for table in (labels_table, matches_table):
        table.to_metadata(old, schema=schema)
    engine = create_engine(url)
    old.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(decisions),
            [
                {
                    "decision_id": "0" * 32,
                    "created_at": datetime(2026, 11, 2, 8, tzinfo=UTC),
                    "day": "2026-11-02",
                    "source": "chat",
                    "language": "en",
                    "text_hash": "f" * 64,
                    "hash_key_id": "k",
                    "scores": {},
                    "labels": [],
                    "label_count": 0,
                    "action": "allow",
                    "policy": "default",
                    "model_name": "textguard",
                    "model_version": "1",
                }
            ],
        )
    engine.dispose()


def test_an_existing_sqlite_store_is_migrated_not_broken(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _old_store(url)
    # The report command migrates an older store (additively) before reading it.
    from textguard.cli import app

    result = CliRunner().invoke(
        app, ["report", "--audit-url", url, "--period", "2026-11", "--min-count", "1", "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    assert "migrating the audit store" in result.output
    printed = json.loads(result.stdout[result.stdout.index("{") :])
    assert printed["totals"]["decisions"] == 1
    audit = AuditStore(url, hash_key=KEY)
    columns = {c["name"] for c in inspect(audit.engine).get_columns(DECISIONS_TABLE)}
    assert {name for name, _ in MIGRATED_COLUMNS} <= columns
    info = audit.decision("0" * 32)
    assert info is not None and info.tenant == "default"
    audit.record_sync(
        [AuditRecord("new", dict.fromkeys(LABELS, 0.0), [], "allow", "t", "2", "default", tenant="acme")]
    )
    assert aggregate(audit, date.min, date.max, tenant="default").totals.decisions == 1
    assert aggregate(audit, date.min, date.max, tenant="acme").totals.decisions == 1
    audit.close()


# -- PostgreSQL --------------------------------------------------------------------------------------


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    psycopg = pytest.importorskip("psycopg")
    for user in ("postgres", "root"):
        dsn = f"host=127.0.0.1 port=5432 dbname=test user={user}"
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
        except psycopg.Error:
            continue
        break
    else:
        pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432 (database test)")
    schema = f"tg_report_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"postgresql+psycopg://{user}@127.0.0.1:5432/test", schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.postgres
def test_postgres_figures_match_the_direct_computation(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    world = build_world()  # its own copy: `fill` writes the decision ids into the planted items
    audit = AuditStore(url, hash_key=KEY, schema=schema)
    fill(audit, world)
    for tenant in ("acme", None):
        since, until = PERIODS["2026-Q4"]
        report = aggregate(audit, since, until, tenant=tenant)
        assert rounded(figures(report)) == rounded(expected(world, since, until, tenant))
    audit.close()


@pytest.mark.postgres
def test_an_existing_postgres_store_is_migrated(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    _old_store(url, schema)
    audit = AuditStore(url, hash_key=KEY, schema=schema)
    assert audit.missing_schema() == []
    info = audit.decision("0" * 32)
    assert info is not None and info.tenant == "default"
    assert aggregate(audit, date.min, date.max, tenant="default").totals.decisions == 1
    audit.close()
    again = AuditStore(url, hash_key=KEY, schema=schema)  # a second opener finds nothing to add
    assert again.missing_schema() == []
    again.close()


# -- the CLI ---------------------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    from textguard.cli import app

    return CliRunner().invoke(app, list(args), env=env)


def test_cli_report_matches_the_library(store: AuditStore) -> None:
    result = cli(
        "report", "--audit-url", str(store.url), "--period", "2026-11", "--tenant", "acme",
        "--min-count", "1", "--min-meetings", "1", "-f", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    direct = aggregate(store, *PERIODS["2026-11"], tenant="acme", period="2026-11").model_dump(mode="json")
    printed.pop("generated_at"), direct.pop("generated_at")
    assert printed == direct
    table = cli("report", "--audit-url", str(store.url), "--since", "2026-10-01", "--until", "2026-10-31")
    assert table.exit_code == 0 and "Time to action" in table.stdout and "Exposure" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--period", "2026-11", "--since", "2026-11-01"), "either --period or --since"),
        (("--period", "2026-13"), "month 13"),
        ((), "give --period"),
        (("--since", "2026-11-05", "--until", "2026-11-01"), "must be on or after"),
    ],
)
def test_cli_refuses_bad_periods(store: AuditStore, args: tuple[str, ...], message: str) -> None:
    result = cli("report", "--audit-url", str(store.url), *args)
    assert result.exit_code != 0 and isinstance(result.exception, DataError)
    assert message in str(result.exception)


def test_import_reviews_turns_overturned_decisions_into_rows(
    store: AuditStore, world: list[Any], tmp_path: Path
) -> None:
    overturned = [item for item in world if any(o == "overturn" for o, _, _ in item.reviews)]
    confirmed = [item for item in world if any(o == "confirm" for o, _, _ in item.reviews)][:3]
    assert len(overturned) >= 5
    source = tmp_path / "platform.jsonl"
    lines = [
        {"decision_id": item.decision_id, "text": item.text, "consent": index != 0}
        for index, item in enumerate(overturned + confirmed)
    ]
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    output = tmp_path / "reviews" / "overturned.jsonl"
    env = {"TEXTGUARD_AUDIT_HASH_KEY": KEY}
    result = cli(
        "data", "import-reviews", "--input", str(source), "--output", str(output),
        "--audit-url", str(store.url), env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "no consent: 1" in result.stdout and "not overturned: 3" in result.stdout
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(overturned) - 1
    planted = {item.decision_id: item for item in overturned}
    for row in rows:
        item = planted[row["decision_id"]]
        reviewer_labels = next(labels for o, labels, _ in reversed(item.reviews) if o == "overturn")
        assert row["labels"] == reviewer_labels and row["text"] == item.text
        assert (row["language"], row["source"], row["category"]) == (
            item.language,
            item.source,
            "review_overturn",
        )
    # The rows are what configs/data/reviews.yaml reads: its source tag is `reviews`.
    from textguard.data.dataconfig import load_data_config

    loaded = load_data_config(
        Path("configs/data/reviews.yaml"), overrides=(f"sources.reviews.path={output}",)
    )
    assert [source.name for source in loaded.config.sources] == ["reviews"]
    prepared = tmp_path / "prepared"
    result = cli(
        "data", "prepare", "--config", "configs/data/reviews.yaml", "--set", f"sources.reviews.path={output}",
        "--output", str(prepared), "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    import pandas as pd

    frame = pd.concat(
        pd.read_parquet(prepared / f"{split}.parquet") for split in ("train", "validation", "test")
    )
    assert set(frame["dataset"]) == {"reviews"} and len(frame) == len(rows)

    # A text that is not the audited one is refused, naming the line; nothing is written.
    tampered = tmp_path / "tampered.csv"
    tampered.write_text(
        f"decision_id,text,consent\n{overturned[1].decision_id},an edited text,yes\n", encoding="utf-8"
    )
    other = tmp_path / "other.jsonl"
    result = cli(
        "data",
        "import-reviews",
        "-i",
        str(tampered),
        "-o",
        str(other),
        "--audit-url",
        str(store.url),
        env=env,
    )
    assert isinstance(result.exception, DataError)
    assert f"{tampered} line 2: the text does not match" in str(result.exception)
    assert not other.exists()
    without_key = cli(
        "data", "import-reviews", "-i", str(source), "-o", str(other), "--audit-url", str(store.url)
    )
    assert "needs the audit hash key" in str(without_key.exception)
