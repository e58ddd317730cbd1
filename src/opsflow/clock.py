"""Time source. Nothing in OpsFlow reads the wall clock directly; it asks a Clock.

Services and engines receive the clock from the application state, so tests can
replace it with a :class:`SettableClock` and move time forward instead of sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current instant, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SettableClock:
    """A clock that only moves when told to. For tests and simulations."""

    def __init__(self, start: datetime | None = None) -> None:
        base = start or datetime(2026, 1, 27, 10, 30, tzinfo=UTC)
        if base.tzinfo is None:
            raise ValueError("SettableClock needs a timezone-aware start")
        self._now = base.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("instant must be timezone-aware")
        self._now = instant.astimezone(UTC)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        self._now += delta if delta is not None else timedelta(**kwargs)
        return self._now


class OffsetClock:
    """The system clock shifted by an offset that only grows. A running server's clock under
    ``APP_ENV=test``: time keeps flowing (timers, token lifetimes and the engines' ticks behave
    as in production) and an end-to-end test jumps it forward instead of waiting."""

    def __init__(self, base: Clock | None = None) -> None:
        self._base = base or SystemClock()
        self._offset = timedelta(0)

    @property
    def offset(self) -> timedelta:
        return self._offset

    def now(self) -> datetime:
        return self._base.now() + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Moves the clock forward by ``delta`` (never back: a clock that jumps backwards
        would re-open deadlines already acted on)."""
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        self._offset += delta
        return self.now()
