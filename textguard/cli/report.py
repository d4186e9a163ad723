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
    from textguard.report import TransparencyReport

DEFAULT_AUDIT_URL = "sqlite:///textguard_audit.db"


class ReportFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"


def _parse_day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise DataError(f"{option} {value!r} is not an ISO date (YYYY-MM-DD)") from None


def report(
    since: str = typer.Option(..., "--since", help="First UTC day of the period (YYYY-MM-DD, included)."),
    until: str | None = typer.Option(
        None, "--until", help="Last UTC day of the period (YYYY-MM-DD, included; default: today)."
    ),
    audit_url: str | None = typer.Option(
        None,
        "--audit-url",
        help="SQLAlchemy URL of the audit store (default: $TEXTGUARD_AUDIT_URL, else sqlite:///textguard_audit.db).",
    ),
    output_format: ReportFormat = typer.Option(ReportFormat.TABLE, "--format", "-f", help="Output format."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Transparency-report figures: decisions and actions by label, language, source, day, policy and
    model version, from the audit store (UTC days, both ends included).

    Example:

        textguard report --audit-url sqlite:///audit.db --since 2025-01-01 --until 2025-03-31 -f markdown
    """
    from textguard.audit import AuditStore
    from textguard.report import aggregate, to_csv, to_markdown

    first = _parse_day(since, "--since")
    last = _parse_day(until, "--until") if until else datetime.now(UTC).date()
    if first > last:
        raise DataError(f"--until ({last}) must be on or after --since ({first})")
    url = audit_url or os.environ.get("TEXTGUARD_AUDIT_URL") or DEFAULT_AUDIT_URL
    _require_existing_sqlite(url)
    # Reading needs no hash key and must never create tables in someone's database.
    store = AuditStore(url, hash_key=None, create=False)
    try:
        result = aggregate(store, first, last)
    finally:
        store.close()

    if output_format is ReportFormat.TABLE:
        if output is not None:
            raise DataError("--output needs --format json, csv or markdown (table is for the terminal)")
        _print_tables(result)
        return
    if output_format is ReportFormat.JSON:
        rendered = result.model_dump_json(indent=2) + "\n"
    elif output_format is ReportFormat.CSV:
        rendered = to_csv(result)
    else:
        rendered = to_markdown(result)
    if output is None:
        typer.echo(rendered, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(rendered, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


def _require_existing_sqlite(url: str) -> None:
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

    from textguard.report import SECTIONS, model_rows, summary_rows, table_rows

    console = Console()
    summary = Table(title="textguard transparency report", show_header=False)
    for key, value in summary_rows(result):
        summary.add_row(key, value)
    console.print(summary)
    for section, dimension in SECTIONS:
        header, rows = table_rows(result, section)
        table = Table(title=f"by {dimension}")
        for index, name in enumerate(header):
            table.add_column(name, justify="left" if index == 0 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    header, rows = model_rows(result)
    models = Table(title="model versions")
    for name in header:
        models.add_column(name)
    for row in rows:
        models.add_row(*row)
    console.print(models)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("report")(report)
