"""When to try a failed notification again (pure): exponential backoff with jitter.

The delay before retry *n* grows as ``base * factor**(n-1)``, capped at ``max_delay``.
Jitter spreads the retries of many notifications that failed together (one dead endpoint,
one SMTP outage) so they do not come back as one thundering herd:

- ``"full"``: uniform in ``[0, cap]`` (AWS "full jitter": lowest total load);
- ``"equal"``: uniform in ``[cap/2, cap]`` (never retries sooner than half the cap);
- ``"none"``: exactly the cap (for tests and for people reading schedules).

Randomness comes from the ``rng`` the caller passes, so a seeded ``random.Random`` gives a
reproducible schedule; nothing here reads the wall clock or module-level state.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Literal

MAX_ATTEMPTS = 3
"""Attempts per notification before it goes DEAD (the notification's ``max_attempts``)."""

DEFAULT_BASE = timedelta(seconds=30)
DEFAULT_FACTOR = 2.0
DEFAULT_MAX_DELAY = timedelta(hours=1)

Jitter = Literal["full", "equal", "none"]


def backoff_cap(
    attempt: int,
    *,
    base: timedelta = DEFAULT_BASE,
    factor: float = DEFAULT_FACTOR,
    max_delay: timedelta = DEFAULT_MAX_DELAY,
) -> timedelta:
    """The un-jittered delay after ``attempt`` failed attempts (1 = the first one failed)."""
    if attempt < 1:
        raise ValueError("attempt counts the attempts already made and starts at 1")
    if base < timedelta(0) or max_delay < timedelta(0):
        raise ValueError("base and max_delay must not be negative")
    if factor < 1:
        raise ValueError("factor must be at least 1")
    limit = max_delay.total_seconds()
    try:
        seconds = base.total_seconds() * factor ** (attempt - 1)
    except OverflowError:  # factor ** 10_000: far past any cap
        seconds = limit
    return timedelta(seconds=min(seconds, limit))


def backoff_delay(
    attempt: int,
    *,
    base: timedelta = DEFAULT_BASE,
    factor: float = DEFAULT_FACTOR,
    max_delay: timedelta = DEFAULT_MAX_DELAY,
    jitter: Jitter = "full",
    rng: random.Random | None = None,
) -> timedelta:
    """The jittered delay after ``attempt`` failed attempts."""
    cap = backoff_cap(attempt, base=base, factor=factor, max_delay=max_delay).total_seconds()
    if jitter == "none":
        return timedelta(seconds=cap)
    source = rng if rng is not None else random.Random()  # noqa: S311 - not cryptographic
    if jitter == "full":
        return timedelta(seconds=source.uniform(0, cap))
    if jitter == "equal":
        return timedelta(seconds=cap / 2 + source.uniform(0, cap / 2))
    raise ValueError(f"unknown jitter {jitter!r}; use 'full', 'equal' or 'none'")


def next_attempt_at(
    attempt: int,
    now: datetime,
    *,
    base: timedelta = DEFAULT_BASE,
    factor: float = DEFAULT_FACTOR,
    max_delay: timedelta = DEFAULT_MAX_DELAY,
    jitter: Jitter = "full",
    rng: random.Random | None = None,
    retry_after: timedelta | None = None,
) -> datetime:
    """The instant for the next attempt after ``attempt`` failed ones, seen at ``now``.

    ``retry_after`` is a destination's own hint (HTTP 429/503 ``Retry-After``): the retry
    is never earlier than it, but the hint is capped at ``max_delay`` so a hostile or
    confused receiver cannot park a notification for a year.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    delay = backoff_delay(
        attempt, base=base, factor=factor, max_delay=max_delay, jitter=jitter, rng=rng
    )
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, max_delay)
    return now + delay


def attempts_left(attempts: int, max_attempts: int = MAX_ATTEMPTS) -> bool:
    """Whether a notification that has made ``attempts`` attempts may make another."""
    return attempts < max_attempts
