"""Login throttling per username and per client IP.

Failed attempts are counted in a sliding window; once a key has too many, further attempts
are refused with 429 until the oldest failure leaves the window. A successful login clears
the username's failures. Counters live in process memory (embedded mode); a shared store
for several API processes comes with the Redis-backed rate limiter.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from opsflow.errors import RateLimited


@dataclass
class LoginThrottle:
    max_per_username: int = 10
    max_per_ip: int = 50
    window: timedelta = timedelta(minutes=15)
    max_keys: int = 100_000
    _failures: dict[str, deque[datetime]] = field(default_factory=dict)

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        stamps = self._failures.get(key)
        if stamps is None:
            return deque()
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
        return stamps

    def check(self, username: str, ip: str | None, now: datetime) -> None:
        """Raise 429 when either key is over its limit."""
        for key, limit in self._keys(username, ip):
            stamps = self._recent(key, now)
            if len(stamps) >= limit:
                retry = math.ceil((stamps[0] + self.window - now).total_seconds())
                raise RateLimited(
                    "Too many failed login attempts; try again later",
                    headers={"Retry-After": str(max(retry, 1))},
                    retry_after_seconds=max(retry, 1),
                )

    def failed(self, username: str, ip: str | None, now: datetime) -> None:
        if len(self._failures) >= self.max_keys:
            # Bounded memory: forget the stalest keys first.
            for key in sorted(self._failures, key=lambda k: self._failures[k][-1])[
                : self.max_keys // 10
            ]:
                del self._failures[key]
        for key, _ in self._keys(username, ip):
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, username: str) -> None:
        self._failures.pop(f"user:{username.strip().lower()}", None)

    def _keys(self, username: str, ip: str | None) -> list[tuple[str, int]]:
        keys = [(f"user:{username.strip().lower()}", self.max_per_username)]
        if ip:
            keys.append((f"ip:{ip}", self.max_per_ip))
        return keys
