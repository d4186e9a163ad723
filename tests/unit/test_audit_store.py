"""The audit store on SQLite: WAL + synchronous=FULL, one row per decision, hashes only, keyed hashes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, text

from textguard.audit import (
    AuditRecord,
    AuditStore,
    AuditUnavailableError,
    decisions_table,
    labels_table,
)

KEY = "k" * 32
SCORES = {"violent_threat": 0.91, "extremist_glorification": 0.02, "hate_dehumanization": 0.4}


def record(index: int, **fields: object) -> AuditRecord:
    values: dict[str, object] = {
        "text": f"message number {index} about the quarterly numbers",
        "scores": SCORES,
        "labels": ["violent_threat"] if index % 2 else [],
        "action": "block" if index % 2 else "allow",
        "model_name": "textguard",
        "model_version": "3",
        "policy": "default",
        "language": "en",
        "message_id": f"msg-{index}",
        "meeting_id": "meeting-alpha",
        "speaker_id": "alice@example.org",
        "request_id": f"req-{index}",
    }
    values.update(fields)
    return AuditRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    audit = AuditStore(f"sqlite:///{tmp_path / 'audit' / 'audit.db'}", hash_key=SecretStr(KEY))
    yield audit
    audit.close()


def test_sqlite_runs_in_wal_mode_with_full_sync(store: AuditStore) -> None:
    assert store.journal_mode() == "wal"
    with store.engine.connect() as connection:
        # 2 = FULL: every commit is fsynced, so a returned decision survives power loss as well.
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_every_decision_gets_a_row_and_flagged_labels_a_child_row(store: AuditStore) -> None:
    ids = anyio.run(store.record, [record(index) for index in range(5)])
    assert len(set(ids)) == 5
    with store.engine.connect() as connection:
        rows = connection.execute(select(decisions_table)).mappings().all()
        label_rows = connection.execute(select(labels_table)).all()
    assert sorted(row["decision_id"] for row in rows) == sorted(ids)
    assert {row["message_hash"] for row in rows} == {store.hash_message_id(f"msg-{i}") for i in range(5)}
    assert len(label_rows) == 2 and {row.label for row in label_rows} == {"violent_threat"}
    flagged = next(row for row in rows if row["message_hash"] == store.hash_message_id("msg-1"))
    assert flagged["labels"] == ["violent_threat"] and flagged["label_count"] == 1
    assert flagged["scores"] == SCORES and flagged["action"] == "block"
    assert flagged["source"] == "chat" and flagged["language"] == "en" and flagged["policy"] == "default"
    assert flagged["model_version"] == "3" and flagged["request_id"] == "req-1"
    assert flagged["created_at"].tzinfo is not None
    assert flagged["day"] == flagged["created_at"].date().isoformat()
    assert flagged["hash_key_id"] == store.key_id


def test_rows_hold_no_message_text_or_raw_identifiers(store: AuditStore, tmp_path: Path) -> None:
    secret_text = "the unmistakable sentence zebra quartz"
    store.record_sync([record(1, text=secret_text, message_id="msg-unique-xyz")])
    with store.engine.connect() as connection:
        row = connection.execute(select(decisions_table)).mappings().one()
    assert row["text"] is None
    values = " ".join(str(value) for value in row.values())
    for raw in (secret_text, "msg-unique-xyz", "meeting-alpha", "alice@example.org", KEY):
        assert raw not in values
    assert row["text_hash"] == store.hash_text(secret_text)
    store.close()
    # Nor anywhere in the database files (main file and write-ahead log).
    for path in (tmp_path / "audit").iterdir():
        content = path.read_bytes()
        assert secret_text.encode() not in content and b"msg-unique-xyz" not in content, path.name


def test_text_is_stored_only_when_configured(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}", hash_key=KEY, store_text=True)
    store.record_sync([record(1, text="keep this text")])
    with store.engine.connect() as connection:
        assert connection.execute(select(decisions_table.c.text)).scalar_one() == "keep this text"
    store.close()


def test_hashes_are_keyed_normalised_and_domain_separated(tmp_path: Path) -> None:
    first = AuditStore(f"sqlite:///{tmp_path / 'a.db'}", hash_key=SecretStr("key-one-" * 4))
    same = AuditStore(f"sqlite:///{tmp_path / 'b.db'}", hash_key="key-one-" * 4)
    other = AuditStore(f"sqlite:///{tmp_path / 'c.db'}", hash_key=b"key-two-" * 4)
    assert first.hash_message_id("m1") == same.hash_message_id("m1")
    assert first.hash_message_id("m1") != other.hash_message_id("m1")
    assert first.hash_text("hello world") != other.hash_text("hello world")
    assert first.key_id == same.key_id != other.key_id
    # Same message typed with extra spaces and a zero-width character: same digest.
    assert first.hash_text("hello   world\u200b ") == first.hash_text("hello world")
    # A message id equal to a meeting id must not link the two fields.
    assert first.hash_message_id("x") != first.hash_meeting_id("x")
    assert len(first.hash_text("a")) == 64
    for store in (first, same, other):
        store.close()


def test_key_and_password_never_show_in_repr(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'a.db'}", hash_key=SecretStr("super-secret-key"))
    assert "super-secret-key" not in repr(store)
    store.close()
    from textguard.audit import safe_url

    assert "hunter2" not in safe_url("postgresql+psycopg://user:hunter2@db.example/audit")


def test_without_a_key_a_random_process_key_is_used_and_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one = AuditStore(f"sqlite:///{tmp_path / 'a.db'}", hash_key=None)
    two = AuditStore(f"sqlite:///{tmp_path / 'b.db'}", hash_key="")
    assert one.hash_message_id("m") != two.hash_message_id("m")
    assert "TEXTGUARD_AUDIT_HASH_KEY is not set" in caplog.text
    one.close()
    two.close()


def test_from_settings_uses_the_service_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from textguard.service.settings import ServiceSettings

    monkeypatch.setenv("TEXTGUARD_AUDIT_URL", f"sqlite:///{tmp_path / 'settings.db'}")
    monkeypatch.setenv("TEXTGUARD_AUDIT_HASH_KEY", KEY)
    monkeypatch.setenv("TEXTGUARD_AUDIT_STORE_TEXT", "true")
    store = AuditStore.from_settings(ServiceSettings())
    assert store.store_text and (tmp_path / "settings.db").is_file()
    assert store.hash_message_id("m") == AuditStore(store.url, hash_key=KEY, create=False).hash_message_id(
        "m"
    )
    store.close()


def test_a_batch_is_one_transaction(store: AuditStore) -> None:
    # The decisions insert succeeds, then the child-table insert fails (NULL label): nothing may remain.
    broken = record(2, labels=[None])
    with pytest.raises(AuditUnavailableError, match="not recorded"):
        store.record_sync([record(1), broken])
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(decisions_table)).scalar_one() == 0
    with pytest.raises(ValueError, match="timezone-aware"):
        store.record_sync([record(3, created_at=datetime(2025, 1, 1, 12, 0))])


def test_a_failed_write_is_reported_not_swallowed(store: AuditStore) -> None:
    store.record_sync([record(1)])
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE audit_labels"))
        connection.execute(text("DROP TABLE audit_decisions"))
    with pytest.raises(AuditUnavailableError, match="not recorded"):
        store.record_sync([record(2)])


def test_duplicate_labels_are_stored_once_and_timestamps_kept_in_utc(store: AuditStore) -> None:
    from datetime import timedelta, timezone

    local = datetime(2025, 3, 1, 1, 30, tzinfo=timezone(timedelta(hours=5)))
    store.record_sync([record(1, labels=["violent_threat", "violent_threat"], created_at=local)])
    with store.engine.connect() as connection:
        row = connection.execute(select(decisions_table)).mappings().one()
        assert connection.execute(select(func.count()).select_from(labels_table)).scalar_one() == 1
    assert row["created_at"] == local.astimezone(UTC)
    assert row["day"] == "2025-02-28"  # the UTC day, not the local one


def test_tables_are_created_once_and_reopening_keeps_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditStore(url, hash_key=KEY).record_sync([record(1)])
    reopened = AuditStore(url, hash_key=KEY)
    reopened.record_sync([record(2)])
    with reopened.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(decisions_table)).scalar_one() == 2
    assert reopened.ping()
    reopened.close()


def test_an_unusable_url_is_a_config_error() -> None:
    from textguard.errors import ConfigError

    with pytest.raises(ConfigError, match="audit_url"):
        AuditStore("nosuchdialect://x/y", hash_key=KEY)
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL"):
        AuditStore("just some words", hash_key=KEY)


def test_two_stores_on_one_sqlite_file_write_concurrently(tmp_path: Path) -> None:
    import threading

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    stores = [AuditStore(url, hash_key=KEY), AuditStore(url, hash_key=KEY)]
    errors: list[BaseException] = []

    def write(store: AuditStore, offset: int) -> None:
        try:
            for start in range(offset, offset + 40, 4):
                store.record_sync([record(i) for i in range(start, start + 4)])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(stores[n % 2], n * 40)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with stores[0].engine.connect() as connection:
        hashes = set(connection.execute(select(decisions_table.c.message_hash)).scalars())
    assert hashes == {stores[0].hash_message_id(f"msg-{i}") for i in range(160)}
    for store in stores:
        store.close()


def test_stores_opened_at_once_on_one_sqlite_file_all_start(tmp_path: Path) -> None:
    # `textguard serve --workers N` opens the store in N processes at the same moment; SQLite has no
    # advisory lock, so a table can appear between one opener's check and its CREATE.
    import threading

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            AuditStore(url, hash_key="k").close()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
