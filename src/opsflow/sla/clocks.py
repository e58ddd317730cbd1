"""SLA clock scheduling (pure): when each threshold of a clock is due.

A clock runs from `started_at` for `target_minutes` of working time in its calendar, not
counting its pauses. Its thresholds (warning and critical percents, then the breach at
100 %) fire in order; `fired_count` says how many already have, so the next instant to wake
up for is ``plan.steps[fired_count]``: that is the clock's `next_fire_at`, and the engine's
only key.

Only *closed* pauses move the plan. While a clock is paused its plan is still right for
every instant before the pause began, which is what the engine and the state filters need:
a threshold due before the pause still fires, nothing after it does until the clock resumes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from opsflow.kit.jsonable import to_jsonable
from opsflow.models.enums import ClockStatus
from opsflow.models.sla import SlaClock
from opsflow.sla.calendar import BusinessCalendar, threshold_instants, working_seconds
from opsflow.sla.calendar_format import calendar_from_dict
from opsflow.sla.defaults import CRITICAL_PERCENT, WARNING_PERCENT

DEFAULT_THRESHOLDS = (WARNING_PERCENT, CRITICAL_PERCENT)
BREACH_PERCENT = 100.0
# Where a target that the calendar does not reach within HORIZON_WEEKS is put.
NEVER = datetime(9999, 1, 1, tzinfo=UTC)
# Ten years: finding an instant costs time per day walked, so a target that needs more
# calendar time than this (a year-long target on a calendar with an hour a week) is treated
# as never reached instead of being searched for on every reschedule.
HORIZON_WEEKS = 520


@dataclass(frozen=True)
class Threshold:
    percent: float
    name: str  # WARNING | CRITICAL | BREACH
    severity: str  # WARNING | CRITICAL


def thresholds_of(percents: list[Any] | tuple[float, ...]) -> list[Threshold]:
    """The clock's thresholds in firing order, the breach always last."""
    ordered = sorted({float(p) for p in percents if 0 < float(p) < BREACH_PERCENT})
    result: list[Threshold] = []
    for index, percent in enumerate(ordered):
        # The highest configured threshold below the breach is the critical one; any
        # lower ones are warnings (the default pair is 75 → WARNING, 95 → CRITICAL).
        is_critical = index == len(ordered) - 1 and len(ordered) > 1
        result.append(
            Threshold(
                percent,
                "CRITICAL" if is_critical else "WARNING",
                "CRITICAL" if is_critical else "WARNING",
            )
        )
    result.append(Threshold(BREACH_PERCENT, "BREACH", "CRITICAL"))
    return result


def parse_instant(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def pause_intervals(pauses: list[Any]) -> list[tuple[datetime, datetime | None]]:
    """Stored pauses (``{"from", "to"}`` JSON) as intervals; an open pause ends in None."""
    return [
        (parse_instant(p["from"]), parse_instant(p["to"]) if p.get("to") else None) for p in pauses
    ]


def closed_pauses(pauses: list[Any]) -> list[tuple[datetime, datetime | None]]:
    return [(start, end) for start, end in pause_intervals(pauses) if end is not None]


def calendar_of(name: str | None, spec: dict[str, Any] | None) -> BusinessCalendar:
    """The calendar a clock stored (``None``: 24x7), parsed once per process and content."""
    if name is None or spec is None:
        return _ALWAYS
    return _parse_calendar(name, json.dumps(spec, sort_keys=True))


_ALWAYS = BusinessCalendar.always()


@lru_cache(maxsize=256)
def _parse_calendar(name: str, spec_json: str) -> BusinessCalendar:
    return calendar_from_dict(name, json.loads(spec_json))


@dataclass(frozen=True)
class Plan:
    """Every threshold of a clock with the instant it is due, the breach last."""

    steps: list[tuple[Threshold, datetime]]

    @property
    def deadline(self) -> datetime:
        return self.steps[-1][1]

    def instant(self, name: str) -> datetime | None:
        return next((at for threshold, at in self.steps if threshold.name == name), None)

    @property
    def warning_at(self) -> datetime | None:
        return self.instant("WARNING")

    @property
    def critical_at(self) -> datetime | None:
        return self.instant("CRITICAL")


def plan_clock(
    started_at: datetime,
    target_minutes: int,
    percents: list[Any] | tuple[float, ...],
    pauses: list[Any],
    calendar: BusinessCalendar = _ALWAYS,
) -> Plan:
    # A task change reschedules both of its clocks, mostly with the same inputs (an open
    # pause does not move the plan): the last plans are kept, keyed by what they depend on.
    steps = _planned(
        started_at,
        target_minutes,
        tuple(float(p) for p in percents),
        tuple(closed_pauses(pauses)),
        calendar,
    )
    return Plan(list(steps))


@lru_cache(maxsize=4096)
def _planned(
    started_at: datetime,
    target_minutes: int,
    percents: tuple[float, ...],
    closed: tuple[tuple[datetime, datetime | None], ...],
    calendar: BusinessCalendar,
) -> tuple[tuple[Threshold, datetime], ...]:
    thresholds = thresholds_of(percents)
    weekly = calendar.weekly_working_seconds
    if weekly <= 0 or target_minutes * 60 > weekly * HORIZON_WEEKS:
        return tuple((t, NEVER) for t in thresholds)
    try:
        instants = threshold_instants(
            calendar, started_at, target_minutes, [t.percent for t in thresholds], list(closed)
        )
    except ValueError:
        # Only a sparse calendar with a target of many years gets here: nothing fires.
        return tuple((t, NEVER) for t in thresholds)
    return tuple((t, min(instants[t.percent], NEVER)) for t in thresholds)


# --- moving a clock (pure: each transition changes the row in memory) ---------------------


def plan_of(clock: SlaClock) -> Plan:
    return plan_clock(
        clock.started_at,
        clock.target_minutes,
        clock.thresholds,
        clock.pauses,
        calendar_of(clock.calendar_name, clock.calendar_spec),
    )


def frozen_at(clock: SlaClock) -> datetime | None:
    """The instant a clock stopped counting (stopped or paused); None while it runs."""
    return clock.stopped_at or clock.paused_at


def reschedule(clock: SlaClock, plan: Plan | None = None) -> None:
    """Recompute the threshold instants and the next instant to wake up for (`plan`: the
    clock's plan when the caller has it already, i.e. nothing it depends on changed).

    A stopped or paused clock still wakes up for a threshold that was due before it stopped
    and has not fired yet (the engine runs a moment behind): nothing due is ever skipped.
    """
    plan = plan or plan_of(clock)
    clock.deadline = plan.deadline
    clock.warning_at = plan.warning_at
    clock.critical_at = plan.critical_at
    clock.next_fire_at = None
    if clock.fired_count >= len(plan.steps):
        return
    due = plan.steps[clock.fired_count][1]
    frozen = frozen_at(clock)
    if frozen is None or due < frozen:
        clock.next_fire_at = due


def counted_seconds(clock: SlaClock) -> float | None:
    """The working time a stopped clock counted: its calendar from its start to its stop,
    pauses excluded (None while it counts). Stored on the clock when it stops."""
    if clock.stopped_at is None:
        return None
    calendar = calendar_of(clock.calendar_name, clock.calendar_spec)
    until = max(clock.stopped_at, clock.started_at)
    return working_seconds(calendar, clock.started_at, until, pause_intervals(clock.pauses))


def breached_since(clock: SlaClock) -> datetime | None:
    """The instant from which the clock counts as breached as it now stands (None: it does
    not, and will not until it changes).

    The read side's rule (`sla.status.ClockView.breached`): breached when recorded so, when
    stopped after its deadline, or at its deadline while it counts or stands paused at or
    past it. So at any instant `now` no earlier than the clock's recorded instants (its
    pause, stop and breach), the clock is breached exactly when this is not None and
    `<= now`. Recording the breach the deadline already implied (the engine, `stop`)
    leaves it unchanged.
    """
    candidates: list[datetime] = []
    if clock.status == ClockStatus.BREACHED:
        candidates.append(clock.breached_at or clock.started_at)
    if clock.stopped_at is not None:
        if clock.stopped_at > clock.deadline:
            candidates.append(clock.deadline)
    elif clock.paused_at is None or clock.paused_at >= clock.deadline:
        candidates.append(clock.deadline)
    return min(candidates, default=None)


def task_breached_since(clocks: Iterable[SlaClock]) -> datetime | None:
    """The earliest `breached_since` of a task's clocks (`tasks.sla_breach_at`)."""
    return min((at for at in map(breached_since, clocks) if at is not None), default=None)


def running(clock: SlaClock) -> bool:
    return clock.stopped_at is None and clock.status in (ClockStatus.ACTIVE, ClockStatus.BREACHED)


def pause(clock: SlaClock, at: datetime, actor: str, reason: str | None) -> None:
    if not running(clock) or clock.paused_at is not None:
        return
    clock.paused_at = at
    clock.pauses = [
        *clock.pauses,
        to_jsonable({"from": at, "to": None, "actor": actor, "reason": reason}),
    ]
    if clock.status == ClockStatus.ACTIVE:
        clock.status = ClockStatus.PAUSED
    clock.updated_at = at
    reschedule(clock)


def resume(clock: SlaClock, at: datetime) -> None:
    if clock.paused_at is None:
        return
    pauses = list(clock.pauses)
    if pauses and pauses[-1].get("to") is None:
        pauses[-1] = {**pauses[-1], "to": to_jsonable(at)}
    clock.pauses = pauses
    clock.paused_seconds += (at - clock.paused_at).total_seconds()
    clock.paused_at = None
    if clock.status == ClockStatus.PAUSED:
        clock.status = ClockStatus.ACTIVE
    clock.updated_at = at
    reschedule(clock)


def stop(clock: SlaClock, at: datetime, *, cancelled: bool = False) -> None:
    if clock.stopped_at is not None or clock.status in (ClockStatus.MET, ClockStatus.CANCELLED):
        return
    if clock.paused_at is not None:
        # A paused clock that stops ends its pause at the stop instant.
        resume(clock, max(at, clock.paused_at))
    clock.stopped_at = at
    clock.cancelled = cancelled
    clock.working_seconds = counted_seconds(clock)
    if clock.status != ClockStatus.BREACHED:
        if at > clock.deadline:
            # Stopped after its deadline, before the engine's pass got to it: breached all
            # the same (the engine still records the event, see `reschedule`).
            clock.status = ClockStatus.BREACHED
            clock.breached_at = clock.deadline
        else:
            clock.status = ClockStatus.CANCELLED if cancelled else ClockStatus.MET
    clock.updated_at = at
    reschedule(clock)


def resume_after_reopen(clock: SlaClock, now: datetime) -> None:
    stopped = clock.stopped_at
    assert stopped is not None
    clock.pauses = [
        *clock.pauses,
        to_jsonable({"from": stopped, "to": now, "actor": "system", "reason": "completed"}),
    ]
    clock.paused_seconds += (now - stopped).total_seconds()
    clock.stopped_at = None
    clock.working_seconds = None
    if clock.status == ClockStatus.MET:
        clock.status = ClockStatus.ACTIVE
    clock.updated_at = now
    reschedule(clock)
