"""Where an SLA clock stands at an instant, read from its `sla_clocks` row, and the
`sla_status` block built from a task's two clocks.

Thresholds: WARNING at 75 % of the target elapsed, CRITICAL at 95 %, breach at
100 %; a breached clock that later stops keeps BREACHED.

Clocks are transient `SlaClock` rows (no database), set up the way `create_clocks` does and
moved with the service's pure transitions (`_stop`, `_pause`, `_resume`,
`_resume_after_reopen`). All of them run on the 24x7 calendar, so expectations are plain
wall-clock arithmetic from `T0`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsflow.models.sla import SlaClock
from opsflow.sla.calendar import BusinessCalendar, working_seconds
from opsflow.sla.clocks import pause, reschedule, resume, resume_after_reopen, stop
from opsflow.sla.defaults import MAX_SLA_MINUTES
from opsflow.sla.status import ClockView, sla_status, worst_state

T0 = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)


def at(**kwargs: float) -> datetime:
    return T0 + timedelta(**kwargs)


def new_clock(kind: str = "RESOLVE", target: int = 60, started_at: datetime = T0) -> SlaClock:
    """A clock as `create_clocks` makes it (default policy: 24x7, thresholds 75/95)."""
    clock = SlaClock(
        id=uuid.uuid4(),
        task_id=uuid.uuid4(),
        kind=kind,
        status="ACTIVE",
        target_minutes=target,
        started_at=started_at,
        deadline=started_at,
        thresholds=[75.0, 95.0],
        calendar_name=None,
        calendar_spec=None,
        pause_on_blocked=False,
        pauses=[],
        paused_seconds=0.0,
        fired_count=0,
        created_at=started_at,
        updated_at=started_at,
    )
    reschedule(clock)
    return clock


def view(
    *,
    target: int = 60,
    now: datetime,
    stopped_at: datetime | None = None,
    cancelled: bool = False,
) -> ClockView:
    clock = new_clock(target=target)
    if stopped_at is not None:
        stop(clock, stopped_at, cancelled=cancelled)
    return ClockView.of(clock, now)


# --- single clock ------------------------------------------------------------------------------


def test_new_clock_is_scheduled_from_its_start() -> None:
    clock = new_clock()
    assert clock.deadline == at(minutes=60)
    assert clock.warning_at == at(minutes=45)
    assert clock.critical_at == at(minutes=57)
    assert clock.next_fire_at == at(minutes=45)


def test_running_clock_half_way() -> None:
    clock = view(now=at(minutes=30))
    assert clock.running
    assert clock.status == "ACTIVE"
    assert clock.state == "compliant"
    assert clock.met is None
    assert clock.remaining == timedelta(minutes=30)
    assert clock.elapsed == timedelta(minutes=30)
    assert clock.percent == 50.0
    assert clock.remaining_text() == "30 minutes"


@pytest.mark.parametrize(
    ("elapsed", "state"),
    [
        (timedelta(minutes=44, seconds=59), "compliant"),
        (timedelta(minutes=45), "warning"),  # 75 %
        (timedelta(minutes=56, seconds=59), "warning"),
        (timedelta(minutes=57), "critical"),  # 95 %
        (timedelta(minutes=59, seconds=59), "critical"),
        (timedelta(minutes=60), "breached"),  # 100 %: the deadline instant itself
        (timedelta(minutes=60, seconds=1), "breached"),
    ],
)
def test_thresholds(elapsed: timedelta, state: str) -> None:
    assert view(now=T0 + elapsed).state == state


def test_running_clock_past_deadline_is_breached() -> None:
    # The engine has not fired yet (stored status ACTIVE): the view says BREACHED anyway.
    clock = view(now=at(minutes=75))
    assert clock.status_stored == "ACTIVE"
    assert clock.breached
    assert clock.status == "BREACHED"
    assert clock.state == "breached"
    assert clock.met is None
    assert clock.remaining == timedelta(minutes=-15)
    assert clock.elapsed == timedelta(minutes=75)
    assert clock.percent == 125.0
    assert clock.remaining_text() == "overdue by 15 minutes"


def test_running_clock_at_its_deadline_is_breached() -> None:
    clock = view(now=at(minutes=60))
    assert clock.percent == 100.0
    assert clock.state == "breached"
    assert clock.status == "BREACHED"


def test_breach_recorded_by_the_engine_is_kept() -> None:
    clock = new_clock()
    clock.status, clock.breached_at, clock.fired_count = "BREACHED", at(minutes=60), 3
    shown = ClockView.of(clock, at(minutes=61))
    assert shown.breached
    assert shown.status == "BREACHED"
    assert shown.state == "breached"


def test_met_clock_freezes() -> None:
    raw = new_clock()
    stop(raw, at(minutes=40))
    assert raw.status == "MET"
    assert raw.next_fire_at is None  # stopped before its warning was due
    clock = ClockView.of(raw, at(hours=5))
    assert not clock.running
    assert clock.status == "MET"
    assert clock.met is True
    assert clock.state == "compliant"
    assert clock.remaining == timedelta(minutes=20)
    assert clock.elapsed == timedelta(minutes=40)
    assert clock.percent == 66.67


def test_stopping_at_the_deadline_meets_it() -> None:
    clock = view(now=at(hours=5), stopped_at=at(minutes=60))
    assert clock.met is True
    assert clock.status == "MET"
    assert clock.state == "compliant"


def test_stopped_in_warning_zone_is_no_longer_at_risk() -> None:
    raw = new_clock()
    stop(raw, at(minutes=50))
    assert ClockView.of(raw, at(minutes=58)).state == "compliant"
    # The warning was due before the stop and has not fired: the engine still wakes for it.
    assert raw.next_fire_at == at(minutes=45)


def test_stopped_late_stays_breached() -> None:
    raw = new_clock()
    stop(raw, at(minutes=70))
    # Breached as soon as it stops, before the engine's pass: at the deadline.
    assert raw.status == "BREACHED"
    assert raw.breached_at == at(minutes=60)
    assert raw.next_fire_at == at(minutes=45)  # nothing fired yet: WARNING first
    clock = ClockView.of(raw, at(hours=5))
    assert clock.status == "BREACHED"
    assert clock.met is False
    assert clock.state == "breached"
    assert clock.remaining_text() == "overdue by 10 minutes"


def test_stopped_late_after_every_threshold_fired_needs_no_wake_up() -> None:
    raw = new_clock()
    raw.fired_count = 3
    stop(raw, at(minutes=70))
    assert raw.status == "BREACHED"
    assert raw.next_fire_at is None


def test_cancelled_in_time() -> None:
    clock = view(now=at(hours=5), stopped_at=at(minutes=10), cancelled=True)
    assert clock.status == "CANCELLED"
    assert clock.cancelled
    assert clock.met is None
    assert clock.state == "compliant"
    assert clock.elapsed == timedelta(minutes=10)


def test_cancelled_after_breach_keeps_breached() -> None:
    clock = view(now=at(hours=5), stopped_at=at(minutes=90), cancelled=True)
    assert clock.state == "breached"
    assert clock.status == "BREACHED"


def test_paused_clock_stands_still() -> None:
    raw = new_clock()
    pause(raw, at(minutes=20), "alice", "waiting on customer")
    assert raw.status == "PAUSED"
    # While paused the plan is unchanged (only closed pauses move it).
    assert raw.deadline == at(minutes=60)
    clock = ClockView.of(raw, at(hours=3))
    assert clock.running
    assert clock.status == "PAUSED"
    assert clock.state == "compliant"
    assert clock.elapsed == timedelta(minutes=20)
    assert clock.remaining == timedelta(minutes=40)
    resume(raw, at(minutes=50))
    assert raw.status == "ACTIVE"
    assert raw.deadline == at(minutes=90)
    assert ClockView.of(raw, at(minutes=75)).state == "warning"  # 45 min worked


@pytest.mark.parametrize(
    ("seconds", "state"),
    [(453_599, "compliant"), (574_559, "warning")],  # 1 s before 75 % and 95 % of 7 days
)
def test_threshold_not_reached_early_on_long_targets(seconds: int, state: str) -> None:
    assert view(target=10_080, now=at(seconds=seconds)).state == state


def test_reopen_shifted_deadline_continues_the_clock() -> None:
    # 60 min target; completed after 30 min, reopened 90 min later: the deadline moves by
    # the 90 minutes spent completed, and the clock goes on from 30 minutes used.
    completed, reopened = at(minutes=30), at(minutes=120)
    raw = new_clock()
    stop(raw, completed)
    assert raw.status == "MET"
    resume_after_reopen(raw, reopened)
    assert raw.status == "ACTIVE"
    assert raw.stopped_at is None
    assert raw.deadline == at(minutes=150)
    assert raw.warning_at == reopened + timedelta(minutes=15)
    clock = ClockView.of(raw, reopened + timedelta(minutes=10))
    assert clock.elapsed == timedelta(minutes=40)
    assert clock.remaining == timedelta(minutes=20)
    assert clock.percent == 66.67
    assert clock.state == "compliant"
    assert ClockView.of(raw, reopened + timedelta(minutes=16)).state == "warning"
    assert ClockView.of(raw, reopened + timedelta(minutes=31)).state == "breached"


def test_as_dict() -> None:
    assert view(now=at(minutes=46)).as_dict() == {
        "kind": "RESOLVE",
        "status": "ACTIVE",
        "state": "warning",
        "target_minutes": 60,
        "deadline": at(minutes=60),
        "stopped_at": None,
        "met": None,
        "elapsed_seconds": 2760,
        "remaining_seconds": 840,
        "percent_elapsed": 76.67,
    }


def test_worst_state() -> None:
    ok, warn, crit, late = (view(now=at(minutes=m)) for m in (1, 50, 58, 61))
    assert worst_state(ok, ok) == "compliant"
    assert worst_state(warn, ok) == "warning"
    assert worst_state(ok, crit, warn) == "critical"
    assert worst_state(late, crit) == "breached"


# --- property: against a brute-force computation --------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    target=st.integers(1, MAX_SLA_MINUTES),
    run1=st.integers(0, 4 * 10**7),
    gap=st.one_of(st.just(0), st.integers(0, 10**7)),
    run2=st.integers(0, 4 * 10**7),
    anchor=st.sampled_from([None, 75, 95, 100]),
    nudge=st.integers(-90, 90),
    how=st.sampled_from(["completed", "paused"]),
    ending=st.sampled_from(["running", "stopped", "paused"]),
    after_stop=st.integers(0, 10**7),
)
def test_clock_matches_brute_force(
    target: int,
    run1: int,
    gap: int,
    run2: int,
    anchor: int | None,
    nudge: int,
    how: str,
    ending: str,
    after_stop: int,
) -> None:
    """Run `run1` s, sit completed (or paused) `gap` s, run on `run2` s, maybe stop or
    pause, wait.

    With an `anchor`, the total run lands within `nudge` seconds of that threshold.
    """
    budget = target * 60
    if anchor is not None:
        run1 = min(run1, budget)
        run2 = max(0, budget * anchor // 100 + nudge - run1)
    first_end = T0 + timedelta(seconds=run1)
    reopened = first_end + timedelta(seconds=gap)
    end = reopened + timedelta(seconds=run2)

    raw = new_clock(target=target)
    if how == "completed":
        stop(raw, first_end)
        resume_after_reopen(raw, reopened)
    else:
        pause(raw, first_end, "alice", None)
        resume(raw, reopened)
    if ending == "stopped":
        stop(raw, end)
    elif ending == "paused":
        pause(raw, end, "alice", None)
    stopped = ending == "stopped"
    frozen = ending != "running"
    clock = ClockView.of(raw, end + timedelta(seconds=after_stop) if frozen else end)

    def due(seconds: int) -> datetime:
        # The instant `seconds` of running time have elapsed (24x7, the gap not counted).
        if seconds <= run1:
            return T0 + timedelta(seconds=seconds)
        return reopened + timedelta(seconds=seconds - run1)

    used = run1 + run2
    exact = Fraction(100) * Fraction(used, budget)
    deadline = due(budget)
    # A running (or paused) clock breaches at its deadline instant; a stopped one
    # only if it stopped after it. (Using exactly the budget before the gap and stopping
    # right after it is a breach: the deadline was the instant the gap began.)
    breached = end > deadline if stopped else end >= deadline
    if stopped:
        state = "breached" if breached else "compliant"
    else:
        state = (
            "breached"
            if breached
            else "critical"
            if exact >= 95
            else "warning"
            if exact >= 75
            else "compliant"
        )
    unbroken = "ACTIVE" if ending == "running" else "PAUSED" if ending == "paused" else "MET"
    warning_at = due(budget * 3 // 4)  # 45 * target: whole seconds
    critical_at = due(budget * 19 // 20)  # 57 * target

    assert raw.deadline == deadline
    assert raw.warning_at == warning_at
    assert raw.critical_at == critical_at
    # Nothing fired yet: the engine wakes for the warning unless the clock stood still first.
    assert raw.next_fire_at == (warning_at if not frozen or warning_at < end else None)
    assert clock.remaining == deadline - end
    assert clock.elapsed == timedelta(seconds=used)
    assert abs(Fraction(clock.percent) - exact) <= Fraction(1, 200) + Fraction(1, 10**9)
    assert clock.breached is breached
    assert clock.state == state
    assert clock.status == ("BREACHED" if breached else unbroken)
    assert clock.met == ((not breached) if stopped else None)


# --- the two clocks of a task ------------------------------------------------------------------


def clocks(
    now: datetime,
    *,
    acknowledged_at: datetime | None = None,
    started_at: datetime | None = None,
    completed_at: datetime | None = None,
    cancelled_at: datetime | None = None,
    start_minutes: int = 60,
    resolve_minutes: int = 240,
) -> tuple[ClockView, ClockView]:
    """A task's two clocks, moved as `on_task_changed` moves them when each change happens:
    the first response stops START, completion stops RESOLVE, cancellation stops both."""
    start = new_clock("START", start_minutes)
    resolve = new_clock("RESOLVE", resolve_minutes)
    responses = [t for t in (acknowledged_at, started_at) if t is not None]
    if responses:
        stop(start, min(responses))
    if completed_at is not None:
        stop(resolve, completed_at)
    if cancelled_at is not None:
        for clock in (start, resolve):
            stop(clock, cancelled_at, cancelled=True)
    return ClockView.of(start, now), ClockView.of(resolve, now)


def test_start_clock_stops_at_first_response() -> None:
    start, resolve = clocks(at(hours=1), acknowledged_at=at(minutes=20), started_at=at(minutes=10))
    assert start.stopped_at == at(minutes=10)
    assert start.status == "MET"
    assert start.elapsed == timedelta(minutes=10)
    assert start.kind == "START"
    assert resolve.kind == "RESOLVE"
    assert resolve.running
    assert resolve.status == "ACTIVE"


def test_cancel_before_response_cancels_both() -> None:
    start, resolve = clocks(at(hours=1), cancelled_at=at(minutes=30))
    assert (start.status, resolve.status) == ("CANCELLED", "CANCELLED")
    assert start.stopped_at == resolve.stopped_at == at(minutes=30)


def test_cancel_after_response_keeps_start_met() -> None:
    start, resolve = clocks(at(hours=9), started_at=at(minutes=5), cancelled_at=at(minutes=30))
    assert start.status == "MET"
    assert start.stopped_at == at(minutes=5)
    assert resolve.status == "CANCELLED"


def test_completion_stops_resolve() -> None:
    _, resolve = clocks(at(hours=9), started_at=at(minutes=5), completed_at=at(hours=2))
    assert resolve.stopped_at == at(hours=2)
    assert resolve.status == "MET"
    assert not resolve.cancelled


# --- sla_status ----------------------------------------------------------------------------


def test_status_fresh_task() -> None:
    status = sla_status(*clocks(at(minutes=30)), created_at=T0)
    assert status["state"] == "compliant"
    assert status["start_deadline"] == at(minutes=60)
    assert status["resolve_deadline"] == at(minutes=240)
    assert status["start_met"] is None
    assert status["resolve_met"] is None
    assert status["start_time_taken"] is None
    assert status["total_time"] is None
    assert status["start_time_remaining"] == "30 minutes"
    # While nobody responded, the next deadline that matters is the START one.
    assert status["time_remaining"] == "30 minutes"
    assert status["time_remaining_seconds"] == 1800
    assert status["at_risk"] is False
    assert status["breach_count"] == 0
    assert [c["kind"] for c in status["clocks"]] == ["START", "RESOLVE"]


def test_status_after_response() -> None:
    status = sla_status(*clocks(at(minutes=50), acknowledged_at=at(minutes=20)), created_at=T0)
    assert status["start_met"] is True
    assert status["start_time_taken"] == "20 minutes"
    assert status["start_time_remaining"] is None
    assert status["time_remaining"] == "3 hours 10 minutes"
    assert status["time_remaining_seconds"] == 11_400


def test_status_at_risk() -> None:
    status = sla_status(*clocks(at(minutes=50)), created_at=T0)
    assert status["state"] == "warning"
    assert status["at_risk"] is True


def test_status_at_risk_critical() -> None:
    status = sla_status(*clocks(at(minutes=58)), created_at=T0)
    assert status["state"] == "critical"
    assert status["at_risk"] is True


def test_status_start_breached() -> None:
    status = sla_status(*clocks(at(minutes=70)), created_at=T0)
    assert status["state"] == "breached"
    assert status["breach_count"] == 1
    assert status["start_time_remaining"] == "overdue by 10 minutes"
    assert status["time_remaining"] == "overdue by 10 minutes"
    assert status["time_remaining_seconds"] == -600
    assert status["at_risk"] is False  # breached is past risk


def test_status_both_breached() -> None:
    status = sla_status(*clocks(at(hours=5)), created_at=T0)
    assert status["breach_count"] == 2


def test_status_completed() -> None:
    status = sla_status(
        *clocks(at(hours=9), started_at=at(minutes=15), completed_at=at(hours=1, minutes=55)),
        created_at=T0,
    )
    assert status["state"] == "compliant"
    assert status["start_met"] is True
    assert status["resolve_met"] is True
    assert status["start_time_taken"] == "15 minutes"
    assert status["total_time"] == "1 hour 55 minutes"
    assert status["time_remaining"] is None
    assert status["time_remaining_seconds"] is None
    assert status["at_risk"] is False
    assert status["breach_count"] == 0


def test_status_completed_late() -> None:
    status = sla_status(
        *clocks(at(hours=9), started_at=at(minutes=15), completed_at=at(hours=5)),
        created_at=T0,
    )
    assert status["resolve_met"] is False
    assert status["state"] == "breached"
    assert status["breach_count"] == 1
    assert status["total_time"] == "5 hours"
    assert [c["status"] for c in status["clocks"]] == ["MET", "BREACHED"]


def test_status_responded_late_keeps_the_breach() -> None:
    status = sla_status(*clocks(at(hours=2), acknowledged_at=at(minutes=70)), created_at=T0)
    assert status["start_met"] is False
    assert status["state"] == "breached"
    assert status["breach_count"] == 1
    assert status["start_time_taken"] == "1 hour 10 minutes"
    assert status["start_time_remaining"] is None
    # RESOLVE is now the clock that matters: 4 h target, 2 h in.
    assert status["time_remaining"] == "2 hours"
    assert status["at_risk"] is False


def test_status_cancelled() -> None:
    status = sla_status(*clocks(at(hours=9), cancelled_at=at(minutes=10)), created_at=T0)
    assert status["start_met"] is None
    assert status["resolve_met"] is None
    assert status["start_time_taken"] is None
    assert status["total_time"] is None
    assert status["time_remaining"] is None
    assert status["time_remaining_seconds"] is None
    assert status["state"] == "compliant"
    assert status["breach_count"] == 0
    assert [c["status"] for c in status["clocks"]] == ["CANCELLED", "CANCELLED"]


def test_status_cancelled_after_both_deadlines() -> None:
    status = sla_status(*clocks(at(hours=9), cancelled_at=at(hours=5)), created_at=T0)
    assert status["state"] == "breached"
    assert status["breach_count"] == 2
    assert status["time_remaining"] is None
    assert [c["status"] for c in status["clocks"]] == ["BREACHED", "BREACHED"]


def test_status_cancelled_after_both_deadlines_took_no_time() -> None:
    status = sla_status(*clocks(at(hours=9), cancelled_at=at(hours=5)), created_at=T0)
    # Nobody responded and nothing was completed (as before clocks were rows).
    assert status["start_time_taken"] is None
    assert status["total_time"] is None


@settings(max_examples=300, deadline=None)
@given(
    started=st.integers(min_value=-(10**12), max_value=10**12),
    stands=st.integers(min_value=-(10**12), max_value=10**12),
    target=st.integers(min_value=1, max_value=MAX_SLA_MINUTES),
)
def test_an_unpaused_24x7_clock_counts_what_the_calendar_counts(
    started: int, stands: int, target: int
) -> None:
    """A view of a never-paused 24x7 clock skips the calendar's walk: its working time is
    still exactly what working_seconds sums, to the microsecond, before and after the start."""
    start = T0 + timedelta(microseconds=started)
    now = T0 + timedelta(microseconds=stands)
    clock = new_clock(target=target, started_at=start)
    expected = working_seconds(BusinessCalendar.always(), start, max(now, start))
    assert ClockView.of(clock, now).working_elapsed == timedelta(seconds=expected)
