"""Password hashing with argon2id (argon2-cffi).

Every hash and verification runs in a worker thread, never on the event loop, and at most
`concurrency` of them run at once in a process: each one allocates the argon2 memory cost,
so an unbounded burst of logins would grow the process by (requests x memory cost). Up to
`queue` more wait for a free slot; beyond that the caller is refused at once with 503 and
`Retry-After`, before any work is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from opsflow.errors import ServiceUnavailable

T = TypeVar("T")


class Passwords:
    def __init__(
        self,
        *,
        time_cost: int = 3,
        memory_cost_kib: int = 65536,
        concurrency: int = 4,
        queue: int = 32,
    ) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib)
        # Verified against when the user does not exist, so both paths cost the same.
        self._dummy = self._hasher.hash("opsflow-timing-equaliser")
        self._concurrency = concurrency
        self._queue = queue
        self._pending = 0  # running + waiting; only touched on the event loop
        # Bound to the running event loop, so made on first use (and again for a new loop).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._threads: CapacityLimiter | None = None

    async def _run(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._threads is None:
            self._loop, self._pending = loop, 0
            self._slots = asyncio.Semaphore(self._concurrency)
            # Hash threads come from their own limiter, not the default thread pool that
            # everything else shares.
            self._threads = CapacityLimiter(self._concurrency)
        if self._pending >= self._concurrency + self._queue:
            raise ServiceUnavailable("Too many password checks in progress; retry shortly")
        self._pending += 1
        try:
            async with self._slots:
                return await anyio.to_thread.run_sync(work, limiter=self._threads)
        finally:
            self._pending -= 1

    async def hash(self, password: str) -> str:
        return await self._run(lambda: self._hasher.hash(password))

    async def verify(self, hashed: str | None, password: str) -> bool:
        def _verify() -> bool:
            try:
                return self._hasher.verify(hashed or self._dummy, password) and hashed is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await self._run(_verify)

    def needs_rehash(self, hashed: str) -> bool:
        return self._hasher.check_needs_rehash(hashed)
