"""The audit store on the real PostgreSQL at 127.0.0.1:5432 (database `test`).

Each test run gets its own schema (dropped afterwards), so runs never see each other's rows. Skipped
cleanly where no server answers. Replicas are modelled as separate `AuditStore` instances (separate
engines and connection pools) writing at the same time.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from textguard.audit import AuditRecord, AuditStore, decisions_table, labels_table, matches_table
from textguard.report import aggregate

pytestmark = pytest.mark.postgres

KEY = "postgres-test-key"
USERS = ("postgres", "root")


def _find_user() -> str | None:
    import psycopg

    for user in USERS:
        try:
            psycopg.connect(f"host=127.0.0.1 port=5432 dbname=test user={user}", connect_timeout=2).close()
        except psycopg.Error:
            continue
        return user
    return None


@pytest.fixture(scope="module")
def pg_user() -> str:
    user = _find_user()
    if user is None:
        pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432 (database test)")
    return user


@pytest.fixture
def pg_schema(pg_user: str) -> Iterator[tuple[str, str]]:
    """(url, schema): a fresh schema for this test, dropped with everything in it afterwards."""
    import psycopg

    schema = f"tg_audit_{uuid.uuid4().hex[:12]}"
    dsn = f"host=127.0.0.1 port=5432 dbname=test user={pg_user}"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"postgresql+psycopg://{pg_user}@127.0.0.1:5432/test", schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def make_record(index: int, replica: str, created_at: datetime | None = None) -> AuditRecord:
    flagged = index % 3 == 0
    return AuditRecord(
        text=f"replica {replica} message {index}",
        scores={
            "violent_threat": 0.9 if flagged else 0.1,
            "extremist_glorification": 0.0,
            "hate_dehumanization": 0.0,
        },
        labels=["violent_threat"] if flagged else [],
        action="review" if flagged else "allow",
        model_name="textguard",
        model_version="7",
        policy="default",
        source="caption" if index % 2 else "chat",
        language=("en", "fr", "de")[index % 3],
        message_id=f"{replica}-{index}",
        meeting_id=f"meeting-{index % 4}",
        request_id=f"{replica}-req-{index}",
        created_at=created_at or datetime.now(UTC),
    )


def count(store: AuditStore) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(decisions_table)).scalar_one())


def test_tables_land_in_the_test_schema_with_indexes(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    store = AuditStore(url, hash_key=KEY, schema=schema)
    match = {"list_id": "gifct", "list_version": 3, "kind": "minhash", "hash_id": "h1", "distance": 12}
    store.record_sync([replace(make_record(0, "a"), matches=[{**match, "label": "violent_threat"}])])
    with store.engine.connect() as connection:
        tables = connection.exec_driver_sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %(s)s", {"s": schema}
        ).scalars()
        indexes = connection.exec_driver_sql(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %(s)s", {"s": schema}
        ).scalars()
        assert set(tables) == {
            "audit_decisions",
            "audit_labels",
            "audit_matches",
            "audit_reviews",
            "audit_events",
        }
        (stored,) = connection.execute(select(matches_table)).mappings().all()
        assert (stored["list_id"], stored["kind"], stored["distance"]) == ("gifct", "minhash", 12.0)
        assert "ix_audit_decisions_created_at" in set(indexes)
        row = connection.execute(select(decisions_table)).mappings().one()
    assert row["text"] is None and row["message_hash"] == store.hash_message_id("a-0")
    assert row["created_at"].tzinfo is not None and row["scores"]["violent_threat"] == 0.9
    store.close()


def test_replicas_starting_together_create_the_schema_once(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    stores: list[AuditStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            stores.append(AuditStore(url, hash_key=KEY, schema=schema))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(stores) == 4
    for store in stores:
        store.close()


def test_concurrent_writers_from_two_replicas_all_land(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    replicas = {name: AuditStore(url, hash_key=KEY, schema=schema) for name in ("a", "b")}
    per_thread, threads_per_replica, batch = 30, 3, 3
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(replicas) * threads_per_replica)

    def write(name: str, offset: int) -> None:
        try:
            barrier.wait()
            for start in range(offset, offset + per_thread, batch):
                replicas[name].record_sync([make_record(i, name) for i in range(start, start + batch)])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(name, n * per_thread))
        for name in replicas
        for n in range(threads_per_replica)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    expected = len(replicas) * threads_per_replica * per_thread
    store = replicas["a"]
    assert count(store) == expected
    with store.engine.connect() as connection:
        hashes = set(connection.execute(select(decisions_table.c.message_hash)).scalars())
        labels = connection.execute(select(func.count()).select_from(labels_table)).scalar_one()
    wanted = {store.hash_message_id(f"{name}-{i}") for name in replicas for i in range(expected // 2)}
    assert hashes == wanted
    assert labels == sum(1 for i in range(expected // 2) if i % 3 == 0) * len(replicas)
    for replica in replicas.values():
        replica.close()


def test_async_record_commits_before_returning(pg_schema: tuple[str, str]) -> None:
    import anyio

    url, schema = pg_schema
    writer = AuditStore(url, hash_key=KEY, schema=schema)
    reader = AuditStore(url, hash_key=KEY, schema=schema, create=False)
    anyio.run(writer.record, [make_record(i, "w") for i in range(4)])
    # A different engine (another replica) sees the rows as soon as record() has returned.
    assert count(reader) == 4
    writer.close()
    reader.close()


def test_aggregate_on_postgres_matches_sqlite(pg_schema: tuple[str, str], tmp_path: Path) -> None:
    url, schema = pg_schema
    base = datetime(2025, 5, 1, 22, 0, tzinfo=UTC)
    records = [make_record(i, "r", created_at=base + timedelta(hours=i)) for i in range(12)]
    postgres = AuditStore(url, hash_key=KEY, schema=schema)
    sqlite = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}", hash_key=KEY)
    postgres.record_sync(records)
    sqlite.record_sync(records)
    period = (date(2025, 5, 2), date(2025, 5, 2))
    from_postgres = aggregate(postgres, *period).model_dump(exclude={"generated_at"})
    from_sqlite = aggregate(sqlite, *period).model_dump(exclude={"generated_at"})
    assert from_postgres == from_sqlite
    # 22:00 and 23:00 on May 1 fall outside; hours 2..11 from base are May 2 (10 decisions).
    assert from_postgres["totals"]["decisions"] == 10
    assert [item["key"] for item in from_postgres["by_day"]] == ["2025-05-02"]
    flagged = sum(1 for i in range(2, 12) if i % 3 == 0)
    assert from_postgres["totals"]["flagged"] == flagged
    row = from_postgres["by_label"][0]
    assert (row["key"], row["flagged"], row["only_label"]) == ("violent_threat", flagged, flagged)
    assert row["actions"] == {"allow": 0, "review": flagged, "block": 0}
    assert aggregate(postgres, date.min, date.max).totals.decisions == len(records)
    postgres.close()
    sqlite.close()
