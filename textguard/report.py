"""Transparency-report figures from the audit store, shared by `GET /v1/transparency/report` and
`textguard report`.

Everything is counted in SQL (GROUP BY over `audit_decisions`, joined with `audit_labels` for labels),
so the figures are the same whichever client asks and a long period never loads rows into memory.
The period is a range of whole UTC days, both ends included.

The figures follow what Christchurch Call / GIFCT-style transparency reports publish: how many items
the automated system assessed, how many it flagged, what action followed (allow / review / block),
broken down by harm category (label), language, surface (chat or caption) and day, plus which model
versions and policies made the decisions, how many meetings were affected, and how many decisions
matched a known-content hash list (by list and hash kind).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.exc import SQLAlchemyError

from textguard.errors import DataError
from textguard.labels import LABELS, TAXONOMY_VERSION

if TYPE_CHECKING:
    from textguard.audit import AuditStore

#: Actions every report lists, even at zero, so reports of different periods line up.
ACTIONS: tuple[str, ...] = ("allow", "review", "block")


class Breakdown(BaseModel):
    """Counts for one value of a dimension (one label, language, source, day or policy)."""

    key: str
    decisions: int = Field(description="decisions made (for a label: decisions carrying that label)")
    flagged: int = Field(description="decisions with at least one label")
    actions: dict[str, int] = Field(description="decisions per action")


class ModelUsage(BaseModel):
    model_name: str
    model_version: str
    decisions: int
    first_seen: datetime
    last_seen: datetime


class TransparencyReport(BaseModel):
    since: date
    until: date
    generated_at: datetime
    taxonomy_version: str
    totals: Breakdown
    meetings: int = Field(description="distinct meetings with at least one decision")
    meetings_actioned: int = Field(description="distinct meetings with a review or block decision")
    by_label: list[Breakdown]
    by_language: list[Breakdown]
    by_source: list[Breakdown]
    by_day: list[Breakdown]
    by_policy: list[Breakdown]
    by_known_content: list[Breakdown] = Field(
        default_factory=list,
        description="decisions that matched a known-content hash list, per `list_id/kind`",
    )
    model_versions: list[ModelUsage]


def period_bounds(since: date, until: date) -> tuple[datetime, datetime]:
    """[start of `since`, start of the day after `until`) in UTC."""
    if isinstance(since, datetime) or isinstance(until, datetime):
        raise TypeError("since and until are calendar dates (whole UTC days), not datetimes")
    if since > until:
        raise DataError(f"until ({until}) must be on or after since ({since})")
    start = datetime.combine(since, time(), tzinfo=UTC)
    if until == date.max:
        # No day after 9999-12-31: the end of that day is the last representable instant.
        return start, datetime.max.replace(tzinfo=UTC)
    return start, datetime.combine(until + timedelta(days=1), time(), tzinfo=UTC)


def _breakdowns(rows: Iterable[Any], *, ordered_keys: Sequence[str] = ()) -> list[Breakdown]:
    """Pivot (key, action, decisions, flagged) rows into one Breakdown per key."""
    merged: dict[str, Breakdown] = {
        key: Breakdown(key=key, decisions=0, flagged=0, actions=dict.fromkeys(ACTIONS, 0))
        for key in ordered_keys
    }
    for key, action, decisions, flagged in rows:
        item = merged.setdefault(
            str(key), Breakdown(key=str(key), decisions=0, flagged=0, actions=dict.fromkeys(ACTIONS, 0))
        )
        item.decisions += int(decisions)
        item.flagged += int(flagged or 0)
        item.actions[str(action)] = item.actions.get(str(action), 0) + int(decisions)
    fixed = [merged.pop(key) for key in ordered_keys]
    return fixed + sorted(merged.values(), key=lambda item: (-item.decisions, item.key))


def aggregate(store: AuditStore, since: date, until: date) -> TransparencyReport:
    """Count the decisions made between `since` and `until` (inclusive UTC days)."""
    from textguard.audit import decisions_table as d
    from textguard.audit import labels_table as lbl
    from textguard.audit import matches_table as mt

    start, end = period_bounds(since, until)
    in_period: ColumnElement[bool] = and_(d.c.created_at >= start, d.c.created_at < end)
    flagged = func.sum(case((d.c.label_count > 0, 1), else_=0))
    actioned = d.c.action.in_(("review", "block"))

    def grouped(column: Any) -> Any:
        return select(column, d.c.action, func.count(), flagged).where(in_period).group_by(column, d.c.action)

    try:
        with store.engine.connect() as connection:
            totals_rows = connection.execute(
                select(d.c.action, func.count(), flagged).where(in_period).group_by(d.c.action)
            ).all()
            by_label = connection.execute(
                select(lbl.c.label, d.c.action, func.count(), func.count())
                .select_from(lbl.join(d, lbl.c.decision_id == d.c.decision_id))
                .where(in_period)
                .group_by(lbl.c.label, d.c.action)
            ).all()
            by_language = connection.execute(grouped(d.c.language)).all()
            by_source = connection.execute(grouped(d.c.source)).all()
            by_day = connection.execute(grouped(d.c.day)).all()
            by_policy = connection.execute(grouped(d.c.policy)).all()
            # Distinct decisions: one message can match several entries of one list.
            by_known_content = connection.execute(
                select(
                    mt.c.list_id,
                    mt.c.kind,
                    d.c.action,
                    func.count(func.distinct(d.c.decision_id)),
                    func.count(func.distinct(case((d.c.label_count > 0, d.c.decision_id)))),
                )
                .select_from(mt.join(d, mt.c.decision_id == d.c.decision_id))
                .where(in_period)
                .group_by(mt.c.list_id, mt.c.kind, d.c.action)
            ).all()
            meetings = connection.execute(
                select(func.count(func.distinct(d.c.meeting_hash))).where(in_period)
            ).scalar_one()
            meetings_actioned = connection.execute(
                select(func.count(func.distinct(d.c.meeting_hash))).where(in_period, actioned)
            ).scalar_one()
            models = connection.execute(
                select(
                    d.c.model_name,
                    d.c.model_version,
                    func.count(),
                    func.min(d.c.created_at),
                    func.max(d.c.created_at),
                )
                .where(in_period)
                .group_by(d.c.model_name, d.c.model_version)
            ).all()
    except SQLAlchemyError as exc:
        raise DataError(f"cannot read the audit store: {str(exc).splitlines()[0]}") from None

    totals = _breakdowns((("all", *row) for row in totals_rows), ordered_keys=("all",))[0]
    days = sorted(_breakdowns(by_day), key=lambda item: item.key)
    return TransparencyReport(
        since=since,
        until=until,
        generated_at=datetime.now(UTC),
        taxonomy_version=TAXONOMY_VERSION,
        totals=totals,
        meetings=int(meetings),
        meetings_actioned=int(meetings_actioned),
        by_label=_breakdowns(by_label, ordered_keys=LABELS),
        by_language=_breakdowns(by_language),
        by_source=_breakdowns(by_source),
        by_day=days,
        by_policy=_breakdowns(by_policy),
        by_known_content=_breakdowns(
            (f"{list_id}/{kind}", action, decisions, flagged_count)
            for list_id, kind, action, decisions, flagged_count in by_known_content
        ),
        model_versions=sorted(
            (
                ModelUsage(
                    model_name=name,
                    model_version=version,
                    decisions=int(count),
                    first_seen=_as_utc(first),
                    last_seen=_as_utc(last),
                )
                for name, version, count, first, last in models
            ),
            key=lambda usage: (usage.first_seen, usage.model_name, usage.model_version),
        ),
    )


def _as_utc(value: datetime) -> datetime:
    # Aggregates bypass the column type's result processing on some dialects.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- renderings ------------------------------------------------------------------------------------

SECTIONS: tuple[tuple[str, str], ...] = (
    ("by_label", "label"),
    ("by_language", "language"),
    ("by_source", "source"),
    ("by_day", "day"),
    ("by_policy", "policy"),
    ("by_known_content", "known-content list"),
)


def _actions(report: TransparencyReport) -> list[str]:
    """Canonical actions first, then any other action that occurs in the period."""
    seen = list(ACTIONS)
    for item in [report.totals, *(row for name, _ in SECTIONS for row in getattr(report, name))]:
        seen.extend(action for action in item.actions if action not in seen)
    return seen


def table_rows(report: TransparencyReport, section: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one breakdown section (shared by the table, CSV and Markdown renderings)."""
    actions = _actions(report)
    dimension = dict(SECTIONS)[section]
    header = [dimension, "decisions", "flagged", *actions]
    rows = [
        [item.key, str(item.decisions), str(item.flagged), *(str(item.actions.get(a, 0)) for a in actions)]
        for item in getattr(report, section)
    ]
    return header, rows


def summary_rows(report: TransparencyReport) -> list[tuple[str, str]]:
    totals = report.totals
    rows = [
        ("period", f"{report.since} to {report.until} (UTC, inclusive)"),
        ("taxonomy version", report.taxonomy_version),
        ("decisions", str(totals.decisions)),
        ("flagged", str(totals.flagged)),
    ]
    rows += [(f"action: {action}", str(totals.actions.get(action, 0))) for action in _actions(report)]
    rows += [("meetings", str(report.meetings)), ("meetings actioned", str(report.meetings_actioned))]
    return rows


def model_rows(report: TransparencyReport) -> tuple[list[str], list[list[str]]]:
    header = ["model", "version", "decisions", "first seen", "last seen"]
    rows = [
        [
            usage.model_name,
            usage.model_version,
            str(usage.decisions),
            usage.first_seen.isoformat(timespec="seconds"),
            usage.last_seen.isoformat(timespec="seconds"),
        ]
        for usage in report.model_versions
    ]
    return header, rows


def to_csv(report: TransparencyReport) -> str:
    """Long format, one figure per line: section,key,metric,value (easy to pivot in a spreadsheet)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["section", "key", "metric", "value"])
    writer.writerow(["period", "since", "date", report.since.isoformat()])
    writer.writerow(["period", "until", "date", report.until.isoformat()])
    writer.writerow(["meetings", "all", "meetings", report.meetings])
    writer.writerow(["meetings", "all", "meetings_actioned", report.meetings_actioned])
    for name, items in [("totals", [report.totals])] + [(s, getattr(report, s)) for s, _ in SECTIONS]:
        for item in items:
            writer.writerow([name, item.key, "decisions", item.decisions])
            writer.writerow([name, item.key, "flagged", item.flagged])
            for action in _actions(report):
                writer.writerow([name, item.key, f"action_{action}", item.actions.get(action, 0)])
    for usage in report.model_versions:
        writer.writerow(
            ["model_versions", f"{usage.model_name}@{usage.model_version}", "decisions", usage.decisions]
        )
    return buffer.getvalue()


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(report: TransparencyReport) -> str:
    parts = [
        f"# textguard transparency report, {report.since} to {report.until}",
        "",
        "Automated decisions on meeting chat and live captions (UTC days, both ends included).",
        "",
        _markdown_table(["figure", "value"], [list(row) for row in summary_rows(report)]),
    ]
    for section, dimension in SECTIONS:
        header, rows = table_rows(report, section)
        parts += ["", f"## By {dimension}", "", _markdown_table(header, rows) if rows else "_no decisions_"]
    header, rows = model_rows(report)
    parts += ["", "## Model versions", "", _markdown_table(header, rows) if rows else "_no decisions_"]
    return "\n".join(parts) + "\n"
