"""Meeting context in Redis, for several replicas serving one meeting (a load balancer does not keep a
meeting's chat on one process, and a caption stream that reconnects may land elsewhere).

One Redis list per (meeting, speaker, kind) holds the speaker's recent messages as JSON, oldest first.
Each change is one optimistic transaction (WATCH / MULTI / EXEC, retried on a concurrent write), and
the window rules are the same pure functions as the in-memory store's (`textguard.moderation.context`),
so both stores form the same windows.

Bounds: the list holds at most `messages` entries of at most `max_chars` characters, and every key
expires `meeting_ttl_seconds` after its last write (Redis evicts idle meetings; there is no meeting
count limit to enforce across replicas). Keys name meetings and speakers by a SHA-256 digest, never by
the raw ids. The message text itself has to be stored for the window to be scored: it lives in Redis
for at most the TTL; put Redis where the audit store's text would be allowed to live.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from textguard.errors import ConfigError
from textguard.moderation.context import (
    ContextEntry,
    ContextLimits,
    ContextUnavailableError,
    Source,
    forget_entries,
    select_window,
    store_entry,
)

KEY_PREFIX = "textguard:context"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


class RedisContextStore:
    waits_on_io = True  # every operation is a network round trip

    def __init__(self, url: str, limits: ContextLimits, *, client: Any = None) -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover - redis is a dependency; this guards broken installs
            raise ConfigError("context_backend redis needs the `redis` package: pip install redis") from None
        self.limits = limits
        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        try:
            self.client = client or redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        except ValueError as exc:
            raise ConfigError(f"context_redis_url is not a Redis URL: {exc}") from None

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except self._redis_errors:
            return False

    def key(self, meeting_id: str, speaker_id: str, source: Source) -> str:
        return f"{KEY_PREFIX}:{_digest(meeting_id)}:{source}:{_digest(speaker_id)}"

    def window(
        self, meeting_id: str, speaker_id: str, source: Source, entry: ContextEntry, *, keep: bool
    ) -> list[ContextEntry]:
        key = self.key(meeting_id, speaker_id, source)
        limits = self.limits.window(source)
        if not keep:
            return select_window(self._read(self.client, key), entry, limits)
        context: list[ContextEntry] = []

        def update(pipe: Any) -> None:
            nonlocal context
            stored = self._read(pipe, key)
            context = select_window(stored, entry, limits)
            self._write(pipe, key, store_entry(stored, entry, limits, self.limits.max_chars))

        self._transaction(update, key)
        return context

    def forget(self, meeting_id: str, speaker_id: str, source: Source, upto: ContextEntry) -> None:
        key = self.key(meeting_id, speaker_id, source)
        self._transaction(
            lambda pipe: self._write(pipe, key, forget_entries(self._read(pipe, key), upto)), key
        )

    def close(self) -> None:
        self.client.close()

    # -- internals -----------------------------------------------------------------------------------

    def _transaction(self, update: Callable[[Any], None], key: str) -> None:
        try:
            self.client.transaction(update, key)
        except self._redis_errors as exc:
            raise ContextUnavailableError(f"the context store (Redis) is unavailable: {exc}") from None

    def _read(self, connection: Any, key: str) -> list[ContextEntry]:
        try:
            raw = connection.lrange(key, 0, -1)
        except self._redis_errors as exc:
            raise ContextUnavailableError(f"the context store (Redis) is unavailable: {exc}") from None
        entries = []
        for item in raw:
            data = json.loads(item)
            entries.append(ContextEntry(data["id"], data["text"], float(data["start"]), float(data["end"])))
        return entries

    def _write(self, pipe: Any, key: str, entries: list[ContextEntry]) -> None:
        pipe.multi()
        pipe.delete(key)
        if entries:
            pipe.rpush(
                key,
                *(
                    json.dumps({"id": e.message_id, "text": e.text, "start": e.start, "end": e.end})
                    for e in entries
                ),
            )
            pipe.pexpire(key, int(self.limits.meeting_ttl_seconds * 1000))
