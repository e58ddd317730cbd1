"""Request rate limits, and the counters they and the login throttle keep.

Counters are the `limits` library's storage: Redis when the installation is configured with
one (the same setting `/health` checks), so every API process shares them, and this
process's memory otherwise. Each counter belongs to a fixed window aligned on the context's
clock (the window's number is part of its key), so a request costs one storage call — one
Redis round trip, none in memory — that both counts it and tells how many were counted: the
remaining quota and the window's end follow without asking again.

When Redis fails, the counters fall back to this process's memory for
:data:`FALLBACK_SECONDS` before Redis is tried again: requests keep being served (the limits
fail open to per-process limits, never closed), and a warning is logged once per fallback.

Rules (per minute): reads (GET/HEAD/OPTIONS) and writes per principal (a user or an API
client), and the login endpoints per client address. Ingestion endpoints (batch tickets,
alert integrations, heartbeat signals) are exempt: monitoring systems drop a notification
answered 429, so they never get one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.errors import StorageError

from opsflow.clock import Clock
from opsflow.errors import RateLimited

if TYPE_CHECKING:
    from collections.abc import Callable, MutableMapping

    from opsflow.auth.principal import Principal

FALLBACK_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 0.5
KEY_PREFIX = "opsflow-limits"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

F = TypeVar("F", bound="Callable[..., Any]")


def exempt(endpoint: F) -> F:
    """Mark an ingestion endpoint: never counted, never answered 429."""
    endpoint.rate_limit_exempt = True  # type: ignore[attr-defined]
    return endpoint


def storage_uri(redis_url: str) -> str:
    """The `limits` storage URI of a Redis URL (`redis://`, `rediss://`, `unix://`)."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


class SweptMemoryStorage(MemoryStorage):
    """`limits`' in-memory storage, its sweep of expired counters started at most once per
    :attr:`SWEEP_SECONDS`. The library starts one after every increment that finds none
    running, and each walks every counter: per request that would cost time in proportion to
    the number of counters (about 0.2 ms with 10,000). Expiry only frees memory here: the
    window's number in each key decides what counts."""

    SWEEP_SECONDS = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._swept_at = -math.inf

    async def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 - the library's name
        now = time.monotonic()  # pacing a memory sweep, not a deadline
        if now - self._swept_at < self.SWEEP_SECONDS:
            return
        self._swept_at = now
        await super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]


class Counters:
    """Counters that expire: in Redis when one is configured, else in memory; in memory too
    for a while after Redis failed."""

    def __init__(self, redis_url: str | None, clock: Clock) -> None:
        self.clock = clock
        self.memory = SweptMemoryStorage()
        self.shared: Storage | None = None
        if redis_url is not None:
            self.shared = RedisStorage(
                storage_uri(redis_url),
                wrap_exceptions=True,
                implementation="redispy",
                key_prefix=KEY_PREFIX,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
        self._redis_down_until: datetime | None = None
        self.log = structlog.get_logger("opsflow.ratelimit")

    @property
    def kind(self) -> str:
        return "redis" if self.shared is not None else "memory"

    def _storage(self) -> Storage:
        if self.shared is None:
            return self.memory
        if self._redis_down_until is not None and self.clock.now() < self._redis_down_until:
            return self.memory
        return self.shared

    def _failed(self, exc: Exception) -> None:
        self._redis_down_until = self.clock.now() + timedelta(seconds=FALLBACK_SECONDS)
        self.log.warning(
            "rate_limit_storage_unavailable",
            error=type(exc).__name__,
            fallback="memory",
            retry_in_seconds=FALLBACK_SECONDS,
        )

    async def incr(self, key: str, expiry_seconds: int, amount: int = 1) -> int:
        """Add `amount` (negative to give back) and return the new count."""
        storage = self._storage()
        if storage is not self.memory:
            try:
                return await storage.incr(key, expiry_seconds, amount=amount)
            except (StorageError, OSError) as exc:
                self._failed(exc)
        return await self.memory.incr(key, expiry_seconds, amount=amount)

    async def clear(self, key: str) -> None:
        storage = self._storage()
        if storage is not self.memory:
            try:
                await storage.clear(key)
                return
            except (StorageError, OSError) as exc:
                self._failed(exc)
        await self.memory.clear(key)


@dataclass(frozen=True)
class Quota:
    """One counted request: the limit, what is left of it, when its window ends."""

    limit: int
    remaining: int
    reset: datetime
    allowed: bool

    def headers(self) -> dict[str, str]:
        # X-RateLimit-Reset: the window's end in Unix seconds.
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(int(self.reset.timestamp())),
        }

    def retry_after(self, now: datetime) -> int:
        return max(math.ceil((self.reset - now).total_seconds()), 1)


def window_of(now: datetime, seconds: int) -> tuple[int, datetime]:
    """The number of the fixed window `now` falls in, and its end (windows are aligned on
    the Unix epoch, so every process agrees on them)."""
    index = math.floor(now.timestamp() / seconds)
    return index, datetime.fromtimestamp((index + 1) * seconds, tz=now.tzinfo)


class RateLimiter:
    def __init__(
        self,
        counters: Counters,
        clock: Clock,
        *,
        enabled: bool,
        reads_per_minute: int,
        writes_per_minute: int,
        login_per_minute: int,
    ) -> None:
        self.counters = counters
        self.clock = clock
        self.enabled = enabled
        self.reads = RateLimitItemPerMinute(reads_per_minute, namespace="read")
        self.writes = RateLimitItemPerMinute(writes_per_minute, namespace="write")
        self.login = RateLimitItemPerMinute(login_per_minute, namespace="login")

    async def hit(self, item: RateLimitItem, identity: str) -> Quota:
        now = self.clock.now()
        seconds = item.get_expiry()
        index, reset = window_of(now, seconds)
        count = await self.counters.incr(item.key_for(identity, str(index)), seconds)
        return Quota(
            limit=item.amount,
            remaining=max(item.amount - count, 0),
            reset=reset,
            allowed=count <= item.amount,
        )

    async def enforce(
        self, scope: MutableMapping[str, Any], item: RateLimitItem, identity: str
    ) -> None:
        """Count the request; its quota goes on the answer (the access middleware writes the
        headers); over the limit, 429 with Retry-After."""
        if not self.enabled:
            return
        endpoint = scope.get("endpoint")
        if getattr(endpoint, "rate_limit_exempt", False):
            return
        quota = await self.hit(item, identity)
        scope.setdefault("state", {})["rate_limit"] = quota
        if not quota.allowed:
            retry = quota.retry_after(self.clock.now())
            raise RateLimited(
                "Too many requests; slow down",
                headers={"Retry-After": str(retry), **quota.headers()},
                retry_after_seconds=retry,
            )

    async def for_principal(self, scope: MutableMapping[str, Any], principal: Principal) -> None:
        item = self.reads if scope.get("method") in READ_METHODS else self.writes
        await self.enforce(scope, item, f"{principal.actor_type.value}:{principal.id}")

    async def for_login(self, scope: MutableMapping[str, Any], ip: str | None) -> None:
        await self.enforce(scope, self.login, f"ip:{ip or 'unknown'}")
