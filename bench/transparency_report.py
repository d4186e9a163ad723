"""How long the transparency report takes on a large audit store, against a plain COUNT(*) of the same
period (the cheapest possible query over those rows), on SQLite.

Plants `--decisions` decisions over 90 days and two tenants (45% flagged, 70% of those reviewed, 80%
with exposure events; reviews and events inserted in bulk), then times `aggregate` for one month and
one quarter, all tenants and one tenant, each the best of `--rounds`.

    python bench/transparency_report.py                     # 100k decisions, about a minute on 2 cores
    python bench/transparency_report.py --decisions 20000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from textguard.audit import AuditRecord, AuditStore, decisions_table, events_table, reviews_table
from textguard.labels import LABELS
from textguard.report import Suppression, aggregate

START = datetime(2026, 10, 1, tzinfo=UTC)


def plant(store: AuditStore, count: int, rng: random.Random) -> None:
    for offset in range(0, count, 2000):
        records, extras = [], []
        for index in range(offset, min(count, offset + 2000)):
            flagged = rng.random() < 0.45
            labels = rng.sample(LABELS, 1) if flagged else []
            created = START + timedelta(seconds=rng.randrange(90 * 86400))
            tenant = rng.choice(("acme", "globex"))
            records.append(
                AuditRecord(
                    text=f"message {index}",
                    scores=dict.fromkeys(LABELS, 0.5),
                    labels=labels,
                    action=rng.choice(("review", "block")) if flagged else "allow",
                    model_name="textguard",
                    model_version="1",
                    policy="default",
                    policy_version="p1",
                    source=rng.choice(("chat", "caption")),
                    language=rng.choice(("en", "fr", "de", "es", "ar")),
                    meeting_id=f"{tenant}-{rng.randrange(500)}",
                    created_at=created,
                    tenant=tenant,
                )
            )
            extras.append((flagged, created, tenant))
        ids = store.record_sync(records)
        reviews, events = [], []
        for decision_id, (flagged, created, tenant) in zip(ids, extras, strict=True):
            if flagged and rng.random() < 0.7:
                reviews.append(
                    {
                        "review_id": uuid.uuid4().hex,
                        "decision_id": decision_id,
                        "tenant": tenant,
                        "outcome": rng.choice(("confirm", "confirm", "overturn", "appeal")),
                        "labels": None,
                        "reviewer": "r",
                        "created_at": created + timedelta(seconds=rng.randrange(60, 7200)),
                    }
                )
            if flagged and rng.random() < 0.8:
                events.append(
                    {
                        "event_id": uuid.uuid4().hex,
                        "decision_id": decision_id,
                        "tenant": tenant,
                        "participants": rng.randrange(2, 300),
                        "shown_at": created,
                        "removed_at": created + timedelta(seconds=rng.randrange(1, 900)),
                        "reporter": "p",
                        "created_at": created,
                    }
                )
        with store.engine.begin() as connection:
            if reviews:
                connection.execute(insert(reviews_table), reviews)
            if events:
                connection.execute(insert(events_table), events)


def best(function, rounds: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = AuditStore(f"sqlite:///{Path(folder) / 'audit.db'}", hash_key="bench")
        started = time.perf_counter()
        plant(store, args.decisions, random.Random(3))
        print(f"planted {args.decisions} decisions in {time.perf_counter() - started:.1f} s")
        d = decisions_table
        print("| period | tenant | decisions | COUNT(*) s | report s | ratio |")
        print("|---|---|---|---|---|---|")
        for label, since, until in (
            ("2026-11", date(2026, 11, 1), date(2026, 11, 30)),
            ("2026-Q4", date(2026, 10, 1), date(2026, 12, 31)),
        ):
            for tenant in (None, "acme"):
                start = datetime.combine(since, datetime.min.time(), tzinfo=UTC)
                end = datetime.combine(until + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
                condition = [d.c.created_at >= start, d.c.created_at < end]
                if tenant:
                    condition.append(d.c.tenant == tenant)

                def count(condition: list = condition) -> int:  # type: ignore[type-arg]
                    with store.engine.connect() as connection:
                        return int(connection.execute(select(func.count()).where(*condition)).scalar_one())

                rows = count()
                baseline = best(count, args.rounds)
                report = best(
                    lambda since=since, until=until, tenant=tenant: aggregate(
                        store, since, until, tenant=tenant, suppression=Suppression()
                    ),
                    args.rounds,
                )
                print(
                    f"| {label} | {tenant or 'all'} | {rows} | {baseline:.3f} | {report:.2f} | "
                    f"{report / baseline:.0f}x |"
                )
        store.close()


if __name__ == "__main__":
    main()
