"""When a monitor expects its next signal, and what state it is in (pure).

A period monitor expects a success `period` after the last one. A cron monitor expects one
at the first instant of its expression, in its time zone, after the last success: the
expression is evaluated on local wall-clock time, so a job at 02:30 every day stays at
02:30 local across daylight-saving changes. On the spring-forward day, when 02:30 does not
exist, the instant is 03:00 local (the first minute after the gap); on the fall-back day a
time that occurs twice is expected once, at its first occurrence. Either way the monitor is
down once `grace` has passed after the expected instant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError


class State(StrEnum):
    NEW = "new"  # never signalled: not armed
    UP = "up"
    LATE = "late"  # the expected signal is overdue, within the grace
    DOWN = "down"
    PAUSED = "paused"


def check_cron(expression: str, timezone: str) -> str | None:
    """None when the expression and zone are usable, else what is wrong."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return "timezone must be an IANA time zone such as Europe/Paris"
    if len(expression.split()) != 5:
        return "cron must have five fields: minute hour day-of-month month day-of-week"
    try:
        next(iter(CronSim(expression, datetime(2026, 1, 1, tzinfo=zone))))
    except (CronSimError, StopIteration, ValueError) as exc:
        return f"cron is not a valid cron expression ({exc or 'no instant'})"
    return None


def next_expected(
    *, period_seconds: int | None, cron: str | None, timezone: str, after: datetime
) -> datetime:
    """The instant the signal after one received at `after` is expected."""
    if cron is None:
        assert period_seconds is not None
        return after + timedelta(seconds=period_seconds)
    zone = ZoneInfo(timezone)
    # Whole seconds: cron instants are whole minutes, and CronSim starts after its argument.
    local = after.astimezone(zone).replace(microsecond=0)
    return next(iter(CronSim(cron, local))).astimezone(UTC)


def state_at(
    *,
    stored: str,
    paused: bool,
    next_due_at: datetime | None,
    now: datetime,
) -> State:
    """The state shown: paused wins; an up monitor past its expected instant is late (the
    engine marks it down once the grace has passed too)."""
    if paused:
        return State.PAUSED
    if stored == State.UP and next_due_at is not None and now >= next_due_at:
        return State.LATE
    return State(stored)


def next_check(
    *,
    stored: str,
    paused: bool,
    next_due_at: datetime | None,
    grace_seconds: int,
    run_deadline: datetime | None,
) -> datetime | None:
    """When the engine must look at the monitor next: the end of the grace while it is up,
    or the deadline of its earliest open run; never while paused."""
    if paused:
        return None
    candidates = [run_deadline] if run_deadline is not None else []
    if stored == State.UP and next_due_at is not None:
        candidates.append(next_due_at + timedelta(seconds=grace_seconds))
    return min(candidates, default=None)
