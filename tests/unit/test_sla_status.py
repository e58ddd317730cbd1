"""Where an SLA clock stands at an instant (pure), and the `sla_status` block built from it.

Thresholds per SPEC §2: WARNING at 75 % of the target elapsed, CRITICAL at 95 %, breach at
100 %; a breached clock that later stops keeps BREACHED.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsflow.sla.defaults import MAX_SLA_MINUTES
from opsflow.sla.status import ClockView, clocks_for, sla_status, worst_state

T0 = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)


def at(**kwargs: float) -> datetime:
    return T0 + timedelta(**kwargs)


def view(
    *,
    target: int = 60,
    now: datetime,
    stopped_at: datetime | None = None,
    cancelled: bool = False,
    deadline: datetime | None = None,
) -> ClockView:
    return ClockView(
        "RESOLVE",
        target,
        deadline or T0 + timedelta(minutes=target),
        stopped_at,
        cancelled=cancelled,
        now=now,
    )


# --- single clock ------------------------------------------------------------------------------


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
        (timedelta(minutes=60, seconds=1), "breached"),
    ],
)
def test_thresholds(elapsed: timedelta, state: str) -> None:
    assert view(now=T0 + elapsed).state == state


def test_running_clock_past_deadline_is_breached() -> None:
    clock = view(now=at(minutes=75))
    assert clock.breached
    assert clock.status == "BREACHED"
    assert clock.state == "breached"
    assert clock.met is None
    assert clock.remaining == timedelta(minutes=-15)
    assert clock.percent == 125.0
    assert clock.remaining_text() == "overdue by 15 minutes"


def test_running_clock_at_its_deadline_is_breached() -> None:
    clock = view(now=at(minutes=60))
    assert clock.percent == 100.0
    assert clock.state == "breached"
    assert clock.status == "BREACHED"


def test_met_clock_freezes() -> None:
    clock = view(now=at(hours=5), stopped_at=at(minutes=40))
    assert not clock.running
    assert clock.status == "MET"
    assert clock.met is True
    assert clock.state == "compliant"
    assert clock.remaining == timedelta(minutes=20)
    assert clock.percent == 66.67


def test_stopping_at_the_deadline_meets_it() -> None:
    clock = view(now=at(hours=5), stopped_at=at(minutes=60))
    assert clock.met is True
    assert clock.status == "MET"


def test_stopped_in_warning_zone_is_no_longer_at_risk() -> None:
    assert view(now=at(minutes=58), stopped_at=at(minutes=50)).state == "compliant"


def test_stopped_late_stays_breached() -> None:
    clock = view(now=at(hours=5), stopped_at=at(minutes=70))
    assert clock.status == "BREACHED"
    assert clock.met is False
    assert clock.state == "breached"
    assert clock.remaining_text() == "overdue by 10 minutes"


def test_cancelled_in_time() -> None:
    clock = view(now=at(hours=5), stopped_at=at(minutes=10), cancelled=True)
    assert clock.status == "CANCELLED"
    assert clock.met is None
    assert clock.state == "compliant"


def test_cancelled_after_breach_keeps_breached() -> None:
    clock = view(now=at(hours=5), stopped_at=at(minutes=90), cancelled=True)
    assert clock.state == "breached"
    assert clock.status == "BREACHED"


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
    shifted = T0 + timedelta(minutes=60) + (reopened - completed)
    clock = view(now=reopened + timedelta(minutes=10), deadline=shifted)
    assert clock.elapsed == timedelta(minutes=40)
    assert clock.remaining == timedelta(minutes=20)
    assert clock.percent == 66.67
    assert clock.state == "compliant"
    assert view(now=reopened + timedelta(minutes=16), deadline=shifted).state == "warning"
    assert view(now=reopened + timedelta(minutes=31), deadline=shifted).state == "breached"


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
    stopped=st.booleans(),
    after_stop=st.integers(0, 10**7),
)
def test_clock_matches_brute_force(
    target: int,
    run1: int,
    gap: int,
    run2: int,
    anchor: int | None,
    nudge: int,
    stopped: bool,
    after_stop: int,
) -> None:
    """Run `run1` s, sit completed `gap` s, reopen and run `run2` s, maybe stop, wait.

    With an `anchor`, the total run lands within `nudge` seconds of that threshold.
    """
    budget = target * 60
    if anchor is not None:
        run1 = min(run1, budget)
        run2 = max(0, budget * anchor // 100 + nudge - run1)
    reopened = T0 + timedelta(seconds=run1 + gap)
    end = reopened + timedelta(seconds=run2)
    deadline = T0 + timedelta(seconds=budget + gap)  # the reopen shift
    clock = view(
        target=target,
        deadline=deadline,
        stopped_at=end if stopped else None,
        now=end + timedelta(seconds=after_stop) if stopped else end,
    )

    used = sum(
        (stop - start).total_seconds()
        for start, stop in [(T0, T0 + timedelta(seconds=run1)), (reopened, end)]
    )
    exact = Fraction(100) * Fraction(int(used), budget)
    # SPEC §2: a running clock breaches at 100 %; a stopped one only if it ran past it.
    breached = used > budget if stopped else used >= budget
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

    assert clock.remaining == timedelta(seconds=budget - used)
    assert clock.elapsed == timedelta(seconds=used)
    assert abs(Fraction(clock.percent) - exact) <= Fraction(1, 200) + Fraction(1, 10**9)
    assert clock.breached is breached
    assert clock.state == state
    assert clock.status == ("BREACHED" if breached else "MET" if stopped else "ACTIVE")
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
    return clocks_for(
        created_at=T0,
        start_sla_minutes=start_minutes,
        resolve_sla_minutes=resolve_minutes,
        start_deadline=T0 + timedelta(minutes=start_minutes),
        resolve_deadline=T0 + timedelta(minutes=resolve_minutes),
        acknowledged_at=acknowledged_at,
        started_at=started_at,
        completed_at=completed_at,
        cancelled_at=cancelled_at,
        now=now,
    )


def test_start_clock_stops_at_first_response() -> None:
    start, resolve = clocks(at(hours=1), acknowledged_at=at(minutes=20), started_at=at(minutes=10))
    assert start.stopped_at == at(minutes=10)
    assert start.kind == "START"
    assert resolve.kind == "RESOLVE"
    assert resolve.running


def test_cancel_before_response_cancels_both() -> None:
    start, resolve = clocks(at(hours=1), cancelled_at=at(minutes=30))
    assert (start.status, resolve.status) == ("CANCELLED", "CANCELLED")
    assert start.stopped_at == resolve.stopped_at == at(minutes=30)


def test_cancel_after_response_keeps_start_met() -> None:
    start, resolve = clocks(at(hours=9), started_at=at(minutes=5), cancelled_at=at(minutes=30))
    assert start.status == "MET"
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


def test_status_completed_late() -> None:
    status = sla_status(
        *clocks(at(hours=9), started_at=at(minutes=15), completed_at=at(hours=5)),
        created_at=T0,
    )
    assert status["resolve_met"] is False
    assert status["state"] == "breached"
    assert status["breach_count"] == 1
    assert status["total_time"] == "5 hours"


def test_status_cancelled() -> None:
    status = sla_status(*clocks(at(hours=9), cancelled_at=at(minutes=10)), created_at=T0)
    assert status["start_met"] is None
    assert status["resolve_met"] is None
    assert status["start_time_taken"] is None
    assert status["total_time"] is None
    assert status["time_remaining"] is None
    assert status["state"] == "compliant"
    assert [c["status"] for c in status["clocks"]] == ["CANCELLED", "CANCELLED"]
