"""Durable audit trail of every decision, without message text by default.

One row per decision in `audit_decisions`, one row per flagged label in `audit_labels` and one row per
known-content (hash list) match in `audit_matches` (so reports can GROUP BY label or list with the same
SQL on SQLite and PostgreSQL instead of dialect-specific JSON functions). Human review outcomes
(confirm / overturn / appeal / reinstate) go to `audit_reviews` and what the platform reports about a
flagged message's exposure (participants, shown, removed) to `audit_events`, both keyed by decision.

Schema changes are additive: new tables come from `CREATE TABLE IF NOT EXISTS`, and the columns added
since the first version (`tenant`, `key_id`, `policy_version`, see MIGRATED_COLUMNS) are added to an
existing `audit_decisions` with `ALTER TABLE ... ADD COLUMN` when a store opens for writing; older rows
belong to the tenant `default`.

Privacy: message ids, meeting ids, speaker ids and the normalised text are stored only as keyed
HMAC-SHA256 digests (a plain hash of a short chat message is reversible by guessing; a keyed hash is
not without the key). Each field is hashed under its own domain so equal values in different fields do
not link. The text itself is stored only when `store_text` is explicitly enabled.

Durability: `record()` writes a request's decisions in ONE transaction and returns only after the commit,
so the service can answer a client only once its decisions are on disk (write-before-answer).

SQLite runs in WAL mode with `synchronous=FULL`. WAL with `synchronous=NORMAL` already survives a
process crash (SIGKILL): a committed transaction is in the WAL file in the OS page cache before the
commit returns. It can lose the last commits on a power cut or kernel crash, though, because the WAL is
fsynced only at checkpoints. An audit trail used for transparency reporting should not lose decisions
that clients were told about even then, and FULL costs one fsync per transaction, which we amortise by
writing each request (or caption segment) as one transaction.

PostgreSQL (`postgresql+psycopg://...`) is the store for several replicas: inserts use client-generated
UUID keys (no shared counter to contend on) and table creation takes an advisory lock, so replicas can
start and write concurrently.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import threading
import uuid

try:  # POSIX only: orders schema creation on a shared SQLite file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
from pydantic import SecretStr
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from textguard.errors import ConfigError, TextguardError
from textguard.text import normalize

logger = logging.getLogger(__name__)

DECISIONS_TABLE = "audit_decisions"
LABELS_TABLE = "audit_labels"
MATCHES_TABLE = "audit_matches"
REVIEWS_TABLE = "audit_reviews"
EVENTS_TABLE = "audit_events"
#: The tenant of rows written before audit rows carried one, and of callers without API keys.
DEFAULT_TENANT = "default"
#: What a review of a decision can conclude (docs/transparency.md):
#: confirm/overturn: a human reviewer upheld or reversed the automated decision;
#: appeal: the author (or another participant) contested it; reinstate: removed content was restored.
REVIEW_OUTCOMES: tuple[str, ...] = ("confirm", "overturn", "appeal", "reinstate")
#: Advisory-lock key that serialises `CREATE TABLE` across replicas starting at the same time.
_SCHEMA_LOCK_KEY = 0x7467_6175_6469_74  # "tgaudit"
_KEY_ID_MESSAGE = b"textguard-audit-key-id"


class AuditUnavailableError(TextguardError):
    """The audit store could not record a decision: the service must not answer as if it had."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no timezone type: it stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("audit timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

decisions_table = Table(
    DECISIONS_TABLE,
    metadata,
    Column("decision_id", String(32), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # UTC calendar day as YYYY-MM-DD: daily figures GROUP BY the same column on every dialect.
    Column("day", String(10), nullable=False),
    Column("request_id", String(128)),
    Column("source", String(16), nullable=False),
    Column("language", String(35), nullable=False),
    Column("meeting_hash", String(64)),
    Column("message_hash", String(64)),
    Column("speaker_hash", String(64)),
    Column("text_hash", String(64), nullable=False),
    # Only filled when audit_store_text is enabled; NULL otherwise.
    Column("text", Text),
    Column("hash_key_id", String(16), nullable=False),
    Column("scores", JSON, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("label_count", Integer, nullable=False),
    Column("action", String(16), nullable=False),
    Column("policy", String(64), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("model_version", String(64), nullable=False),
    # Hashed ids of the caption segments whose text formed the scored window (captions only).
    Column("context_hashes", JSON),
    # Added by issue 13 (migrated onto older stores by `migrate`, see MIGRATED_COLUMNS): the tenant
    # of the API key that asked, the key's public id, and a fingerprint of the policy's thresholds.
    Column("tenant", String(64), nullable=False, server_default=DEFAULT_TENANT),
    Column("key_id", String(64)),
    Column("policy_version", String(16)),
    Index("ix_audit_decisions_created_at", "created_at"),
    Index("ix_audit_decisions_message_hash", "message_hash"),
    Index("ix_audit_decisions_meeting_hash", "meeting_hash"),
)

labels_table = Table(
    LABELS_TABLE,
    metadata,
    Column(
        "decision_id",
        String(32),
        ForeignKey(f"{DECISIONS_TABLE}.decision_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("label", String(64), primary_key=True),
    Index("ix_audit_labels_label", "label"),
)

matches_table = Table(
    MATCHES_TABLE,
    metadata,
    Column(
        "decision_id",
        String(32),
        ForeignKey(f"{DECISIONS_TABLE}.decision_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True),
    Column("list_id", String(128), nullable=False),
    Column("list_version", String(64), nullable=False),
    # "exact" or a fuzzy hash kind ("tlsh"); the listed entry's id, never any text.
    Column("kind", String(16), nullable=False),
    Column("hash_id", String(128), nullable=False),
    Column("distance", Float),
    Column("label", String(64)),
    Index("ix_audit_matches_list", "list_id"),
)

#: Indexes on migrated columns: `create_all` does not add indexes to a table that exists already.
tenant_index = Index(
    "ix_audit_decisions_tenant_created_at", decisions_table.c.tenant, decisions_table.c.created_at
)

reviews_table = Table(
    REVIEWS_TABLE,
    metadata,
    Column("review_id", String(32), primary_key=True),
    Column(
        "decision_id",
        String(32),
        ForeignKey(f"{DECISIONS_TABLE}.decision_id", ondelete="CASCADE"),
        nullable=False,
    ),
    # The decision's tenant (copied so reports filter without a join).
    Column("tenant", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    # The labels a reviewer found (confirm/overturn); NULL when the review did not say.
    Column("labels", JSON),
    # Public id of the API key that recorded the review (never a person's name).
    Column("reviewer", String(64)),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_audit_reviews_decision", "decision_id"),
    Index("ix_audit_reviews_tenant_created_at", "tenant", "created_at"),
)

events_table = Table(
    EVENTS_TABLE,
    metadata,
    Column("event_id", String(32), primary_key=True),
    Column(
        "decision_id",
        String(32),
        ForeignKey(f"{DECISIONS_TABLE}.decision_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("tenant", String(64), nullable=False),
    # Participants in the meeting when the message or caption was shown (as the platform counts them).
    Column("participants", Integer),
    # When the message or caption became visible, and when the platform removed it (NULL: not removed).
    Column("shown_at", UTCDateTime()),
    Column("removed_at", UTCDateTime()),
    Column("reporter", String(64)),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_audit_events_decision", "decision_id"),
)

#: Columns added to `audit_decisions` after stores existed: (name, DDL type and default) per column.
MIGRATED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tenant", f"VARCHAR(64) NOT NULL DEFAULT '{DEFAULT_TENANT}'"),
    ("key_id", "VARCHAR(64)"),
    ("policy_version", "VARCHAR(16)"),
)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One decision as the service made it. Identifiers and text are raw here and hashed by the store."""

    text: str
    scores: Mapping[str, float]
    labels: Sequence[str]
    action: str
    model_name: str
    model_version: str
    policy: str
    source: str = "chat"
    language: str | None = None
    message_id: str | None = None
    meeting_id: str | None = None
    speaker_id: str | None = None
    request_id: str | None = None
    #: Ids of the earlier messages scored together with this one (the speaker's context window).
    context_message_ids: Sequence[str] = ()
    #: Known-content matches: {list_id, list_version, kind, hash_id, distance, label} each.
    matches: Sequence[Mapping[str, Any]] = ()
    created_at: datetime = field(default_factory=utc_now)
    #: The tenant of the API key that asked (reports are scoped by it) and the key's public id.
    tenant: str = DEFAULT_TENANT
    key_id: str | None = None
    #: Fingerprint of the policy's thresholds and known-content actions (textguard.policy).
    policy_version: str | None = None


@dataclass(frozen=True, slots=True)
class DecisionInfo:
    """What reviews, events and `data import-reviews` need to know about one audited decision."""

    decision_id: str
    tenant: str
    created_at: datetime
    action: str
    labels: list[str]
    source: str
    language: str
    text_hash: str
    text: str | None


@dataclass(frozen=True, slots=True)
class ReviewInfo:
    review_id: str
    decision_id: str
    tenant: str
    outcome: str
    labels: list[str] | None
    reviewer: str | None
    created_at: datetime


@dataclass(slots=True)
class _PendingWrite:
    """One caller's rows waiting for a group commit; `done` is set under the write lock."""

    decisions: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    matches: list[dict[str, Any]]
    done: bool = False
    error: SQLAlchemyError | None = None


def safe_url(url: str | URL) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable audit URL>"


def _key_bytes(key: str | bytes | SecretStr | None) -> bytes | None:
    if isinstance(key, SecretStr):
        key = key.get_secret_value()
    if isinstance(key, str):
        key = key.encode("utf-8")
    return key or None


class AuditStore:
    """Append-only decision log over SQLAlchemy (sync engine, driven from worker threads)."""

    def __init__(
        self,
        url: str | URL,
        *,
        hash_key: str | bytes | SecretStr | None,
        store_text: bool = False,
        schema: str | None = None,
        create: bool = True,
    ) -> None:
        try:
            self.url = make_url(url) if isinstance(url, str) else url
        except ArgumentError:
            raise ConfigError(
                "audit_url is not a SQLAlchemy URL (e.g. sqlite:///textguard_audit.db or "
                "postgresql+psycopg://user@host/db)"
            ) from None
        self.store_text = store_text
        self.schema = schema
        self._key = _key_bytes(hash_key)
        self._key_id: str | None = None
        self.engine = self._make_engine()
        # SQLite has one writer at a time and makes the others poll with sleeps; queueing them on a
        # lock instead keeps commit latency flat under concurrent requests. PostgreSQL needs no lock.
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else contextlib.nullcontext()
        # Group commit needs the lock (one writer drains the queue); PostgreSQL takes concurrent writers.
        self._group_commit = self.dialect == "sqlite"
        self._pending: list[_PendingWrite] = []
        self._pending_lock = threading.Lock()
        if create:
            self.create_tables()

    @classmethod
    def from_settings(cls, settings: Any) -> AuditStore:
        """Build from `ServiceSettings` (audit_url, audit_hash_key, audit_store_text[, audit_schema])."""
        return cls(
            settings.audit_url,
            hash_key=settings.audit_hash_key,
            store_text=bool(settings.audit_store_text),
            schema=getattr(settings, "audit_schema", None),
        )

    def __repr__(self) -> str:
        # Never shows the key or a password.
        return f"AuditStore({safe_url(self.url)!r}, store_text={self.store_text})"

    # -- engine ------------------------------------------------------------------------------------

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _make_engine(self) -> Engine:
        options: dict[str, Any] = {"pool_pre_ping": True}
        is_sqlite = self.url.get_backend_name() == "sqlite"
        if is_sqlite:
            database = self.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # Connections are used from worker threads; a busy timeout lets two writers queue, not fail.
            options["connect_args"] = {"check_same_thread": False, "timeout": 30}
            options.pop("pool_pre_ping")
        try:
            engine = create_engine(self.url, **options)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise ConfigError(f"audit_url {safe_url(self.url)!r} is not usable: {exc}") from None
        if is_sqlite:
            event.listen(engine, "connect", _sqlite_on_connect)
        if self.schema:
            engine = engine.execution_options(schema_translate_map={None: self.schema})
        return engine

    def create_tables(self) -> None:
        """Create the tables and indexes if missing (safe when several replicas start together)."""
        with self._sqlite_schema_lock():
            self._create_tables()

    @contextlib.contextmanager
    def _sqlite_schema_lock(self) -> Iterator[None]:
        """Serialise schema creation across processes sharing one SQLite file (`serve --workers N`).

        SQLite has no advisory lock and `create_all` checks then creates each table, so openers
        starting together race; an exclusive lock on a file beside the database orders them.
        PostgreSQL takes an advisory lock inside the transaction instead.
        """
        database = self.url.database if self.dialect == "sqlite" else None
        if not database or database == ":memory:" or database.startswith("file:") or fcntl is None:
            yield
            return
        with open(f"{database}.schema-lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _create_tables(self) -> None:
        for attempt in range(5):
            try:
                with self.engine.begin() as connection:
                    if self.dialect == "postgresql":
                        connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY}
                        )
                    metadata.create_all(connection)
                    self._migrate(connection)
                return
            except SQLAlchemyError as exc:
                # SQLite has no advisory lock: a worker process starting beside this one can create a
                # table between create_all's check and its CREATE. Checking again then finds it.
                if "already exists" in str(exc) and attempt < 4:
                    continue
                raise ConfigError(
                    f"cannot prepare the audit store at {safe_url(self.url)}: {_first_line(exc)}"
                ) from None

    def _migrate(self, connection: Any) -> None:
        """Add the columns and indexes later versions need to an existing `audit_decisions`.

        Only additive steps (ADD COLUMN with a default, CREATE INDEX IF NOT EXISTS), so a store written by
        an older textguard keeps every row: its decisions belong to the tenant `default`. Runs inside the
        schema lock (file lock on SQLite, advisory lock on PostgreSQL), so replicas do not race.
        """
        present = {
            column["name"] for column in inspect(connection).get_columns(DECISIONS_TABLE, schema=self.schema)
        }
        preparer = connection.dialect.identifier_preparer
        table = preparer.quote(DECISIONS_TABLE)
        if self.schema:
            table = f"{preparer.quote_schema(self.schema)}.{table}"
        for name, ddl in MIGRATED_COLUMNS:
            if name not in present:
                logger.info("audit store: adding column %s.%s", DECISIONS_TABLE, name)
                connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {preparer.quote(name)} {ddl}"))
        tenant_index.create(connection, checkfirst=True)

    def missing_schema(self) -> list[str]:
        """Tables or columns this version reads that the store lacks (an older store opened read-only)."""
        try:
            with self.engine.connect() as connection:
                inspector = inspect(connection)
                tables = set(inspector.get_table_names(schema=self.schema))
                missing = [name for name in (REVIEWS_TABLE, EVENTS_TABLE) if name not in tables]
                if DECISIONS_TABLE in tables:
                    present = {c["name"] for c in inspector.get_columns(DECISIONS_TABLE, schema=self.schema)}
                    missing += [
                        f"{DECISIONS_TABLE}.{name}" for name, _ in MIGRATED_COLUMNS if name not in present
                    ]
        except SQLAlchemyError as exc:
            raise ConfigError(
                f"cannot read the audit store at {safe_url(self.url)}: {_first_line(exc)}"
            ) from None
        return missing

    def journal_mode(self) -> str | None:
        """SQLite journal mode (expected: wal); None on other backends."""
        if self.dialect != "sqlite":
            return None
        with self.engine.connect() as connection:
            return str(connection.exec_driver_sql("PRAGMA journal_mode").scalar())

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def health(self, timeout_s: float = 1.0) -> str | None:
        """None when a write could start now, else why not: the cheap probe behind /readyz (writes nothing).

        SQLite: take this process's write lock, then the database's (BEGIN IMMEDIATE; ROLLBACK), waiting
        at most `timeout_s` for each, so a database locked by another process shows here instead of as
        requests failing after the 30 s busy timeout. PostgreSQL: a round trip, refused when read-only.
        """
        try:
            if self.dialect != "sqlite":
                with self.engine.connect() as connection:
                    if connection.exec_driver_sql("SHOW transaction_read_only").scalar() == "on":
                        return "the audit database is read-only"
                return None
            lock = self._write_lock
            assert isinstance(lock, type(threading.Lock()))
            if not lock.acquire(timeout=timeout_s):
                return f"the audit store is busy: a write has held it for over {timeout_s:g} s"
            try:
                with self.engine.connect() as connection:
                    previous = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
                    connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
                    try:
                        connection.exec_driver_sql("BEGIN IMMEDIATE")
                        connection.exec_driver_sql("ROLLBACK")
                    finally:
                        connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(previous or 0)}")
            finally:
                lock.release()
        except SQLAlchemyError as exc:
            return f"the audit store is unavailable: {_first_line(exc)}"
        return None

    def close(self) -> None:
        self.engine.dispose()

    # -- hashing -----------------------------------------------------------------------------------

    def _hash_key(self) -> bytes:
        if self._key is None:
            # Without a configured key digests cannot be linked across restarts or replicas, which
            # is still private but makes "is this message in the log" checks impossible later.
            logger.warning(
                "TEXTGUARD_AUDIT_HASH_KEY is not set: audit hashes use a random per-process key "
                "and cannot be matched across restarts or replicas"
            )
            self._key = secrets.token_bytes(32)
        return self._key

    @property
    def key_id(self) -> str:
        """Short public fingerprint of the hash key, stored per row so key rotations are visible."""
        if self._key_id is None:
            self._key_id = hmac.new(self._hash_key(), _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16]
        return self._key_id

    def hash_value(self, domain: str, value: str) -> str:
        """Keyed HMAC-SHA256 of `value` under `domain` (message_id, meeting_id, speaker_id, text)."""
        message = domain.encode("utf-8") + b"\x00" + value.encode("utf-8")
        return hmac.new(self._hash_key(), message, hashlib.sha256).hexdigest()

    def hash_message_id(self, message_id: str) -> str:
        return self.hash_value("message_id", message_id)

    def hash_meeting_id(self, meeting_id: str) -> str:
        return self.hash_value("meeting_id", meeting_id)

    def hash_text(self, value: str) -> str:
        # Normalised first so the same message typed with different spacing or invisible
        # characters gets the same digest.
        return self.hash_value("text", normalize(value))

    # -- writing -----------------------------------------------------------------------------------

    def _rows(
        self, records: Sequence[AuditRecord]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        decisions: list[dict[str, Any]] = []
        labels: list[dict[str, Any]] = []
        matches: list[dict[str, Any]] = []
        for record in records:
            decision_id = uuid.uuid4().hex
            created_at = record.created_at
            if created_at.tzinfo is None:
                raise ValueError("AuditRecord.created_at must be timezone-aware (UTC)")
            created_at = created_at.astimezone(UTC)
            record_labels = list(dict.fromkeys(record.labels))
            decisions.append(
                {
                    "decision_id": decision_id,
                    "created_at": created_at,
                    "day": created_at.date().isoformat(),
                    "request_id": record.request_id,
                    "source": record.source,
                    "language": record.language or "und",
                    "meeting_hash": self._maybe_hash("meeting_id", record.meeting_id),
                    "message_hash": self._maybe_hash("message_id", record.message_id),
                    "speaker_hash": self._maybe_hash("speaker_id", record.speaker_id),
                    "text_hash": self.hash_text(record.text),
                    "text": record.text if self.store_text else None,
                    "hash_key_id": self.key_id,
                    "scores": {label: float(score) for label, score in record.scores.items()},
                    "labels": record_labels,
                    "label_count": len(record_labels),
                    "action": record.action,
                    "policy": record.policy,
                    "model_name": record.model_name,
                    "model_version": record.model_version,
                    "context_hashes": [self.hash_message_id(item) for item in record.context_message_ids]
                    or None,
                    "tenant": record.tenant,
                    "key_id": record.key_id,
                    "policy_version": record.policy_version,
                }
            )
            labels.extend({"decision_id": decision_id, "label": label} for label in record_labels)
            matches.extend(
                {
                    "decision_id": decision_id,
                    "position": position,
                    "list_id": str(match["list_id"]),
                    "list_version": str(match["list_version"]),
                    "kind": str(match["kind"]),
                    "hash_id": str(match["hash_id"]),
                    "distance": None if match.get("distance") is None else float(match["distance"]),
                    "label": match.get("label"),
                }
                for position, match in enumerate(record.matches)
            )
        return decisions, labels, matches

    def _maybe_hash(self, domain: str, value: str | None) -> str | None:
        return None if value is None else self.hash_value(domain, value)

    def record_sync(self, records: Sequence[AuditRecord]) -> list[str]:
        """Insert `records` in one transaction; returns their decision ids once committed.

        On SQLite, concurrent callers are group-committed: whoever holds the write lock writes every
        batch queued so far in one transaction, and the callers whose batch it carried return as soon
        as they get the lock and see it committed. Each caller still returns only after its own rows are
        committed (or raises if that transaction failed); a request's rows are never split. At c=32 this
        turns ~32 transactions (and fsyncs) into a few.
        """
        if not records:
            return []
        decisions, labels, matches = self._rows(records)  # a bad record fails its own request only
        if not self._group_commit:
            try:
                with self._write_lock:
                    self._insert(decisions, labels, matches)
            except SQLAlchemyError as exc:
                raise self._unavailable(len(records), exc) from exc
            return [row["decision_id"] for row in decisions]
        batch = _PendingWrite(decisions, labels, matches)
        with self._pending_lock:
            self._pending.append(batch)
        with self._write_lock:
            if not batch.done:
                with self._pending_lock:
                    group, self._pending = self._pending, []
                try:
                    self._insert(
                        [row for item in group for row in item.decisions],
                        [row for item in group for row in item.labels],
                        [row for item in group for row in item.matches],
                    )
                except SQLAlchemyError as exc:
                    for item in group:
                        item.error = exc
                for item in group:
                    item.done = True
        if batch.error is not None:
            raise self._unavailable(len(records), batch.error) from batch.error
        return [row["decision_id"] for row in decisions]

    def _insert(
        self, decisions: list[dict[str, Any]], labels: list[dict[str, Any]], matches: list[dict[str, Any]]
    ) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(decisions_table), decisions)
            if labels:
                connection.execute(insert(labels_table), labels)
            if matches:
                connection.execute(insert(matches_table), matches)

    @staticmethod
    def _unavailable(count: int, exc: SQLAlchemyError) -> AuditUnavailableError:
        logger.error("audit write failed (%d decisions): %s", count, _first_line(exc))
        return AuditUnavailableError(
            "the audit store is unavailable; the decision was not recorded, retry later"
        )

    # -- reviews and exposure events ---------------------------------------------------------------

    def decision(self, decision_id: str) -> DecisionInfo | None:
        """The audited decision with this id, or None."""
        d = decisions_table
        try:
            with self.engine.connect() as connection:
                row = connection.execute(
                    select(
                        d.c.decision_id,
                        d.c.tenant,
                        d.c.created_at,
                        d.c.action,
                        d.c.labels,
                        d.c.source,
                        d.c.language,
                        d.c.text_hash,
                        d.c.text,
                    ).where(d.c.decision_id == decision_id)
                ).first()
        except SQLAlchemyError as exc:
            raise self._unavailable(0, exc) from exc
        if row is None:
            return None
        return DecisionInfo(
            decision_id=row.decision_id,
            tenant=row.tenant,
            created_at=row.created_at,
            action=row.action,
            labels=list(row.labels or []),
            source=row.source,
            language=row.language,
            text_hash=row.text_hash,
            text=row.text,
        )

    def record_review(
        self,
        decision: DecisionInfo,
        outcome: str,
        *,
        labels: Sequence[str] | None = None,
        reviewer: str | None = None,
        created_at: datetime | None = None,
    ) -> str:
        """Record a review outcome (confirm / overturn / appeal / reinstate) of `decision`; its id."""
        if outcome not in REVIEW_OUTCOMES:
            raise ValueError(f"unknown review outcome {outcome!r} (one of {', '.join(REVIEW_OUTCOMES)})")
        review_id = uuid.uuid4().hex
        row = {
            "review_id": review_id,
            "decision_id": decision.decision_id,
            "tenant": decision.tenant,
            "outcome": outcome,
            "labels": None if labels is None else list(dict.fromkeys(labels)),
            "reviewer": reviewer,
            "created_at": _aware(created_at or utc_now(), "created_at"),
        }
        self._write_one(reviews_table, row)
        return review_id

    def record_event(
        self,
        decision: DecisionInfo,
        *,
        participants: int | None = None,
        shown_at: datetime | None = None,
        removed_at: datetime | None = None,
        reporter: str | None = None,
        created_at: datetime | None = None,
    ) -> str:
        """Record what the platform reports about a decision's message: audience, display and removal."""
        if participants is not None and participants < 0:
            raise ValueError("participants must be 0 or more")
        shown = None if shown_at is None else _aware(shown_at, "shown_at")
        removed = None if removed_at is None else _aware(removed_at, "removed_at")
        if shown is not None and removed is not None and removed < shown:
            raise ValueError("removed_at is before shown_at")
        event_id = uuid.uuid4().hex
        row = {
            "event_id": event_id,
            "decision_id": decision.decision_id,
            "tenant": decision.tenant,
            "participants": participants,
            "shown_at": shown,
            "removed_at": removed,
            "reporter": reporter,
            "created_at": _aware(created_at or utc_now(), "created_at"),
        }
        self._write_one(events_table, row)
        return event_id

    def reviews(self, *, outcome: str | None = None, tenant: str | None = None) -> list[ReviewInfo]:
        """Every recorded review (optionally of one outcome, of one tenant), oldest first."""
        r = reviews_table
        query = select(r).order_by(r.c.created_at, r.c.review_id)
        if outcome is not None:
            query = query.where(r.c.outcome == outcome)
        if tenant is not None:
            query = query.where(r.c.tenant == tenant)
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(query).all()
        except SQLAlchemyError as exc:
            raise self._unavailable(0, exc) from exc
        return [
            ReviewInfo(
                review_id=row.review_id,
                decision_id=row.decision_id,
                tenant=row.tenant,
                outcome=row.outcome,
                labels=None if row.labels is None else list(row.labels),
                reviewer=row.reviewer,
                created_at=row.created_at,
            )
            for row in rows
        ]

    def _write_one(self, table: Table, row: dict[str, Any]) -> None:
        try:
            with self._write_lock, self.engine.begin() as connection:
                connection.execute(insert(table), [row])
        except SQLAlchemyError as exc:
            raise self._unavailable(1, exc) from exc

    async def record(self, records: Sequence[AuditRecord]) -> list[str]:
        """Async wrapper: the commit runs in a worker thread, the caller resumes after it.

        A cancelled caller still waits for the thread (anyio does not abandon it), so a decision is
        never half-written and never answered before it is durable.
        """
        return await anyio.to_thread.run_sync(self.record_sync, list(records))


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC)")
    return value.astimezone(UTC)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
