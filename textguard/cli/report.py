"""CLI command: `textguard report` prints or exports transparency-report figures from the audit store."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from textguard.errors import DataError

if TYPE_CHECKING:
    from textguard.audit import AuditStore
    from textguard.report import TransparencyReport

DEFAULT_AUDIT_URL = "sqlite:///textguard_audit.db"


class ReportFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"
    HTML = "html"


def _parse_day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise DataError(f"{option} {value!r} is not an ISO date (YYYY-MM-DD)") from None


def resolve_period(period: str | None, since: str | None, until: str | None) -> tuple[date, date, str]:
    """--period (month, quarter, year) or --since [--until, default today] -> (first, last, label)."""
    from textguard.report import parse_period

    if period is not None:
        if since is not None or until is not None:
            raise DataError("give either --period or --since/--until, not both")
        first, last = parse_period(period)
        return first, last, period.strip().upper() if "q" in period.lower() else period.strip()
    if since is None:
        raise DataError("give --period (2026-11, 2026-Q4, 2026) or --since YYYY-MM-DD [--until YYYY-MM-DD]")
    first = _parse_day(since, "--since")
    last = _parse_day(until, "--until") if until else datetime.now(UTC).date()
    if first > last:
        raise DataError(f"--until ({last}) must be on or after --since ({first})")
    return first, last, f"{first}..{last}"


def report(
    period: str | None = typer.Option(
        None, "--period", "-p", help="A month (2026-11), quarter (2026-Q4) or year (2026), in UTC."
    ),
    since: str | None = typer.Option(None, "--since", help="First UTC day (YYYY-MM-DD, included)."),
    until: str | None = typer.Option(
        None, "--until", help="Last UTC day (YYYY-MM-DD, included; default: today)."
    ),
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant's decisions [every tenant]."),
    min_count: int = typer.Option(
        10, "--min-count", min=1, help="Counts from 1 to this minus 1 are printed as <k (1: no suppression)."
    ),
    min_meetings: int = typer.Option(
        3, "--min-meetings", min=1, help="Rows drawn from fewer distinct meetings are withheld (1: never)."
    ),
    audit_url: str | None = typer.Option(
        None,
        "--audit-url",
        help="SQLAlchemy URL of the audit store (default: $TEXTGUARD_AUDIT_URL, else sqlite:///textguard_audit.db).",
    ),
    output_format: ReportFormat = typer.Option(ReportFormat.TABLE, "--format", "-f", help="Output format."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """The transparency report: decisions and actions by label, language, source, a label x language x
    source x action cross-tab, known-content matches, time to action, exposure, reviews and appeals,
    model and policy versions; small counts suppressed (docs/transparency.md).

    Examples:

        textguard report --audit-url sqlite:///audit.db --period 2026-Q4 -f markdown -o q4.md

        textguard report --since 2026-11-01 --tenant acme -f json
    """
    from textguard.audit import AuditStore
    from textguard.report import Suppression, aggregate, render

    first, last, label = resolve_period(period, since, until)
    rule = Suppression(min_count, min_meetings)
    url = audit_url or os.environ.get("TEXTGUARD_AUDIT_URL") or DEFAULT_AUDIT_URL
    # Reading needs no hash key and never creates an audit store in someone's database; a store written
    # by an older textguard gets the additive migration (new columns and tables) first.
    require_existing_sqlite(url)
    store = AuditStore(url, hash_key=None, create=False)
    try:
        require_audit_store(store, url)
        result = aggregate(store, first, last, tenant=tenant, suppression=rule, period=label)
    finally:
        store.close()

    if output_format is ReportFormat.TABLE:
        if output is not None:
            raise DataError("--output needs --format json, csv, markdown or html (table is for the terminal)")
        _print_tables(result)
        return
    rendered = render(result, output_format.value)
    if output is None:
        typer.echo(rendered, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(rendered, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


def require_audit_store(store: AuditStore, url: str) -> None:
    """Refuse a database without an audit store; add what an older store lacks (additive migration)."""
    require_existing_sqlite(url)
    missing = store.missing_schema()
    if not missing:
        return
    if not _has_decisions(store):
        raise DataError(
            f"{store.url.render_as_string(hide_password=True)} holds no audit store (check --audit-url)"
        )
    typer.echo(f"migrating the audit store (adding {', '.join(missing)})", err=True)
    store.create_tables()


def _has_decisions(store: AuditStore) -> bool:
    from sqlalchemy import inspect

    from textguard.audit import DECISIONS_TABLE

    with store.engine.connect() as connection:
        return DECISIONS_TABLE in inspect(connection).get_table_names(schema=store.schema)


def require_existing_sqlite(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DataError(f"--audit-url {url!r} is not a SQLAlchemy URL (e.g. sqlite:///audit.db)") from None
    database = parsed.database
    is_file_db = parsed.get_backend_name() == "sqlite" and bool(database) and database != ":memory:"
    if is_file_db and not Path(str(database)).expanduser().is_file():
        raise DataError(f"audit database {parsed.database} does not exist (check --audit-url)")


def _print_tables(result: TransparencyReport) -> None:
    from rich.console import Console
    from rich.table import Table

    from textguard.report import report_title, sections

    console = Console()
    console.print(report_title(result), style="bold")
    for section in sections(result):
        table = Table(title=section.title, title_justify="left")
        for index, name in enumerate(section.header):
            table.add_column(name, justify="left" if index < section.key_columns else "right")
        for row in section.rows:
            table.add_row(*row)
        console.print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("report")(report)
