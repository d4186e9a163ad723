"""A planted audit store for the transparency report: decisions, reviews, appeals and exposure events
across two months and two tenants, and the report's figures computed directly from the planted data
(plain Python and numpy, no SQL), to compare with `textguard.report.aggregate`."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from textguard.audit import AuditRecord, AuditStore
from textguard.labels import LABELS

TENANTS = ("acme", "globex")
LANGUAGES = ("en", "fr", "de")
SOURCES = ("chat", "caption")
ACTIONS = ("allow", "review", "block")
START = datetime(2026, 10, 1, tzinfo=UTC)


@dataclass
class Planted:
    index: int
    tenant: str
    created_at: datetime
    language: str
    source: str
    labels: list[str]
    action: str
    meeting: str | None
    policy: str
    policy_version: str
    model_version: str
    matches: list[dict[str, Any]]
    decision_id: str = ""
    #: (outcome, labels, created_at)
    reviews: list[tuple[str, list[str] | None, datetime]] = field(default_factory=list)
    #: (participants, shown_at, removed_at)
    events: list[tuple[int | None, datetime | None, datetime | None]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return f"planted message number {self.index} in {self.language}"


def build_world(seed: int = 7, count: int = 240) -> list[Planted]:
    rng = random.Random(seed)
    world = []
    for index in range(count):
        # 61 days from Oct 1 (two months), plus two rows just outside: Sep 30 23:59 and Dec 1 00:00.
        if index == 0:
            created = START - timedelta(minutes=1)
        elif index == 1:
            created = datetime(2026, 12, 1, tzinfo=UTC)
        else:
            created = START + timedelta(seconds=rng.randrange(61 * 86400))
        tenant = TENANTS[rng.random() < 0.4]
        flagged = rng.random() < 0.45
        labels = sorted(rng.sample(LABELS, rng.choice((1, 1, 2))), key=LABELS.index) if flagged else []
        action = rng.choice(("review", "review", "block")) if flagged else "allow"
        matches = []
        if flagged and rng.random() < 0.2:
            matches.append(
                {
                    "list_id": rng.choice(("gifct-slogans", "manifestos")),
                    "list_version": "3",
                    "kind": rng.choice(("exact", "minhash")),
                    "hash_id": f"h{index}",
                    "distance": None,
                    "label": labels[0],
                }
            )
        november = created >= datetime(2026, 11, 1, tzinfo=UTC)
        planted = Planted(
            index=index,
            tenant=tenant,
            created_at=created,
            language=rng.choice(LANGUAGES),
            source=rng.choice(SOURCES),
            labels=labels,
            action=action,
            meeting=None if rng.random() < 0.1 else f"{tenant}-meeting-{rng.randrange(14)}",
            policy=rng.choice(("default", "strict")),
            policy_version="p2" if november else "p1",
            model_version="2" if november else "1",
            matches=matches,
        )
        if flagged and rng.random() < 0.7:
            at = created + timedelta(seconds=rng.randrange(60, 7200))
            outcome = "overturn" if rng.random() < 0.3 else "confirm"
            planted.reviews.append((outcome, [] if outcome == "overturn" else labels, at))
            if rng.random() < 0.4:
                planted.reviews.append(("appeal", None, at + timedelta(hours=5)))
                if rng.random() < 0.5:
                    planted.reviews.append(("reinstate", None, at + timedelta(hours=9)))
        elif not flagged and rng.random() < 0.05:
            planted.reviews.append(
                ("overturn", ["violent_threat"], created + timedelta(seconds=rng.randrange(60, 7200)))
            )
        if rng.random() < (0.8 if flagged else 0.1):
            shown = created - timedelta(seconds=rng.randrange(0, 5))
            participants = rng.randrange(2, 300)
            removed = (
                created + timedelta(seconds=rng.randrange(1, 900)) if flagged and rng.random() < 0.8 else None
            )
            if rng.random() < 0.5:
                planted.events.append((participants, shown, removed))
            else:  # shown first, removal reported later with a larger audience
                planted.events.append((participants, shown, None))
                planted.events.append((participants + rng.randrange(0, 20), None, removed))
        world.append(planted)
    return world


def fill(store: AuditStore, world: list[Planted]) -> None:
    records = [
        AuditRecord(
            text=item.text,
            scores=dict.fromkeys(LABELS, 0.5),
            labels=item.labels,
            action=item.action,
            model_name="textguard",
            model_version=item.model_version,
            policy=item.policy,
            policy_version=item.policy_version,
            source=item.source,
            language=item.language,
            message_id=f"m{item.index}",
            meeting_id=item.meeting,
            matches=item.matches,
            created_at=item.created_at,
            tenant=item.tenant,
            key_id=f"{item.tenant}-key",
        )
        for item in world
    ]
    for item, decision_id in zip(world, store.record_sync(records), strict=True):
        item.decision_id = decision_id
        info = store.decision(decision_id)
        assert info is not None
        for outcome, labels, at in item.reviews:
            store.record_review(info, outcome, labels=labels, reviewer="reviewer-key", created_at=at)
        for participants, shown, removed in item.events:
            store.record_event(info, participants=participants, shown_at=shown, removed_at=removed)


# -- the figures, directly -------------------------------------------------------------------------


def in_scope(world: list[Planted], since: date, until: date, tenant: str | None) -> list[Planted]:
    return [
        item
        for item in world
        if since <= item.created_at.date() <= until and (tenant is None or item.tenant == tenant)
    ]


def _counts(items: list[Planted]) -> tuple[int, int, dict[str, int]]:
    actions = Counter(item.action for item in items)
    return len(items), sum(1 for item in items if item.labels), {a: actions.get(a, 0) for a in ACTIONS}


def breakdown(items: list[Planted], key: Any) -> dict[str, tuple[int, int, dict[str, int]]]:
    groups: dict[str, list[Planted]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return {name: _counts(members) for name, members in groups.items()}


def _outcomes(item: Planted) -> set[str]:
    return {outcome for outcome, _, _ in item.reviews}


def _stats(values: list[float]) -> tuple[int, float | None, float | None]:
    if not values:
        return 0, None, None
    return len(values), float(np.percentile(values, 50)), float(np.percentile(values, 90))


def expected(world: list[Planted], since: date, until: date, tenant: str | None) -> dict[str, Any]:
    items = in_scope(world, since, until, tenant)
    meetings = {item.meeting for item in items if item.meeting}
    by_label = {}
    for label in LABELS:
        carrying = [item for item in items if label in item.labels]
        _, _, actions = _counts(carrying)
        by_label[label] = {
            "flagged": len(carrying),
            "actions": actions,
            "only_label": sum(1 for item in carrying if item.labels == [label]),
            "known_content": sum(1 for item in carrying if item.matches),
            "confirmed": sum(1 for item in carrying if "confirm" in _outcomes(item)),
            "overturned": sum(1 for item in carrying if "overturn" in _outcomes(item)),
            "appealed": sum(1 for item in carrying if "appeal" in _outcomes(item)),
            "reinstated": sum(1 for item in carrying if "reinstate" in _outcomes(item)),
        }
    cross: Counter[tuple[str, str, str, str]] = Counter()
    for item in items:
        for label in item.labels or ["none"]:
            cross[(label, item.language, item.source, item.action)] += 1
    known: dict[str, list[Planted]] = defaultdict(list)
    for item in items:
        for key in {f"{m['list_id']}/{m['kind']}" for m in item.matches}:
            known[key].append(item)
    removal, review_delay = [], []
    exposure: dict[str, dict[str, Any]] = {}
    for action in ACTIONS:
        with_events = [item for item in items if item.action == action and item.events]
        audience, visible, removed = [], [], 0
        for item in with_events:
            reported = [p for p, _, _ in item.events if p is not None]
            shown = [s for _, s, _ in item.events if s is not None]
            gone = [r for _, _, r in item.events if r is not None]
            if reported:
                audience.append(max(reported))
            if gone:
                removed += 1
                if action != "allow":
                    removal.append((min(gone) - item.created_at).total_seconds())
                if shown:
                    visible.append((min(gone) - min(shown)).total_seconds())
        _, audience_median, audience_p90 = _stats([float(a) for a in audience])
        _, visible_median, visible_p90 = _stats(visible)
        exposure[action] = {
            "decisions": len(with_events),
            "participants_total": sum(audience),
            "participants_median": audience_median,
            "participants_p90": audience_p90,
            "removed": removed,
            "visible_median_s": visible_median,
            "visible_p90_s": visible_p90,
        }
    for item in items:
        verdicts = [at for outcome, _, at in item.reviews if outcome in ("confirm", "overturn")]
        if verdicts:
            review_delay.append((min(verdicts) - item.created_at).total_seconds())
    outcome_groups = {
        outcome: [item for item in items if outcome in _outcomes(item)]
        for outcome in ("confirm", "overturn", "appeal", "reinstate")
    }
    confirmed, overturned = len(outcome_groups["confirm"]), len(outcome_groups["overturn"])
    models: dict[str, list[datetime]] = defaultdict(list)
    policies: dict[str, list[datetime]] = defaultdict(list)
    for item in items:
        models[f"textguard@{item.model_version}"].append(item.created_at)
        policies[f"{item.policy}@{item.policy_version}"].append(item.created_at)
    return {
        "totals": _counts(items),
        "meetings": len(meetings),
        "meetings_actioned": len({i.meeting for i in items if i.meeting and i.action != "allow"}),
        "by_label": by_label,
        "by_language": breakdown(items, lambda item: item.language),
        "by_source": breakdown(items, lambda item: item.source),
        "by_day": breakdown(items, lambda item: item.created_at.date().isoformat()),
        "by_policy": breakdown(items, lambda item: item.policy),
        "cross_tab": dict(cross),
        "by_known_content": {key: _counts(members) for key, members in known.items()},
        "time_to_action": {"removal": _stats(removal), "human_review": _stats(review_delay)},
        "exposure": exposure,
        "reviews": {
            "confirmed": confirmed,
            "overturned": overturned,
            "appealed": len(outcome_groups["appeal"]),
            "reinstated": len(outcome_groups["reinstate"]),
            "overturn_rate": overturned / (confirmed + overturned) if confirmed + overturned else None,
            "by_outcome": {k: _counts(v) for k, v in outcome_groups.items() if v},
        },
        "model_versions": {k: (len(v), min(v), max(v)) for k, v in models.items()},
        "policy_versions": {k: (len(v), min(v), max(v)) for k, v in policies.items()},
    }


def figures(report: Any) -> dict[str, Any]:
    """The same figures read from a TransparencyReport, in `expected`'s shape."""

    def rows(items: list[Any]) -> dict[str, tuple[int, int, dict[str, int]]]:
        return {item.key: (item.decisions, item.flagged, item.actions) for item in items if item.decisions}

    return {
        "totals": (report.totals.decisions, report.totals.flagged, report.totals.actions),
        "meetings": report.meetings,
        "meetings_actioned": report.meetings_actioned,
        "by_label": {item.key: item.model_dump(exclude={"key", "suppressed"}) for item in report.by_label},
        "by_language": rows(report.by_language),
        "by_source": rows(report.by_source),
        "by_day": rows(report.by_day),
        "by_policy": rows(report.by_policy),
        "cross_tab": {(c.label, c.language, c.source, c.action): c.decisions for c in report.cross_tab},
        "by_known_content": rows(report.by_known_content),
        "time_to_action": {t.key: (t.n, t.median_s, t.p90_s) for t in report.time_to_action},
        "exposure": {e.key: e.model_dump(exclude={"key"}) for e in report.exposure},
        "reviews": {
            **report.reviews.model_dump(exclude={"by_outcome"}),
            "by_outcome": rows(report.reviews.by_outcome),
        },
        "model_versions": {
            f"{u.model_name}@{u.model_version}": (u.decisions, u.first_seen, u.last_seen)
            for u in report.model_versions
        },
        "policy_versions": {
            f"{u.policy}@{u.policy_version}": (u.decisions, u.first_seen, u.last_seen)
            for u in report.policy_versions
        },
    }
