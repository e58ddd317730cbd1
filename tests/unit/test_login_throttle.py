"""The login throttle's bookkeeping: places taken before hashing, given back or kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opsflow.auth.throttle import LoginThrottle
from opsflow.errors import RateLimited

T0 = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)


def test_places_are_taken_before_any_outcome() -> None:
    throttle = LoginThrottle(max_per_username=3, max_per_ip=100)
    for _ in range(3):
        throttle.begin("alice", "10.0.0.1", T0)  # three attempts in flight, none finished
    with pytest.raises(RateLimited) as refused:
        throttle.begin("ALICE ", "10.0.0.1", T0)
    assert refused.value.headers["Retry-After"] == str(15 * 60)


def test_refusal_takes_no_place() -> None:
    throttle = LoginThrottle(max_per_username=1, max_per_ip=2)
    throttle.begin("alice", "10.0.0.1", T0)
    for _ in range(5):
        with pytest.raises(RateLimited):
            throttle.begin("alice", "10.0.0.1", T0)
    throttle.begin("bob", "10.0.0.1", T0)  # the address still had one place left
    with pytest.raises(RateLimited):
        throttle.begin("carol", "10.0.0.1", T0)


def test_release_gives_every_place_back() -> None:
    throttle = LoginThrottle(max_per_username=1, max_per_ip=1)
    account = uuid.uuid4()
    attempt = throttle.begin("alice", "10.0.0.1", T0)
    throttle.add_account(attempt, account, T0)
    throttle.release(attempt)
    again = throttle.begin("alice", "10.0.0.1", T0)
    throttle.add_account(again, account, T0)


def test_account_limit_spans_login_names() -> None:
    throttle = LoginThrottle(max_per_username=2, max_per_ip=100)
    account = uuid.uuid4()
    for name in ("alice", "alice@example.com"):
        throttle.add_account(throttle.begin(name, None, T0), account, T0)
    third = throttle.begin("ALICE@example.com ", None, T0)
    with pytest.raises(RateLimited):
        throttle.add_account(third, account, T0)


def test_success_clears_name_and_account_but_not_the_address() -> None:
    throttle = LoginThrottle(max_per_username=2, max_per_ip=3)
    account = uuid.uuid4()
    throttle.add_account(throttle.begin("alice", "10.0.0.1", T0), account, T0)  # failed
    right = throttle.begin("alice", "10.0.0.1", T0)
    throttle.add_account(right, account, T0)
    throttle.succeeded(right)
    # Name and account forgot the failure; the address keeps it (1 of 3) and not the success.
    for _ in range(2):
        throttle.add_account(throttle.begin("alice", "10.0.0.1", T0), account, T0)
    with pytest.raises(RateLimited):
        throttle.begin("bob", "10.0.0.1", T0)


def test_failures_leave_the_window() -> None:
    throttle = LoginThrottle(max_per_username=1, max_per_ip=100)
    throttle.begin("alice", None, T0)
    with pytest.raises(RateLimited):
        throttle.begin("alice", None, T0 + timedelta(minutes=14))
    throttle.begin("alice", None, T0 + timedelta(minutes=15, seconds=1))


def test_memory_stays_bounded() -> None:
    throttle = LoginThrottle(max_per_username=5, max_per_ip=5, max_keys=100)
    for index in range(1000):
        throttle.begin(f"user-{index}", None, T0 + timedelta(seconds=index))
    assert len(throttle._attempts) <= 100
