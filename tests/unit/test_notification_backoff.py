"""Retry scheduling for notifications: exponential caps, jitter ranges, determinism."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsflow.notifications.backoff import (
    MAX_ATTEMPTS,
    attempts_left,
    backoff_cap,
    backoff_delay,
    next_attempt_at,
)

T0 = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_caps_double_from_30_seconds_until_one_hour() -> None:
    caps = [backoff_cap(n).total_seconds() for n in range(1, 10)]
    assert caps == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_caps_never_decrease_and_never_pass_the_maximum() -> None:
    caps = [backoff_cap(n, base=timedelta(seconds=7), factor=3) for n in range(1, 60)]
    assert all(a <= b for a, b in itertools.pairwise(caps))
    assert max(caps) == HOUR


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert backoff_cap(100_000) == HOUR
    assert next_attempt_at(100_000, T0, jitter="none") == T0 + HOUR


def test_no_jitter_is_exactly_the_cap() -> None:
    assert next_attempt_at(1, T0, jitter="none") == T0 + timedelta(seconds=30)
    assert next_attempt_at(3, T0, jitter="none") == T0 + timedelta(seconds=120)


def test_full_jitter_spreads_over_zero_to_cap() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(3, rng=rng).total_seconds() for _ in range(2000)]
    assert all(0 <= d <= 120 for d in delays)
    # Spread over the whole range, not bunched at one end.
    assert min(delays) < 12
    assert max(delays) > 108


def test_equal_jitter_stays_in_the_upper_half() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(3, jitter="equal", rng=rng).total_seconds() for _ in range(2000)]
    assert all(60 <= d <= 120 for d in delays)
    assert min(delays) < 66
    assert max(delays) > 114


def test_a_seeded_rng_gives_the_same_schedule() -> None:
    first = [next_attempt_at(n, T0, rng=random.Random(42)) for n in range(1, 6)]
    second = [next_attempt_at(n, T0, rng=random.Random(42)) for n in range(1, 6)]
    other = [next_attempt_at(n, T0, rng=random.Random(43)) for n in range(1, 6)]
    assert first == second
    assert first != other


def test_retry_after_hint_is_honoured_but_capped() -> None:
    at = next_attempt_at(1, T0, jitter="none", retry_after=timedelta(minutes=5))
    assert at == T0 + timedelta(minutes=5)
    # A hint shorter than the backoff does not bring the retry forward.
    assert next_attempt_at(3, T0, jitter="none", retry_after=timedelta(seconds=1)) == T0 + (
        timedelta(seconds=120)
    )
    # A receiver asking for a week gets the maximum delay.
    assert next_attempt_at(1, T0, retry_after=timedelta(days=7)) == T0 + HOUR


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempt": 0}, "starts at 1"),
        ({"attempt": 1, "factor": 0.5}, "factor"),
        ({"attempt": 1, "base": timedelta(seconds=-1)}, "negative"),
        ({"attempt": 1, "jitter": "bogus"}, "unknown jitter"),
    ],
)
def test_invalid_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        next_attempt_at(now=T0, **kwargs)  # type: ignore[arg-type]


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_attempt_at(1, datetime(2026, 1, 27, 10, 30))


def test_three_attempts_then_dead() -> None:
    assert MAX_ATTEMPTS == 3
    assert [attempts_left(n) for n in range(5)] == [True, True, True, False, False]


@given(
    attempt=st.integers(min_value=1, max_value=500),
    seed=st.integers(min_value=0, max_value=2**32),
    jitter=st.sampled_from(["full", "equal", "none"]),
)
def test_next_attempt_is_within_the_cap(attempt: int, seed: int, jitter: str) -> None:
    at = next_attempt_at(attempt, T0, jitter=jitter, rng=random.Random(seed))  # type: ignore[arg-type]
    assert T0 <= at <= T0 + backoff_cap(attempt)
