"""Rate limits in messages per minute, per API key and per tenant, with the `limits` library.

A request costs the number of messages it asks to score (at least 1), so one 32-message request
spends what 32 single-message requests do. Without API keys the caller is its client address, which is
the TCP peer unless that peer is a configured trusted proxy (settings.trusted_proxies; then
X-Forwarded-For is believed, see app.py): rotating X-Forwarded-For from anywhere else changes nothing.

Storage: in memory (per process) by default; with `rate_limit_redis_url` every replica counts in the
same Redis, so N replicas allow the configured rate once, not N times. If Redis stops answering, each
process falls back to its own in-memory counts (logged) rather than failing requests or dropping the
limit; it goes back to Redis on the next call that succeeds.

Strategy: moving window: a request is admitted when the messages of the last 60 seconds plus its own
fit the limit, exactly (no burst at window edges), and Retry-After is when the oldest counted messages
leave the window. It keeps one timestamp per message counted (at most the limit per key) and costs one
Redis round trip (a Lua script) per check.

`spend(connection, principal, cost)` is the one entry point: routes call it with their message count,
and the caption WebSocket (part 2 of issue 12) calls it once per segment.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from starlette.requests import HTTPConnection

from textguard.service.errors import RateLimited
from textguard.service.keys import KeyRegistry

if TYPE_CHECKING:
    from textguard.service.security import Principal
    from textguard.service.settings import ServiceSettings

logger = logging.getLogger("textguard.service.ratelimit")

REDIS_KEY_PREFIX = "textguard-ratelimit"
#: Redis must answer within this, or the check falls back to memory: a limiter must not add latency.
REDIS_TIMEOUT_S = 0.25
#: Log "Redis unavailable" at most this often.
_WARN_EVERY_S = 30.0


class RateLimits:
    def __init__(
        self,
        per_key: int,
        per_tenant: int,
        registry: KeyRegistry,
        redis_url: str | None = None,
    ) -> None:
        self.per_key = per_key
        self.per_tenant = per_tenant
        self.registry = registry
        self.redis_url = redis_url
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        if redis_url:
            storage: Storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix=REDIS_KEY_PREFIX,
                wrap_exceptions=True,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
            self._shared = MovingWindowRateLimiter(storage)
        self._warned_at = -math.inf

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> RateLimits:
        return cls(
            settings.rate_limit_per_minute,
            settings.tenant_rate_limit_per_minute,
            settings.api_keys,
            settings.rate_limit_redis_url,
        )

    def limits_for(self, principal: Principal) -> list[tuple[RateLimitItem, tuple[str, ...], str]]:
        """(limit, bucket identifiers, what it is for messages) that apply to this caller."""
        applied: list[tuple[RateLimitItem, tuple[str, ...], str]] = []
        per_key = (
            principal.rate_limit_per_minute if principal.rate_limit_per_minute is not None else self.per_key
        )
        if per_key > 0:
            who = "API key" if principal.authenticated else "client address"
            applied.append((RateLimitItemPerMinute(per_key), ("caller", principal.client_id), who))
        if principal.authenticated:
            tenant_limit = self.registry.tenant(principal.tenant).rate_limit_per_minute
            per_tenant = tenant_limit if tenant_limit is not None else self.per_tenant
            if per_tenant > 0:
                applied.append((RateLimitItemPerMinute(per_tenant), ("tenant", principal.tenant), "tenant"))
        return applied

    async def spend(self, principal: Principal, cost: int) -> None:
        """Take `cost` messages from every limit of this caller; RateLimited (429) when one is spent.

        The key's limit is taken before the tenant's: a request the tenant's limit refuses has still
        spent its key's share (the `limits` storages have no multi-key transaction), which only makes
        a refused caller wait a little longer.
        """
        cost = max(1, cost)
        for item, identifiers, who in self.limits_for(principal):
            if cost > item.amount:
                raise RateLimited(
                    f"this request is {cost} messages, more than the {who} limit of {item.amount} per "
                    "minute: send fewer messages per request"
                )
            limiter = self._shared or self._local
            try:
                allowed = await limiter.hit(item, *identifiers, cost=cost)
            except StorageError as exc:
                self._redis_failed(exc)
                limiter = self._local
                allowed = await limiter.hit(item, *identifiers, cost=cost)
            if not allowed:
                raise RateLimited(
                    f"rate limit of {item.amount} messages per minute per {who} exceeded; retry later",
                    retry_after=await self._retry_after(limiter, item, identifiers),
                )

    async def _retry_after(
        self, limiter: MovingWindowRateLimiter, item: RateLimitItem, identifiers: tuple[str, ...]
    ) -> float:
        try:
            stats = await limiter.get_window_stats(item, *identifiers)
        except StorageError:
            return float(item.get_expiry())
        return min(float(item.get_expiry()), max(1.0, stats.reset_time - time.time()))

    def _redis_failed(self, exc: StorageError) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            logger.warning(
                "rate-limit store unavailable; counting in this process until it answers",
                extra={"fields": {"error": type(exc.storage_error).__name__}},
            )

    async def check_shared(self) -> bool:
        """True when the Redis store answers (or none is configured)."""
        if self._shared is None:
            return True
        try:
            return bool(await self._shared.storage.check())
        except StorageError:
            return False


async def spend(connection: HTTPConnection, principal: Principal, cost: int) -> None:
    """Spend `cost` messages of `principal`'s rate limits (HTTP routes and the caption WebSocket)."""
    limits: RateLimits = connection.app.state.rate_limits
    await limits.spend(principal, cost)
