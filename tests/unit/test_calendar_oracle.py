"""Business calendars against a brute-force oracle (hypothesis).

The oracle is the definition of working time, applied one UTC minute at a time and sharing no
code with the implementation:

    a UTC minute [m, m+1) is working iff m, converted to the calendar's local time, falls on a
    non-holiday date, on a configured weekday, inside one of that day's [start, end) intervals
    (end == 00:00 meaning midnight at the end of the day); it is paused iff a pause
    [p_start, p_end) (p_end None: never ending) contains m.

Inputs are minute-granular (interval bounds on quarter hours, zones whose offsets are whole
minutes), so the exact working set is a union of whole minutes and the oracle's count times 60
must equal the implementation's seconds exactly. Starts are drawn from windows around DST
transitions, including half-hour DST (Lord Howe) and transitions at midnight (Sao Paulo 2018/19).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from opsflow.sla.calendar import (
    BusinessCalendar,
    Pause,
    add_working_time,
    explain,
    threshold_instants,
    working_intervals,
    working_seconds,
)

ZONES = [
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "UTC",
    "America/Sao_Paulo",
]
# (first day, days): each holds a DST transition of at least one zone above.
WINDOWS = [
    (date(2026, 3, 1), 12),  # New York springs forward 03-08
    (date(2026, 3, 25), 16),  # Paris 03-29, Lord Howe falls back half an hour 04-05
    (date(2026, 9, 28), 10),  # Lord Howe springs forward 10-04
    (date(2026, 10, 20), 16),  # Paris 10-25, New York 11-01
    (date(2018, 10, 28), 11),  # Sao Paulo springs forward at midnight 11-04
    (date(2019, 2, 10), 10),  # Sao Paulo falls back across midnight 02-17
]
HORIZON_MINUTES = 10 * 24 * 60  # the oracle never looks further than this
MINUTE = timedelta(minutes=1)
SETTINGS = settings(max_examples=200, deadline=None)


@dataclass(frozen=True)
class Spec:
    """A calendar as plain data, for the oracle (which must not trust the implementation)."""

    zone: str
    hours: dict[int, list[tuple[time, time]]]
    holidays: frozenset[date]

    def calendar(self) -> BusinessCalendar:
        return BusinessCalendar("random", self.zone, self.hours, self.holidays)


def _quarter(index: int) -> time:
    return time(0) if index == 96 else time(index // 4, index % 4 * 15)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Spec, datetime]:
    first_day, days = draw(st.sampled_from(WINDOWS))
    zone = draw(st.sampled_from(ZONES))
    hours: dict[int, list[tuple[time, time]]] = {}
    for weekday in sorted(draw(st.sets(st.integers(0, 6), min_size=1))):
        count = draw(st.integers(1, 2))
        bounds = sorted(draw(st.sets(st.integers(0, 96), min_size=2 * count, max_size=2 * count)))
        if count == 2 and draw(st.booleans()):
            bounds[2] = bounds[1]  # the second interval starts where the first one ends
        pairs = zip(bounds[::2], bounds[1::2], strict=True)
        hours[weekday] = [(_quarter(a), _quarter(b)) for a, b in pairs]
    holidays = draw(
        st.frozensets(st.dates(first_day, first_day + timedelta(days=days + 10)), max_size=3)
    )
    offset = draw(st.integers(0, days * 24 * 60))
    start = datetime.combine(first_day, time(0), UTC) + offset * MINUTE
    return Spec(zone, hours, holidays), start


pause_lists = st.lists(
    st.tuples(st.integers(-600, HORIZON_MINUTES), st.none() | st.integers(0, 3000)),
    max_size=3,
)


def _pauses(start: datetime, drawn: Sequence[tuple[int, int | None]]) -> list[Pause]:
    return [
        (start + a * MINUTE, None if length is None else start + (a + length) * MINUTE)
        for a, length in drawn
    ]


# --- the oracle -----------------------------------------------------------------------------


def oracle_minutes(
    spec: Spec, start: datetime, pauses: Sequence[Pause] = ()
) -> Iterator[tuple[bool, bool]]:
    """(working, paused) for each UTC minute from ``start`` on, one minute at a time."""
    zone = ZoneInfo(spec.zone)
    minute = start
    while True:
        wall = minute.astimezone(zone)
        clock = wall.time()
        working = wall.date() not in spec.holidays and any(
            a <= clock and (b == time(0) or clock < b)
            for a, b in spec.hours.get(wall.weekday(), [])
        )
        paused = any(a <= minute and (b is None or minute < b) for a, b in pauses)
        yield working, paused
        minute += MINUTE


def oracle_counts(
    spec: Spec, start: datetime, minutes: int, pauses: Sequence[Pause] = ()
) -> list[bool]:
    """For each of the ``minutes`` minutes from ``start``: does it count against the target?"""
    flags = islice(oracle_minutes(spec, start, pauses), minutes)
    return [working and not paused for working, paused in flags]


def oracle_deadline(
    spec: Spec, start: datetime, target: int, pauses: Sequence[Pause]
) -> tuple[datetime | None, int]:
    """End of the minute in which the ``target``-th counting minute elapses, if that happens
    within the horizon (else None), and how many minutes counted up to then."""
    if target == 0:
        return start, 0
    seen = 0
    flags = islice(oracle_minutes(spec, start, pauses), HORIZON_MINUTES)
    for index, (working, paused) in enumerate(flags):
        seen += working and not paused
        if seen == target:
            return start + (index + 1) * MINUTE, seen
    return None, seen


def _deadline_or_error(
    cal: BusinessCalendar, start: datetime, seconds: float, pauses: Sequence[Pause]
) -> datetime | str:
    try:
        return add_working_time(cal, start, seconds, pauses)
    except ValueError as exc:
        return str(exc)


# --- properties -----------------------------------------------------------------------------


@SETTINGS
@given(case=cases(), target=st.integers(0, 3000), drawn=pause_lists)
def test_add_working_time_matches_the_oracle(
    case: tuple[Spec, datetime], target: int, drawn: list[tuple[int, int | None]]
) -> None:
    spec, start = case
    cal, pauses = spec.calendar(), _pauses(start, drawn)
    expected, counted = oracle_deadline(spec, start, target, pauses)
    horizon = start + HORIZON_MINUTES * MINUTE
    open_before_horizon = any(b is None and a < horizon for a, b in pauses)

    if expected is not None:
        event("deadline within the horizon")
        assert add_working_time(cal, start, target * 60, pauses) == expected
    elif open_before_horizon:
        event("an open pause stops the clock")
        # Nothing counts after the open pause begins, and not enough counted before it.
        with pytest.raises(ValueError, match="never reaches"):
            add_working_time(cal, start, target * 60, pauses)
    else:
        # Too little working time within the horizon: the deadline lies beyond it — or, when
        # an open pause begins after the horizon before enough has counted, never comes.
        event("deadline beyond the horizon")
        outcome = _deadline_or_error(cal, start, target * 60, pauses)
        if isinstance(outcome, str):
            assert any(b is None for _, b in pauses), outcome
            assert "a pause never ends" in outcome
        else:
            assert outcome > horizon
        assert working_seconds(cal, start, horizon, pauses) == counted * 60


@SETTINGS
@given(case=cases(), minutes=st.integers(0, HORIZON_MINUTES), drawn=pause_lists)
def test_working_seconds_matches_the_oracle(
    case: tuple[Spec, datetime], minutes: int, drawn: list[tuple[int, int | None]]
) -> None:
    spec, start = case
    cal, pauses = spec.calendar(), _pauses(start, drawn)
    end = start + minutes * MINUTE

    flags = list(islice(oracle_minutes(spec, start, pauses), minutes))
    gross = sum(working for working, _ in flags)
    net = sum(working and not paused for working, paused in flags)

    assert working_seconds(cal, start, end) == gross * 60
    assert working_seconds(cal, start, end, pauses) == net * 60
    assert explain(cal, start, end, pauses) == {
        "working_seconds": net * 60,
        "paused_seconds": (gross - net) * 60,
        "outside_hours_seconds": (minutes - gross) * 60,
    }


@SETTINGS
@given(case=cases(), minutes=st.integers(0, 3 * 24 * 60))
def test_working_intervals_match_the_oracle_minute_by_minute(
    case: tuple[Spec, datetime], minutes: int
) -> None:
    spec, start = case
    end = start + minutes * MINUTE
    found = list(working_intervals(spec.calendar(), start, end))

    for (a, b), (c, _) in pairwise(found):
        assert a < b < c  # sorted, disjoint, and touching intervals are merged
    assert all(start <= a and b <= end and a.tzinfo is UTC for a, b in found)
    inside = [
        any(a <= m < b for a, b in found) for m in (start + i * MINUTE for i in range(minutes))
    ]
    assert inside == oracle_counts(spec, start, minutes)


@settings(max_examples=100, deadline=None)
@given(
    case=cases(),
    target=st.integers(0, 3000),
    percents=st.lists(st.sampled_from([0, 25, 50, 75, 95, 100, 150]), max_size=5),
    drawn=pause_lists.map(
        lambda ps: [(a, length if length is not None else 0) for a, length in ps]
    ),
)
def test_thresholds_are_add_working_time_at_each_percent(
    case: tuple[Spec, datetime], target: int, percents: list[int], drawn: list[tuple[int, int]]
) -> None:
    spec, start = case
    cal, pauses = spec.calendar(), _pauses(start, drawn)
    instants = threshold_instants(cal, start, target, percents, pauses)
    assert instants == {
        p: add_working_time(cal, start, target * 60 * p / 100, pauses) for p in percents
    }
    ordered = [instants[p] for p in sorted(set(percents))]
    assert ordered == sorted(ordered)
