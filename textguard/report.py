"""The transparency report a Christchurch Call / GIFCT-style signatory publishes, from the audit store.

Shared by `GET /v1/transparency/report` and `textguard report`, so both print the same numbers.

What it counts (docs/transparency.md defines every figure):

- the decisions the automated system made in a **period** (a month `2026-11`, a quarter `2026-Q4`, a year
  `2026`, or any range of whole UTC days, both ends included), for one tenant or (admin) all of them;
- totals and breakdowns by label, language, surface (chat / caption), day and policy, each with the
  action that followed (allow / review / block), and a **cross-tab** label x language x source x action;
- known-content (hash list) matches per list and hash kind;
- **time to action**: median and p90 seconds from the decision to the platform's removal, and to the
  first human review (confirm or overturn);
- **exposure**, where the platform reports it (`POST /v1/decisions/{id}/events`): participants in the
  meeting when the message or caption was shown, and how long it stayed visible before removal;
- **review outcomes**: decisions confirmed, overturned, appealed and reinstated;
- the model versions and policy versions (threshold fingerprints) in force.

Reviews and exposure events are counted for the decisions made in the period (a cohort), as known when
the report is generated: every figure refers to the same set of decisions, and a report regenerated later
includes reviews and appeals that came in after the period ended.

**Small-count suppression** (`Suppression`): a count from 1 to `min_count - 1` is published as `<k`
(null in JSON), a median or p90 over fewer than `min_count` values is withheld, and a whole row whose
decisions come from fewer than `min_meetings` distinct meetings is withheld, so no published row
describes one meeting. Zero stays zero. Defaults: k = 10, 3 meetings.

Counting runs in SQL (GROUP BY, COUNT DISTINCT) on SQLite and PostgreSQL alike; only the per-decision
times and audience sizes behind the medians are read into memory, one row per decision that had an
exposure event or review.
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, case, func, literal_column, select, true
from sqlalchemy.exc import SQLAlchemyError

from textguard.errors import DataError
from textguard.labels import LABELS, TAXONOMY_VERSION

if TYPE_CHECKING:
    from textguard.audit import AuditStore

#: Actions every report lists, even at zero, so reports of different periods line up.
ACTIONS: tuple[str, ...] = ("allow", "review", "block")
#: The cross-tab's label for decisions without any label.
NO_LABEL = "none"
DEFAULT_MIN_COUNT = 10
DEFAULT_MIN_MEETINGS = 3


@dataclass(frozen=True)
class Suppression:
    """Small-count suppression: see the module docstring."""

    min_count: int = DEFAULT_MIN_COUNT
    min_meetings: int = DEFAULT_MIN_MEETINGS

    def __post_init__(self) -> None:
        if self.min_count < 1 or self.min_meetings < 1:
            raise DataError("min_count and min_meetings are 1 or more (1 = no suppression)")

    def count(self, value: int) -> int | None:
        return None if 0 < value < self.min_count else value

    def row_hidden(self, meetings: int) -> bool:
        """A row drawn from 1..min_meetings-1 meetings (rows without meeting ids identify none)."""
        return 0 < meetings < self.min_meetings


NO_SUPPRESSION = Suppression(1, 1)


# -- the report ------------------------------------------------------------------------------------


class Breakdown(BaseModel):
    """Counts for one value of a dimension (language, source, day, policy, list, review outcome)."""

    key: str
    decisions: int | None = Field(description="decisions (null: suppressed)")
    flagged: int | None = Field(description="of them, decisions with at least one label")
    actions: dict[str, int | None] = Field(description="decisions per action")
    suppressed: bool = Field(default=False, description="withheld: drawn from too few meetings")


class LabelBreakdown(BaseModel):
    """One label: what carrying it led to. (Every decision is scored for every label, so a decisions
    column would be the total; what varies is how many carry the label and what became of them.)"""

    key: str
    flagged: int | None = Field(description="decisions that carry this label")
    actions: dict[str, int | None] = Field(description="of them, per action")
    only_label: int | None = Field(description="of them, decisions with no other label")
    known_content: int | None = Field(description="of them, decisions that matched a hash list")
    confirmed: int | None = Field(description="of them, decisions a human review confirmed")
    overturned: int | None = Field(description="of them, decisions a human review overturned")
    appealed: int | None
    reinstated: int | None
    suppressed: bool = False


class CrossTabCell(BaseModel):
    """Decisions with this label (or `none`), language, source and action."""

    label: str
    language: str
    source: str
    action: str
    decisions: int | None
    suppressed: bool = False


class Timing(BaseModel):
    """Median and 90th percentile (linear interpolation) of seconds, over `n` decisions."""

    key: str
    n: int | None
    median_s: float | None
    p90_s: float | None


class Exposure(BaseModel):
    """What the platform reported about the messages of the decisions with one action."""

    key: str = Field(description="the decision's action")
    decisions: int | None = Field(description="decisions with at least one exposure event")
    participants_total: int | None = Field(description="sum over those decisions of the audience size")
    participants_median: float | None
    participants_p90: float | None
    removed: int | None = Field(description="decisions whose message the platform removed")
    visible_median_s: float | None = Field(description="shown to removed, seconds")
    visible_p90_s: float | None


class Reviews(BaseModel):
    """Decisions (of the period) with at least one review of each outcome."""

    confirmed: int | None
    overturned: int | None
    appealed: int | None
    reinstated: int | None
    overturn_rate: float | None = Field(description="overturned / (confirmed + overturned)")
    by_outcome: list[Breakdown] = Field(description="per outcome, the decisions' original actions")


class ModelUsage(BaseModel):
    model_name: str
    model_version: str
    decisions: int | None
    first_seen: datetime
    last_seen: datetime


class PolicyUsage(BaseModel):
    policy: str
    policy_version: str = Field(description="fingerprint of the thresholds and known-content actions")
    decisions: int | None
    first_seen: datetime
    last_seen: datetime


class TransparencyReport(BaseModel):
    since: date
    until: date
    period: str = Field(description="the period as asked: 2026-11, 2026-Q4, 2026 or since..until")
    tenant: str | None = Field(description="the tenant reported on; null: every tenant")
    generated_at: datetime
    taxonomy_version: str
    suppression: dict[str, int] = Field(description="min_count (k) and min_meetings")
    totals: Breakdown
    meetings: int | None = Field(description="distinct meetings with at least one decision")
    meetings_actioned: int | None = Field(description="distinct meetings with a review or block decision")
    by_label: list[LabelBreakdown]
    by_language: list[Breakdown]
    by_source: list[Breakdown]
    by_day: list[Breakdown]
    by_policy: list[Breakdown]
    cross_tab: list[CrossTabCell] = Field(description="label x language x source x action")
    by_known_content: list[Breakdown] = Field(
        description="decisions that matched a known-content hash list, per `list_id/kind`"
    )
    time_to_action: list[Timing] = Field(
        description="`removal`: decision to removal; `human_review`: decision to first confirm/overturn"
    )
    exposure: list[Exposure]
    reviews: Reviews
    model_versions: list[ModelUsage]
    policy_versions: list[PolicyUsage]


# -- periods ---------------------------------------------------------------------------------------

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-[Qq]([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")


def parse_period(text: str) -> tuple[date, date]:
    """`2026-11` (month), `2026-Q4` (quarter) or `2026` (year) -> its first and last UTC day."""
    value = text.strip()
    if match := _MONTH.match(value):
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            raise DataError(f"period {text!r}: month {month} is not 01-12")
        return date(year, month, 1), _month_end(year, month)
    if match := _QUARTER.match(value):
        year, quarter = int(match[1]), int(match[2])
        return date(year, 3 * quarter - 2, 1), _month_end(year, 3 * quarter)
    if match := _YEAR.match(value):
        return date(int(match[1]), 1, 1), date(int(match[1]), 12, 31)
    raise DataError(f"period {text!r} is not a month (2026-11), a quarter (2026-Q4) or a year (2026)")


def _month_end(year: int, month: int) -> date:
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return following - timedelta(days=1)


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


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation between closest ranks (numpy's default method)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("quantile of no values")
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# -- aggregation -----------------------------------------------------------------------------------


@dataclass
class _Row:
    """A breakdown row while counting: per action decisions and flagged, and distinct meetings."""

    actions: dict[str, int]
    flagged: int = 0
    meetings: int = 0

    @property
    def decisions(self) -> int:
        return sum(self.actions.values())


def aggregate(
    store: AuditStore,
    since: date,
    until: date,
    *,
    tenant: str | None = None,
    suppression: Suppression = NO_SUPPRESSION,
    period: str | None = None,
) -> TransparencyReport:
    """The report for decisions made between `since` and `until` (inclusive UTC days).

    `tenant`: only that tenant's decisions (None: every tenant). `suppression`: the small-count rule
    (none by default: the library caller decides; the service and CLI default to k=10, 3 meetings).
    """
    from textguard.audit import decisions_table as d
    from textguard.audit import events_table as ev
    from textguard.audit import labels_table as lbl
    from textguard.audit import matches_table as mt
    from textguard.audit import reviews_table as rv

    start, end = period_bounds(since, until)
    scope: ColumnElement[bool] = d.c.tenant == tenant if tenant is not None else true()
    in_period: ColumnElement[bool] = and_(d.c.created_at >= start, d.c.created_at < end, scope)
    is_flagged = d.c.label_count > 0
    flagged_id = func.count(func.distinct(case((is_flagged, d.c.decision_id))))
    decisions_n = func.count(func.distinct(d.c.decision_id))
    meetings_n = func.count(func.distinct(d.c.meeting_hash))

    def grouped(connection: Any, keys: Sequence[Any], source: Any = d) -> dict[tuple[str, ...], _Row]:
        """Per key (tuple): decisions per action, flagged decisions, distinct meetings."""
        rows: dict[tuple[str, ...], _Row] = {}
        # Over audit_decisions alone every row is one decision: plain counts, no DISTINCT to sort by.
        alone = source is d
        query = (
            select(
                *keys,
                d.c.action,
                func.count() if alone else decisions_n,
                func.sum(case((is_flagged, 1), else_=0)) if alone else flagged_id,
            )
            .select_from(source)
            .where(in_period)
            .group_by(*keys, d.c.action)
        )
        for *key, action, count, flagged in connection.execute(query):
            row = rows.setdefault(tuple(str(k) for k in key), _Row(dict.fromkeys(ACTIONS, 0)))
            row.actions[str(action)] = row.actions.get(str(action), 0) + int(count)
            row.flagged += int(flagged or 0)
        meetings_query = select(*keys, meetings_n).select_from(source).where(in_period).group_by(*keys)
        for *key, meetings in connection.execute(meetings_query):
            rows.setdefault(tuple(str(k) for k in key), _Row(dict.fromkeys(ACTIONS, 0))).meetings = int(
                meetings
            )
        return rows

    label_or_none = func.coalesce(lbl.c.label, literal_column(f"'{NO_LABEL}'"))
    with_labels = d.outerjoin(lbl, lbl.c.decision_id == d.c.decision_id)
    with_matches = mt.join(d, mt.c.decision_id == d.c.decision_id)
    try:
        with store.engine.connect() as connection:
            totals = grouped(connection, [])
            by_label = grouped(connection, [lbl.c.label], lbl.join(d, lbl.c.decision_id == d.c.decision_id))
            by_language = grouped(connection, [d.c.language])
            by_source = grouped(connection, [d.c.source])
            by_day = grouped(connection, [d.c.day])
            by_policy = grouped(connection, [d.c.policy])
            cross = grouped(connection, [label_or_none, d.c.language, d.c.source], with_labels)
            known = grouped(connection, [mt.c.list_id, mt.c.kind], with_matches)
            label_extra = _label_figures(connection, in_period, d, lbl, mt, rv)
            review_rows = grouped(connection, [rv.c.outcome], rv.join(d, rv.c.decision_id == d.c.decision_id))
            meetings = connection.execute(select(meetings_n).where(in_period)).scalar_one()
            meetings_actioned = connection.execute(
                select(meetings_n).where(in_period, d.c.action.in_(("review", "block")))
            ).scalar_one()
            # One row per decision with events: audience (largest reported), first shown, first removal.
            exposure_rows = connection.execute(
                select(
                    d.c.action,
                    d.c.created_at,
                    func.max(ev.c.participants),
                    func.min(ev.c.shown_at),
                    func.min(ev.c.removed_at),
                )
                .select_from(ev.join(d, ev.c.decision_id == d.c.decision_id))
                .where(in_period)
                .group_by(d.c.decision_id, d.c.action, d.c.created_at)
            ).all()
            first_review = connection.execute(
                select(d.c.action, d.c.created_at, func.min(rv.c.created_at))
                .select_from(rv.join(d, rv.c.decision_id == d.c.decision_id))
                .where(in_period, rv.c.outcome.in_(("confirm", "overturn")))
                .group_by(d.c.decision_id, d.c.action, d.c.created_at)
            ).all()
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
            policies = connection.execute(
                select(
                    d.c.policy,
                    d.c.policy_version,
                    func.count(),
                    func.min(d.c.created_at),
                    func.max(d.c.created_at),
                )
                .where(in_period)
                .group_by(d.c.policy, d.c.policy_version)
            ).all()
    except SQLAlchemyError as exc:
        raise DataError(f"cannot read the audit store: {str(exc).splitlines()[0]}") from None

    rule = suppression
    review_counts = {key[0]: row.decisions for key, row in review_rows.items()}
    confirmed, overturned = review_counts.get("confirm", 0), review_counts.get("overturn", 0)
    shown_confirmed, shown_overturned = rule.count(confirmed), rule.count(overturned)
    overturn_rate = (
        overturned / (confirmed + overturned)
        if confirmed + overturned and shown_confirmed is not None and shown_overturned is not None
        else None
    )
    return TransparencyReport(
        since=since,
        until=until,
        period=period or f"{since}..{until}",
        tenant=tenant,
        generated_at=datetime.now(UTC),
        taxonomy_version=TAXONOMY_VERSION,
        suppression={"min_count": rule.min_count, "min_meetings": rule.min_meetings},
        totals=_breakdown("all", totals.get((), _Row(dict.fromkeys(ACTIONS, 0))), rule),
        meetings=rule.count(int(meetings)),
        meetings_actioned=rule.count(int(meetings_actioned)),
        by_label=[
            _label_breakdown(label, by_label.get((label,)), label_extra.get(label, {}), rule)
            for label in [*LABELS, *sorted({k[0] for k in by_label} - set(LABELS))]
        ],
        by_language=_breakdowns(by_language, rule),
        by_source=_breakdowns(by_source, rule),
        by_day=sorted(_breakdowns(by_day, rule), key=lambda item: item.key),
        by_policy=_breakdowns(by_policy, rule),
        cross_tab=_cross_tab(cross, rule),
        by_known_content=_breakdowns({(f"{k[0]}/{k[1]}",): row for k, row in known.items()}, rule),
        time_to_action=_timings(exposure_rows, first_review, rule),
        exposure=_exposure(exposure_rows, rule),
        reviews=Reviews(
            confirmed=shown_confirmed,
            overturned=shown_overturned,
            appealed=rule.count(review_counts.get("appeal", 0)),
            reinstated=rule.count(review_counts.get("reinstate", 0)),
            overturn_rate=overturn_rate,
            by_outcome=_breakdowns(review_rows, rule, ordered=("confirm", "overturn", "appeal", "reinstate")),
        ),
        model_versions=sorted(
            (
                ModelUsage(
                    model_name=name,
                    model_version=version,
                    decisions=rule.count(int(count)),
                    first_seen=_as_utc(first),
                    last_seen=_as_utc(last),
                )
                for name, version, count, first, last in models
            ),
            key=lambda usage: (usage.first_seen, usage.model_name, usage.model_version),
        ),
        policy_versions=sorted(
            (
                PolicyUsage(
                    policy=name,
                    policy_version=version or "unknown",  # rows from before policies had versions
                    decisions=rule.count(int(count)),
                    first_seen=_as_utc(first),
                    last_seen=_as_utc(last),
                )
                for name, version, count, first, last in policies
            ),
            key=lambda usage: (usage.first_seen, usage.policy, usage.policy_version),
        ),
    )


def _label_figures(
    connection: Any, in_period: ColumnElement[bool], d: Any, lbl: Any, mt: Any, rv: Any
) -> dict[str, dict[str, int]]:
    """Per label: decisions with only that label, with a hash-list match, and per review outcome."""
    figures: dict[str, dict[str, int]] = defaultdict(dict)
    joined = lbl.join(d, lbl.c.decision_id == d.c.decision_id)
    count = func.count(func.distinct(d.c.decision_id))
    for label, value in connection.execute(
        select(lbl.c.label, count)
        .select_from(joined)
        .where(in_period, d.c.label_count == 1)
        .group_by(lbl.c.label)
    ):
        figures[str(label)]["only_label"] = int(value)
    matched = select(mt.c.decision_id)
    for label, value in connection.execute(
        select(lbl.c.label, count)
        .select_from(joined)
        .where(in_period, d.c.decision_id.in_(matched))
        .group_by(lbl.c.label)
    ):
        figures[str(label)]["known_content"] = int(value)
    for label, outcome, value in connection.execute(
        select(lbl.c.label, rv.c.outcome, count)
        .select_from(joined.join(rv, rv.c.decision_id == d.c.decision_id))
        .where(in_period)
        .group_by(lbl.c.label, rv.c.outcome)
    ):
        figures[str(label)][str(outcome)] = int(value)
    return figures


def _breakdown(key: str, row: _Row, rule: Suppression) -> Breakdown:
    if rule.row_hidden(row.meetings):
        return Breakdown(
            key=key, decisions=None, flagged=None, actions=dict.fromkeys(row.actions), suppressed=True
        )
    return Breakdown(
        key=key,
        decisions=rule.count(row.decisions),
        flagged=rule.count(row.flagged),
        actions={action: rule.count(value) for action, value in row.actions.items()},
    )


def _breakdowns(
    rows: dict[tuple[str, ...], _Row], rule: Suppression, *, ordered: Sequence[str] = ()
) -> list[Breakdown]:
    """One Breakdown per key: `ordered` keys first (listed even at zero), then by decisions, key."""
    merged = {key[0]: row for key, row in rows.items()}
    fixed = [_breakdown(key, merged.pop(key, _Row(dict.fromkeys(ACTIONS, 0))), rule) for key in ordered]
    rest = sorted(merged.items(), key=lambda item: (-item[1].decisions, item[0]))
    return fixed + [_breakdown(key, row, rule) for key, row in rest]


def _label_breakdown(
    label: str, row: _Row | None, extra: dict[str, int], rule: Suppression
) -> LabelBreakdown:
    row = row or _Row(dict.fromkeys(ACTIONS, 0))
    hidden = rule.row_hidden(row.meetings)

    def shown(value: int) -> int | None:
        return None if hidden else rule.count(value)

    return LabelBreakdown(
        key=label,
        flagged=shown(row.decisions),
        actions={action: shown(value) for action, value in row.actions.items()},
        only_label=shown(extra.get("only_label", 0)),
        known_content=shown(extra.get("known_content", 0)),
        confirmed=shown(extra.get("confirm", 0)),
        overturned=shown(extra.get("overturn", 0)),
        appealed=shown(extra.get("appeal", 0)),
        reinstated=shown(extra.get("reinstate", 0)),
        suppressed=hidden,
    )


def _cross_tab(rows: dict[tuple[str, ...], _Row], rule: Suppression) -> list[CrossTabCell]:
    """One cell per (label, language, source, action) that occurs; meetings are per (label, language,
    source), so every action of a withheld combination is withheld."""
    cells = []
    label_order = {label: index for index, label in enumerate([*LABELS, NO_LABEL])}
    for (label, language, source), row in sorted(
        rows.items(), key=lambda item: (label_order.get(item[0][0], 99), item[0])
    ):
        hidden = rule.row_hidden(row.meetings)
        for action, value in row.actions.items():
            if value:
                cells.append(
                    CrossTabCell(
                        label=label,
                        language=language,
                        source=source,
                        action=action,
                        decisions=None if hidden else rule.count(value),
                        suppressed=hidden,
                    )
                )
    return cells


def _seconds(later: Any, earlier: Any) -> float:
    return (_as_utc(later) - _as_utc(earlier)).total_seconds()


def _timing(key: str, values: list[float], rule: Suppression) -> Timing:
    if not values or len(values) < rule.min_count:
        return Timing(key=key, n=rule.count(len(values)), median_s=None, p90_s=None)
    return Timing(key=key, n=len(values), median_s=quantile(values, 0.5), p90_s=quantile(values, 0.9))


def _timings(exposure_rows: Iterable[Any], first_review: Iterable[Any], rule: Suppression) -> list[Timing]:
    """Seconds from the decision to its removal (actioned decisions), and to the first human review."""
    removal = [
        _seconds(removed, created)
        for action, created, _participants, _shown, removed in exposure_rows
        if removed is not None and action in ("review", "block")
    ]
    review = [_seconds(reviewed, created) for _action, created, reviewed in first_review]
    return [_timing("removal", removal, rule), _timing("human_review", review, rule)]


def _exposure(rows: Sequence[Any], rule: Suppression) -> list[Exposure]:
    grouped: dict[str, list[Any]] = {action: [] for action in ACTIONS}
    for row in rows:
        grouped.setdefault(str(row[0]), []).append(row)
    result = []
    for action, items in grouped.items():
        audience = [int(participants) for _, _, participants, _, _ in items if participants is not None]
        visible = [
            _seconds(removed, shown)
            for _, _, _, shown, removed in items
            if shown is not None and removed is not None
        ]
        removed = sum(1 for item in items if item[4] is not None)
        enough_audience = len(audience) >= rule.min_count and bool(audience)
        enough_visible = len(visible) >= rule.min_count and bool(visible)
        result.append(
            Exposure(
                key=action,
                decisions=rule.count(len(items)),
                participants_total=sum(audience) if enough_audience else (0 if not audience else None),
                participants_median=quantile(audience, 0.5) if enough_audience else None,
                participants_p90=quantile(audience, 0.9) if enough_audience else None,
                removed=rule.count(removed),
                visible_median_s=quantile(visible, 0.5) if enough_visible else None,
                visible_p90_s=quantile(visible, 0.9) if enough_visible else None,
            )
        )
    return result


def _as_utc(value: Any) -> datetime:
    # Aggregates bypass the column type's result processing on some dialects.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- renderings: every format is built from the same sections ------------------------------------


@dataclass(frozen=True)
class Section:
    name: str  # machine name (CSV `section`)
    title: str
    header: list[str]
    rows: list[list[str]]
    #: How many leading columns form the row's key (CSV `key` joins them with "/").
    key_columns: int = 1


def _actions(report: TransparencyReport) -> list[str]:
    """Canonical actions first, then any other action that occurs in the period."""
    seen = list(ACTIONS)
    items: list[Breakdown | LabelBreakdown] = [report.totals, *report.by_label]
    for name in ("by_language", "by_source", "by_day", "by_policy", "by_known_content"):
        items.extend(getattr(report, name))
    for item in items:
        seen.extend(action for action in item.actions if action not in seen)
    return seen


def _cell(value: int | float | None, report: TransparencyReport, *, hidden: bool = False) -> str:
    if hidden:
        return "suppressed"
    if value is None:
        return f"<{report.suppression['min_count']}"
    if isinstance(value, float):
        return _stat(value)
    return str(value)


def _stat(value: float | None) -> str:
    """A median, p90 or rate: `n/a` when there is none or it is withheld (too few values)."""
    if value is None:
        return "n/a"
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0").rstrip(".")


def _versions_section(
    name: str,
    title: str,
    column: str,
    usages: list[tuple[str, ModelUsage | PolicyUsage]],
    cell: Callable[[int | None], str],
) -> Section:
    """Which model or policy versions decided in the period, with their first and last decision."""
    return Section(
        name,
        title,
        [column, "decisions", "first seen", "last seen"],
        [
            [
                label,
                cell(usage.decisions),
                usage.first_seen.isoformat(timespec="seconds"),
                usage.last_seen.isoformat(timespec="seconds"),
            ]
            for label, usage in usages
        ],
    )


def sections(report: TransparencyReport) -> list[Section]:
    """The report as tables: what Markdown, HTML, CSV and the terminal table print."""
    actions = _actions(report)

    def cell(value: int | float | None, hidden: bool = False) -> str:
        return _cell(value, report, hidden=hidden)

    def breakdown_section(name: str, title: str, dimension: str, items: list[Breakdown]) -> Section:
        return Section(
            name,
            title,
            [dimension, "decisions", "flagged", *actions],
            [
                [
                    item.key,
                    cell(item.decisions, item.suppressed),
                    cell(item.flagged, item.suppressed),
                    *(cell(item.actions.get(a, 0), item.suppressed) for a in actions),
                ]
                for item in items
            ],
        )

    totals = report.totals
    k = report.suppression["min_count"]
    summary = Section(
        "summary",
        "Summary",
        ["figure", "value"],
        [
            ["period", f"{report.period}: {report.since} to {report.until} (UTC days, inclusive)"],
            ["tenant", report.tenant or "all tenants"],
            ["taxonomy version", report.taxonomy_version],
            [
                "small-count suppression",
                f"counts below {k} shown as <{k}; rows from fewer than "
                f"{report.suppression['min_meetings']} meetings withheld",
            ],
            ["decisions", cell(totals.decisions, totals.suppressed)],
            ["flagged", cell(totals.flagged, totals.suppressed)],
            *([f"action: {a}", cell(totals.actions.get(a, 0), totals.suppressed)] for a in actions),
            ["meetings", cell(report.meetings)],
            ["meetings actioned", cell(report.meetings_actioned)],
        ],
    )
    label_columns = ["only_label", "known_content", "confirmed", "overturned", "appealed", "reinstated"]
    by_label = Section(
        "by_label",
        "By label",
        ["label", "flagged", *actions, *label_columns],
        [
            [
                item.key,
                cell(item.flagged, item.suppressed),
                *(cell(item.actions.get(a, 0), item.suppressed) for a in actions),
                *(cell(getattr(item, column), item.suppressed) for column in label_columns),
            ]
            for item in report.by_label
        ],
    )
    cross = Section(
        "cross_tab",
        "By label, language, source and action",
        ["label", "language", "source", "action", "decisions"],
        [
            [c.label, c.language, c.source, c.action, cell(c.decisions, c.suppressed)]
            for c in report.cross_tab
        ],
        key_columns=4,
    )
    timing = Section(
        "time_to_action",
        "Time to action (seconds)",
        ["measure", "decisions", "median", "p90"],
        [[t.key, cell(t.n), _stat(t.median_s), _stat(t.p90_s)] for t in report.time_to_action],
    )
    exposure = Section(
        "exposure",
        "Exposure (as the platform reported it)",
        [
            "action",
            "decisions reported",
            "participants total",
            "participants median",
            "participants p90",
            "removed",
            "visible median s",
            "visible p90 s",
        ],
        [
            [
                e.key,
                cell(e.decisions),
                cell(e.participants_total),
                _stat(e.participants_median),
                _stat(e.participants_p90),
                cell(e.removed),
                _stat(e.visible_median_s),
                _stat(e.visible_p90_s),
            ]
            for e in report.exposure
        ],
    )
    reviews = report.reviews
    review_summary = Section(
        "reviews",
        "Human review, appeals and reinstatements",
        ["figure", "decisions"],
        [
            ["confirmed", cell(reviews.confirmed)],
            ["overturned", cell(reviews.overturned)],
            ["appealed", cell(reviews.appealed)],
            ["reinstated", cell(reviews.reinstated)],
            ["overturn rate", _stat(reviews.overturn_rate)],
        ],
    )
    models = _versions_section(
        "model_versions",
        "Model versions in force",
        "model",
        [(f"{u.model_name}@{u.model_version}", u) for u in report.model_versions],
        cell,
    )
    policies = _versions_section(
        "policy_versions",
        "Policy versions in force",
        "policy",
        [(f"{u.policy}@{u.policy_version}", u) for u in report.policy_versions],
        cell,
    )
    return [
        summary,
        by_label,
        breakdown_section("by_language", "By language", "language", report.by_language),
        breakdown_section("by_source", "By source", "source", report.by_source),
        cross,
        breakdown_section("by_known_content", "Known-content matches", "list/kind", report.by_known_content),
        timing,
        exposure,
        review_summary,
        breakdown_section(
            "review_outcomes", "Review outcomes by original action", "outcome", reviews.by_outcome
        ),
        breakdown_section("by_policy", "By policy", "policy", report.by_policy),
        models,
        policies,
        breakdown_section("by_day", "By day", "day", report.by_day),
    ]


def to_csv(report: TransparencyReport) -> str:
    """Long format, one figure per line: section,key,metric,value (easy to pivot in a spreadsheet)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["section", "key", "metric", "value"])
    for section in sections(report):
        width = section.key_columns
        for row in section.rows:
            key = "/".join(row[:width])
            for metric, value in zip(section.header[width:], row[width:], strict=True):
                writer.writerow([section.name, key, metric, value])
    return buffer.getvalue()


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def report_title(report: TransparencyReport) -> str:
    who = f", tenant {report.tenant}" if report.tenant else ""
    return f"textguard transparency report, {report.since} to {report.until}{who}"


def to_markdown(report: TransparencyReport) -> str:
    parts = [
        f"# {report_title(report)}",
        "",
        "Automated decisions on meeting chat and live captions (UTC days, both ends included). Reviews, "
        "appeals and exposure are those of the decisions made in the period, as known at "
        f"{report.generated_at.isoformat(timespec='seconds')}.",
    ]
    for section in sections(report):
        body = _markdown_table(section.header, section.rows) if section.rows else "_none_"
        parts += ["", f"## {section.title}", "", body]
    return "\n".join(parts) + "\n"


def to_html(report: TransparencyReport) -> str:
    """A self-contained HTML page (no scripts, no external resources)."""
    escape: Callable[[str], str] = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(report_title(report))}</title>",
        "<style>body{font-family:sans-serif;max-width:72rem;margin:2rem auto}table{border-collapse:collapse;"
        "margin-bottom:1.5rem}th,td{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}"
        "th:first-child,td:first-child{text-align:left}</style></head><body>",
        f"<h1>{escape(report_title(report))}</h1>",
    ]
    for section in sections(report):
        parts.append(f"<h2>{escape(section.title)}</h2>")
        if not section.rows:
            parts.append("<p><em>none</em></p>")
            continue
        head = "".join(f"<th>{escape(column)}</th>" for column in section.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(value)}</td>" for value in row) + "</tr>" for row in section.rows
        )
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render(report: TransparencyReport, output_format: str) -> str:
    """`json`, `csv`, `markdown` or `html`."""
    if output_format == "json":
        return report.model_dump_json(indent=2) + "\n"
    renderers = {"csv": to_csv, "markdown": to_markdown, "html": to_html}
    try:
        return renderers[output_format](report)
    except KeyError:
        raise DataError(f"unknown report format {output_format!r} (json, csv, markdown, html)") from None
