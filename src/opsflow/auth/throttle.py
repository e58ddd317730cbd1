"""Login throttling per login name, per account and per client IP.

Every attempt is counted *before* its password is hashed, in one step that checks the limit
and takes a place (nothing awaits in between, so parallel requests cannot all pass the check
before any of them is counted). An attempt that turns out right gives its places back and
clears the failures of its login name and account; an attempt refused before any password
was tested (the hasher was busy, the database failed) gives its places back too. Whatever
remains are failed attempts, kept in a sliding window: once a key holds its limit, further
attempts are refused with 429 until the oldest one leaves the window.

Counters live in process memory (embedded mode); a shared store for several API processes
comes with the Redis-backed rate limiter.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from opsflow.errors import RateLimited


@dataclass
class Attempt:
    """The places one login attempt holds: (key, its instant) pairs."""

    stamp: datetime
    keys: list[str] = field(default_factory=list)


@dataclass
class LoginThrottle:
    max_per_username: int = 10
    max_per_ip: int = 50
    window: timedelta = timedelta(minutes=15)
    max_keys: int = 100_000
    _attempts: dict[str, deque[datetime]] = field(default_factory=dict)

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        stamps = self._attempts.get(key)
        if stamps is None:
            return deque()
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if not stamps:
            del self._attempts[key]
        return stamps

    def begin(self, login_name: str | None, ip: str | None, now: datetime) -> Attempt:
        """Count an attempt for this login name and address, or raise 429 (taking nothing)
        when either already holds its limit."""
        keys: list[tuple[str, int]] = []
        if login_name is not None:
            keys.append((_name_key(login_name), self.max_per_username))
        if ip:
            keys.append((f"ip:{ip}", self.max_per_ip))
        attempt = Attempt(stamp=now)
        self._take(attempt, keys, now)
        return attempt

    def add_account(self, attempt: Attempt, account_id: uuid.UUID, now: datetime) -> None:
        """Count the attempt against the account too (whatever name it was reached by), or
        raise 429; on refusal the attempt keeps its other places (call :meth:`release`)."""
        self._take(attempt, [(_account_key(account_id), self.max_per_username)], now)

    def _take(self, attempt: Attempt, keys: list[tuple[str, int]], now: datetime) -> None:
        for key, limit in keys:
            stamps = self._recent(key, now)
            if len(stamps) >= limit:
                retry = max(math.ceil((stamps[0] + self.window - now).total_seconds()), 1)
                raise RateLimited(
                    "Too many failed login attempts; try again later",
                    headers={"Retry-After": str(retry)},
                    retry_after_seconds=retry,
                )
        if len(self._attempts) + len(keys) > self.max_keys:
            self._evict()
        for key, _ in keys:
            self._attempts.setdefault(key, deque()).append(now)
            attempt.keys.append(key)

    def _evict(self) -> None:
        # Bounded memory: forget the stalest keys first.
        stalest = sorted(self._attempts, key=lambda k: self._attempts[k][-1])
        for key in stalest[: max(self.max_keys // 10, 1)]:
            del self._attempts[key]

    def release(self, attempt: Attempt) -> None:
        """Give back the attempt's places: it tested no password."""
        for key in attempt.keys:
            stamps = self._attempts.get(key)
            if stamps is None:
                continue
            with contextlib.suppress(ValueError):  # already left the window, or evicted
                stamps.remove(attempt.stamp)
            if not stamps:
                del self._attempts[key]
        attempt.keys.clear()

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the name's and account's failures are forgotten; the
        address keeps its earlier failures, minus this attempt."""
        for key in attempt.keys:
            if not key.startswith("ip:"):
                self._attempts.pop(key, None)
        self.release(attempt)


def _name_key(login_name: str) -> str:
    return f"user:{login_name.strip().lower()}"


def _account_key(account_id: uuid.UUID) -> str:
    return f"account:{account_id}"
