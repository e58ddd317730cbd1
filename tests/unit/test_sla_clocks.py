"""SLA clock scheduling (pure): threshold instants under a business calendar, pauses, the
engine's next wake-up (`reschedule`'s frozen rule), the calendar cache and unreachable
targets.

Expectations are worked out by hand (local wall-clock times in Europe/Paris, UTC+1 in
winter), never by calling the code under test.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from opsflow.models.sla import SlaClock
from opsflow.sla import clocks
from opsflow.sla.calendar import BusinessCalendar
from opsflow.sla.calendar_format import calendar_to_dict
from opsflow.sla.clocks import (
    calendar_of,
    pause,
    plan_clock,
    reschedule,
    resume,
    resume_after_reopen,
    stop,
    thresholds_of,
)
from opsflow.sla.status import ClockView

PARIS = ZoneInfo("Europe/Paris")
BIZ = BusinessCalendar.weekly("biz", "Europe/Paris", time(9), time(17))
T0 = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)


def paris(day: int, hour: int, minute: int = 0, month: int = 1) -> datetime:
    """A local wall-clock time in Europe/Paris, 2026."""
    return datetime(2026, month, day, hour, minute, tzinfo=PARIS)


FRIDAY_1630 = paris(30, 16, 30)  # Friday 2026-01-30
SATURDAY_NOON = paris(31, 12)


def monday(hour: int, minute: int = 0) -> datetime:
    return paris(2, hour, minute, month=2)  # Monday 2026-02-02


def biz_spec() -> dict[str, Any]:
    spec = calendar_to_dict(BIZ)
    del spec["name"]
    return spec


def new_clock(
    *,
    target: int = 60,
    started_at: datetime = T0,
    calendar: BusinessCalendar | None = None,
) -> SlaClock:
    """A clock as `create_clocks` makes it, under `calendar` (None: 24x7)."""
    spec = None
    if calendar is not None:
        spec = calendar_to_dict(calendar)
        del spec["name"]
    clock = SlaClock(
        id=uuid.uuid4(),
        task_id=uuid.uuid4(),
        kind="RESOLVE",
        status="ACTIVE",
        target_minutes=target,
        started_at=started_at,
        deadline=started_at,
        thresholds=[75.0, 95.0],
        calendar_name=calendar.name if calendar is not None else None,
        calendar_spec=spec,
        pause_on_blocked=False,
        pauses=[],
        paused_seconds=0.0,
        fired_count=0,
        created_at=started_at,
        updated_at=started_at,
    )
    reschedule(clock)
    return clock


def friday_clock() -> SlaClock:
    return new_clock(started_at=FRIDAY_1630, calendar=BIZ)


# --- (a) threshold instants under a business calendar ----------------------------------------


def test_spec_is_stored_without_the_name() -> None:
    assert biz_spec() == {
        "timezone": "Europe/Paris",
        "hours": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": [],
    }


def test_friday_afternoon_clock_runs_over_the_weekend() -> None:
    clock = friday_clock()
    # 30 min on Friday (16:30-17:00), the rest from Monday 09:00.
    assert clock.deadline == monday(9, 30)
    assert clock.warning_at == monday(9, 15)  # 45 min: 30 + 15
    assert clock.critical_at == monday(9, 27)  # 57 min: 30 + 27
    assert clock.next_fire_at == monday(9, 15)
    # Stored in UTC: Paris is UTC+1 in February.
    assert clock.deadline == datetime(2026, 2, 2, 8, 30, tzinfo=UTC)


def test_clock_without_a_calendar_runs_around_the_clock() -> None:
    clock = new_clock(started_at=FRIDAY_1630)
    assert clock.deadline == paris(30, 17, 30)
    assert clock.warning_at == paris(30, 17, 15)
    assert clock.critical_at == paris(30, 17, 27)


# --- (b) where the calendar clock stands ------------------------------------------------------


def test_view_over_the_weekend() -> None:
    shown = ClockView.of(friday_clock(), SATURDAY_NOON)
    assert shown.state == "compliant"
    assert shown.status == "ACTIVE"
    assert shown.elapsed == timedelta(minutes=30)
    assert shown.percent == 50.0
    # Wall-clock time to the deadline: Saturday 12:00 -> Monday 09:30.
    assert shown.remaining == timedelta(days=1, hours=21, minutes=30)


@pytest.mark.parametrize(
    ("now", "state", "elapsed_minutes"),
    [
        (monday(9, 14), "compliant", 44),
        (monday(9, 15), "warning", 45),
        (monday(9, 20), "warning", 50),
        (monday(9, 27), "critical", 57),
        (monday(9, 30), "breached", 60),
        (monday(11), "breached", 150),
    ],
)
def test_view_on_monday_morning(now: datetime, state: str, elapsed_minutes: int) -> None:
    shown = ClockView.of(friday_clock(), now)
    assert shown.state == state
    assert shown.elapsed == timedelta(minutes=elapsed_minutes)


def test_completed_on_monday_before_the_deadline_is_met() -> None:
    clock = friday_clock()
    stop(clock, monday(9, 25))
    assert clock.status == "MET"
    shown = ClockView.of(clock, monday(12))
    assert shown.met is True
    assert shown.elapsed == timedelta(minutes=55)
    # The warning (Monday 09:15) was due before the stop and has not fired.
    assert clock.next_fire_at == monday(9, 15)


def test_completed_on_monday_after_the_deadline_is_breached() -> None:
    clock = friday_clock()
    stop(clock, monday(9, 31))
    assert clock.status == "BREACHED"
    assert clock.breached_at == monday(9, 30)


# --- (c) pauses move the deadline by paused working time only ------------------------------


def test_open_pause_does_not_move_the_plan() -> None:
    clock = friday_clock()
    pause(clock, paris(30, 16, 40), "alice", None)
    assert clock.status == "PAUSED"
    assert clock.deadline == monday(9, 30)
    assert clock.warning_at == monday(9, 15)
    shown = ClockView.of(clock, monday(10))
    assert shown.status == "PAUSED"
    assert shown.state == "compliant"
    assert shown.elapsed == timedelta(minutes=10)


def test_pause_over_working_time_moves_the_deadline() -> None:
    clock = friday_clock()
    pause(clock, paris(30, 16, 40), "alice", None)
    resume(clock, monday(9))
    # Paused working time: Friday 16:40-17:00 = 20 min (the weekend was not working time).
    assert clock.deadline == monday(9, 50)
    assert clock.warning_at == monday(9, 35)
    assert clock.critical_at == monday(9, 47)
    shown = ClockView.of(clock, monday(9, 30))
    assert shown.elapsed == timedelta(minutes=40)
    assert shown.state == "compliant"


def test_pause_across_the_weekend_counts_working_minutes_on_both_sides() -> None:
    clock = friday_clock()
    pause(clock, paris(30, 16, 50), "alice", None)
    resume(clock, monday(9, 5))
    # 10 min on Friday + 5 min on Monday were paused.
    assert clock.deadline == monday(9, 45)


def test_pause_over_the_weekend_moves_nothing() -> None:
    clock = friday_clock()
    pause(clock, paris(30, 18), "alice", None)
    resume(clock, monday(8, 30))
    assert clock.status == "ACTIVE"
    assert clock.deadline == monday(9, 30)
    assert clock.warning_at == monday(9, 15)
    assert clock.critical_at == monday(9, 27)
    assert clock.next_fire_at == monday(9, 15)
    assert ClockView.of(clock, monday(9, 20)).state == "warning"


def test_reopen_under_the_calendar_counts_only_working_time_spent_completed() -> None:
    clock = friday_clock()
    stop(clock, paris(30, 16, 45))  # 15 min used
    resume_after_reopen(clock, monday(10))  # completed Friday 16:45 -> Monday 10:00
    # Working time spent completed: 15 min Friday + 60 min Monday: the 45 min left start now.
    assert clock.status == "ACTIVE"
    assert clock.deadline == monday(10, 45)
    assert clock.warning_at == monday(10, 30)
    assert ClockView.of(clock, monday(10, 10)).elapsed == timedelta(minutes=25)


# --- (d) reschedule's frozen rule --------------------------------------------------------------


def test_paused_after_an_unfired_warning_still_wakes_for_it() -> None:
    clock = new_clock()
    pause(clock, T0 + timedelta(minutes=50), "alice", None)
    assert clock.warning_at == T0 + timedelta(minutes=45)
    assert clock.next_fire_at == T0 + timedelta(minutes=45)


def test_paused_exactly_at_the_warning_waits() -> None:
    clock = new_clock()
    pause(clock, T0 + timedelta(minutes=45), "alice", None)
    assert clock.next_fire_at is None


def test_paused_before_the_warning_sleeps() -> None:
    clock = new_clock()
    pause(clock, T0 + timedelta(minutes=40), "alice", None)
    assert clock.warning_at == T0 + timedelta(minutes=45)
    assert clock.next_fire_at is None


def test_resumed_clock_wakes_for_the_next_due_instant() -> None:
    clock = new_clock()
    pause(clock, T0 + timedelta(minutes=40), "alice", None)
    resume(clock, T0 + timedelta(minutes=70))
    # 30 min paused: everything after the pause moves by 30 min.
    assert clock.warning_at == T0 + timedelta(minutes=75)
    assert clock.next_fire_at == T0 + timedelta(minutes=75)
    assert clock.deadline == T0 + timedelta(minutes=90)
    assert clock.paused_seconds == 1800.0


def test_resumed_after_an_unfired_warning_wakes_for_it_at_once() -> None:
    clock = new_clock()
    pause(clock, T0 + timedelta(minutes=50), "alice", None)
    resume(clock, T0 + timedelta(minutes=80))
    assert clock.warning_at == T0 + timedelta(minutes=45)  # before the pause: unchanged
    assert clock.critical_at == T0 + timedelta(minutes=87)
    assert clock.next_fire_at == T0 + timedelta(minutes=45)


def test_fired_warning_moves_the_wake_up_to_the_critical() -> None:
    clock = new_clock()
    clock.fired_count = 1
    pause(clock, T0 + timedelta(minutes=50), "alice", None)
    assert clock.next_fire_at is None  # critical (57 min) not due before the pause
    resume(clock, T0 + timedelta(minutes=80))
    assert clock.next_fire_at == T0 + timedelta(minutes=87)
    clock.fired_count = 3
    reschedule(clock)
    assert clock.next_fire_at is None  # all fired


def test_frozen_rule_under_the_calendar() -> None:
    clock = friday_clock()
    pause(clock, monday(9, 20), "alice", None)
    assert clock.next_fire_at == monday(9, 15)
    clock.fired_count = 1
    reschedule(clock)
    assert clock.next_fire_at is None  # critical was due Monday 09:27


# --- (e) the calendar cache and unreachable targets -------------------------------------------


def test_calendar_of_parses_once_per_content() -> None:
    first = calendar_of("biz", biz_spec())
    # An equal spec (a different object, keys in another order) gives the same calendar.
    again = calendar_of("biz", dict(reversed(list(biz_spec().items()))))
    assert again is first
    assert first.name == "biz"
    assert first.timezone == "Europe/Paris"
    assert first.hours == BIZ.hours
    other = calendar_of("biz", {**biz_spec(), "holidays": ["2026-02-02"]})
    assert other is not first
    assert other.holidays == frozenset({datetime(2026, 2, 2).date()})


def test_calendar_of_without_a_spec_is_24x7() -> None:
    assert calendar_of(None, None).is_always
    assert calendar_of("biz", None) is calendar_of(None, None)


def test_holiday_in_the_spec_moves_the_deadline() -> None:
    holiday = BusinessCalendar.weekly(
        "biz", "Europe/Paris", time(9), time(17), holidays=[datetime(2026, 2, 2).date()]
    )
    clock = new_clock(started_at=FRIDAY_1630, calendar=holiday)
    assert clock.deadline == paris(3, 9, 30, month=2)  # Tuesday


def test_thresholds_of() -> None:
    names = [(t.percent, t.name) for t in thresholds_of([95, 75])]
    assert names == [(75.0, "WARNING"), (95.0, "CRITICAL"), (100.0, "BREACH")]
    names = [(t.percent, t.name) for t in thresholds_of([80, 0, 100, 150])]
    assert names == [(80.0, "WARNING"), (100.0, "BREACH")]


def test_unreachable_target_is_never_due() -> None:
    # One working minute a week: a year of working minutes would take ~10,000 years of
    # weeks, far beyond the ten-year horizon; answered at once, not by walking the weeks.
    sparse = BusinessCalendar("sparse", "UTC", {0: ((time(9), time(9, 1)),)})
    never = datetime(9999, 1, 1, tzinfo=UTC)
    assert never == clocks.NEVER
    plan = plan_clock(datetime(2026, 1, 1, tzinfo=UTC), 525_600, [75.0, 95.0], [], sparse)
    assert [at for _, at in plan.steps] == [never, never, never]
    assert plan.deadline == never
    assert plan.warning_at == never
    assert plan.critical_at == never


def test_horizon_is_ten_years_of_calendar_time() -> None:
    # An hour a week: 520 hours fit in the horizon (the deadline is found), 521 do not.
    hourly = BusinessCalendar("hourly", "UTC", {0: ((time(9), time(10)),)})
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)  # a Monday, 09:00
    reachable = plan_clock(start, 520 * 60, [75.0, 95.0], [], hourly)
    assert reachable.deadline == start + timedelta(weeks=519, hours=1)
    beyond = plan_clock(start, 521 * 60, [75.0, 95.0], [], hourly)
    assert beyond.deadline == clocks.NEVER


def test_instants_beyond_never_are_clamped() -> None:
    # 24x7 from 9998-12-31 00:00, 1600 min: warning at 1200 min (20:00 that day) is kept;
    # critical at 1520 min (9999-01-01 01:20) and the deadline lie past NEVER.
    plan = plan_clock(datetime(9998, 12, 31, tzinfo=UTC), 1600, [75.0, 95.0], [])
    assert plan.warning_at == datetime(9998, 12, 31, 20, tzinfo=UTC)
    assert plan.critical_at == clocks.NEVER
    assert plan.deadline == clocks.NEVER


def test_stopped_outside_hours_after_using_exactly_the_target_is_breached() -> None:
    # 30 min target from Friday 16:30: the deadline is Friday 17:00 itself (the instant the
    # last working minute ends), so completing on Saturday, with no more working time used,
    # is after the deadline.
    clock = new_clock(target=30, started_at=FRIDAY_1630, calendar=BIZ)
    assert clock.deadline == paris(30, 17)
    stop(clock, SATURDAY_NOON)
    assert clock.status == "BREACHED"
    assert clock.breached_at == paris(30, 17)
    shown = ClockView.of(clock, monday(9))
    assert shown.percent == 100.0
    assert shown.met is False


def test_engine_waits_until_the_next_due_threshold_at_most_the_interval() -> None:
    from opsflow.workers.rounds import MIN_WAIT_SECONDS, wait_before_next_round

    now = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)
    assert wait_before_next_round(None, now, 1.0) == 1.0  # nothing scheduled
    soon = now + timedelta(milliseconds=250)
    assert wait_before_next_round(soon, now, 1.0) == 0.25
    later = now + timedelta(minutes=5)
    assert wait_before_next_round(later, now, 1.0) == 1.0
    held = now - timedelta(seconds=3)  # another engine holds it
    assert wait_before_next_round(held, now, 1.0) == MIN_WAIT_SECONDS
