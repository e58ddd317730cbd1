"""The rate limits' counters: the fixed windows every process agrees on, and the in-memory
storage's sweep paced so that a request never pays for walking every counter."""

from __future__ import annotations

from datetime import UTC, datetime

from limits.aio.storage import MemoryStorage

from opsflow.auth.ratelimit import SweptMemoryStorage, window_of


def test_windows_are_aligned_on_the_epoch() -> None:
    index, end = window_of(datetime(2026, 1, 27, 10, 30, 59, tzinfo=UTC), 60)
    assert (index, end) == (29_491_830, datetime(2026, 1, 27, 10, 31, tzinfo=UTC))
    assert window_of(datetime(2026, 1, 27, 10, 31, tzinfo=UTC), 60)[0] == index + 1


async def test_memory_counters_sweep_at_most_once_a_second() -> None:
    # The sweep walks every counter; the library would start one after every increment.
    assert hasattr(MemoryStorage, "_MemoryStorage__schedule_expiry")
    storage = SweptMemoryStorage()
    await storage.incr("a", 60)
    first = storage.timer
    assert first is not None
    await first
    for key in ("b", "c", "d"):
        await storage.incr(key, 60)
    assert storage.timer is first
