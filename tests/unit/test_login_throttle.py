"""The login throttle's bookkeeping: places taken before hashing, given back or kept."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opsflow.auth.ratelimit import Counters
from opsflow.auth.throttle import LoginThrottle
from opsflow.clock import SettableClock
from opsflow.errors import RateLimited

T0 = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)


def _throttle(max_per_username: int, max_per_ip: int) -> LoginThrottle:
    counters = Counters(None, SettableClock(T0))
    return LoginThrottle(counters, max_per_username=max_per_username, max_per_ip=max_per_ip)


async def test_places_are_taken_before_any_outcome() -> None:
    throttle = _throttle(3, 100)
    for _ in range(3):
        await throttle.begin("alice", "10.0.0.1", T0)  # three attempts in flight, none finished
    with pytest.raises(RateLimited) as refused:
        await throttle.begin("ALICE ", "10.0.0.1", T0)
    assert refused.value.headers["Retry-After"] == str(15 * 60)


async def test_refusal_takes_no_place() -> None:
    throttle = _throttle(1, 2)
    await throttle.begin("alice", "10.0.0.1", T0)
    for _ in range(5):
        with pytest.raises(RateLimited):
            await throttle.begin("alice", "10.0.0.1", T0)
    await throttle.begin("bob", "10.0.0.1", T0)  # the address still had one place left
    with pytest.raises(RateLimited):
        await throttle.begin("carol", "10.0.0.1", T0)


async def test_release_gives_every_place_back() -> None:
    throttle = _throttle(1, 1)
    account = uuid.uuid4()
    attempt = await throttle.begin("alice", "10.0.0.1", T0)
    await throttle.add_account(attempt, account, T0)
    await throttle.release(attempt)
    again = await throttle.begin("alice", "10.0.0.1", T0)
    await throttle.add_account(again, account, T0)


async def test_account_limit_spans_login_names() -> None:
    throttle = _throttle(2, 100)
    account = uuid.uuid4()
    for name in ("alice", "alice@example.com"):
        await throttle.add_account(await throttle.begin(name, None, T0), account, T0)
    third = await throttle.begin("ALICE@example.com ", None, T0)
    with pytest.raises(RateLimited):
        await throttle.add_account(third, account, T0)


async def test_success_clears_name_and_account_but_not_the_address() -> None:
    throttle = _throttle(2, 3)
    account = uuid.uuid4()
    await throttle.add_account(await throttle.begin("alice", "10.0.0.1", T0), account, T0)  # failed
    right = await throttle.begin("alice", "10.0.0.1", T0)
    await throttle.add_account(right, account, T0)
    await throttle.succeeded(right)
    # Name and account forgot the failure; the address keeps it (1 of 3) and not the success.
    for _ in range(2):
        await throttle.add_account(await throttle.begin("alice", "10.0.0.1", T0), account, T0)
    with pytest.raises(RateLimited):
        await throttle.begin("bob", "10.0.0.1", T0)


async def test_failures_leave_the_window() -> None:
    throttle = _throttle(1, 100)
    await throttle.begin("alice", None, T0)
    with pytest.raises(RateLimited):
        await throttle.begin("alice", None, T0 + timedelta(minutes=14))
    await throttle.begin("alice", None, T0 + timedelta(minutes=15, seconds=1))


async def test_parallel_attempts_take_at_most_the_limit() -> None:
    throttle = _throttle(3, 100)
    outcomes = await asyncio.gather(
        *(throttle.begin("alice", None, T0) for _ in range(10)), return_exceptions=True
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 3
    assert all(isinstance(o, RateLimited) for o in outcomes if isinstance(o, BaseException))
