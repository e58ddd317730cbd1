"""Login throttling per login name, per account and per client IP.

Every attempt is counted *before* its password is hashed, in one step that checks the limit
and takes a place: the counter is incremented and the new count read in one storage call,
and an attempt whose count passes the limit gives its place straight back and is refused (so
parallel requests cannot all pass the check before any of them is counted). An attempt that
turns out right gives its places back and clears the failures of its login name and account;
an attempt refused before any password was tested (the hasher was busy, the database failed)
gives its places back too. Whatever remains are failed attempts, counted in fixed windows of
:attr:`LoginThrottle.window` aligned on the clock: once a key holds its limit, further
attempts are refused with 429 until its window ends.

The counters are the rate limiter's (:class:`opsflow.auth.ratelimit.Counters`): in Redis when
one is configured, shared by every API process, in process memory otherwise.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from opsflow.auth.ratelimit import Counters, window_of
from opsflow.errors import RateLimited


@dataclass
class Attempt:
    """The places one login attempt holds (counter keys, each in its window)."""

    stamp: datetime
    keys: list[str] = field(default_factory=list)


@dataclass
class LoginThrottle:
    counters: Counters
    max_per_username: int = 10
    max_per_ip: int = 50
    window: timedelta = timedelta(minutes=15)

    def _key(self, name: str, now: datetime) -> tuple[str, datetime]:
        index, end = window_of(now, int(self.window.total_seconds()))
        return f"login:{name}:{index}", end

    async def begin(self, login_name: str | None, ip: str | None, now: datetime) -> Attempt:
        """Count an attempt for this login name and address, or raise 429 (taking nothing)
        when either already holds its limit."""
        keys: list[tuple[str, int]] = []
        if login_name is not None:
            keys.append((_name_key(login_name), self.max_per_username))
        if ip:
            keys.append((f"ip:{ip}", self.max_per_ip))
        attempt = Attempt(stamp=now)
        try:
            await self._take(attempt, keys, now)
        except RateLimited:
            await self.release(attempt)
            raise
        return attempt

    async def add_account(self, attempt: Attempt, account_id: uuid.UUID, now: datetime) -> None:
        """Count the attempt against the account too (whatever name it was reached by), or
        raise 429; on refusal the attempt keeps its other places (call :meth:`release`)."""
        await self._take(attempt, [(_account_key(account_id), self.max_per_username)], now)

    async def _take(self, attempt: Attempt, keys: list[tuple[str, int]], now: datetime) -> None:
        expiry = int(self.window.total_seconds())
        for name, limit in keys:
            key, end = self._key(name, now)
            count = await self.counters.incr(key, expiry)
            if count > limit:
                await self.counters.incr(key, expiry, amount=-1)
                retry = max(int((end - now).total_seconds() + 0.999), 1)
                raise RateLimited(
                    "Too many failed login attempts; try again later",
                    headers={"Retry-After": str(retry)},
                    retry_after_seconds=retry,
                )
            attempt.keys.append(key)

    async def release(self, attempt: Attempt) -> None:
        """Give back the attempt's places: it tested no password."""
        expiry = int(self.window.total_seconds())
        for key in attempt.keys:
            await self.counters.incr(key, expiry, amount=-1)
        attempt.keys.clear()

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the name's and account's failures are forgotten; the
        address keeps its earlier failures, minus this attempt."""
        for key in list(attempt.keys):
            if not key.startswith("login:ip:"):
                await self.counters.clear(key)
                attempt.keys.remove(key)
        await self.release(attempt)


def _name_key(login_name: str) -> str:
    return f"user:{login_name.strip().lower()}"


def _account_key(account_id: uuid.UUID) -> str:
    return f"account:{account_id}"
