"""Business calendars (pure): worked examples, DST edges, validation, a year-long target.

The property tests against a brute-force minute-by-minute oracle are in
``test_calendar_oracle.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from opsflow.sla.calendar import (
    BusinessCalendar,
    add_working_time,
    explain,
    threshold_instants,
    working_intervals,
    working_seconds,
)

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
ALWAYS = BusinessCalendar.always()
MINUTE = 60.0
HOUR = 3600.0


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0
) -> datetime:
    """A local wall-clock reading as an aware UTC instant."""
    return datetime(year, month, day, hour, minute, tzinfo=zone).astimezone(UTC)


def office(zone: str = "Europe/London", holidays: Iterable[date] = ()) -> BusinessCalendar:
    return BusinessCalendar.weekly("office", zone, time(9), time(17), holidays=holidays)


def sunday(zone: str, start: time, end: time) -> BusinessCalendar:
    return BusinessCalendar("sunday", zone, {6: [(start, end)]})


def intervals(cal: BusinessCalendar, start: datetime, end: datetime) -> list[tuple[str, str]]:
    return [
        (a.strftime("%m-%d %H:%M"), b.strftime("%m-%d %H:%M"))
        for a, b in working_intervals(cal, start, end)
    ]


# --- worked examples -----------------------------------------------------------------------

FRIDAY = date(2026, 1, 30)


@pytest.mark.parametrize("zone", [LONDON, NEW_YORK], ids=["london", "new_york"])
def test_friday_1630_with_60_minutes_breaches_monday_0930(zone: ZoneInfo) -> None:
    cal = office(zone.key)
    created = local(zone, 2026, 1, 30, 16, 30)

    deadline = add_working_time(cal, created, 60 * MINUTE)

    assert deadline == local(zone, 2026, 2, 2, 9, 30)
    assert deadline.tzinfo is UTC
    assert working_seconds(cal, created, deadline) == 60 * MINUTE


def test_the_deadline_is_where_the_last_minute_ends_not_where_the_next_day_starts() -> None:
    cal = office()
    assert add_working_time(cal, utc(2026, 1, 30, 16, 30), 30 * MINUTE) == utc(2026, 1, 30, 17)


def test_new_york_deadline_in_utc() -> None:
    deadline = add_working_time(office("America/New_York"), utc(2026, 1, 30, 21, 30), HOUR)
    assert deadline == utc(2026, 2, 2, 14, 30)  # Monday 09:30 EST


def test_24x7_with_15_minutes() -> None:
    created = utc(2026, 1, 30, 16, 30)
    assert add_working_time(ALWAYS, created, 15 * MINUTE) == utc(2026, 1, 30, 16, 45)
    assert ALWAYS.is_always
    assert ALWAYS.name == "24x7"


def test_a_holiday_on_the_monday_moves_the_deadline_to_tuesday() -> None:
    cal = office(holidays=[date(2026, 2, 2)])
    assert add_working_time(cal, utc(2026, 1, 30, 16, 30), HOUR) == utc(2026, 2, 3, 9, 30)


def test_a_holiday_removes_the_whole_local_date() -> None:
    cal = office("America/New_York", holidays=[date(2026, 2, 2)])
    monday = local(NEW_YORK, 2026, 2, 2)
    assert working_seconds(cal, monday, monday + timedelta(days=1)) == 0.0
    assert working_seconds(cal, monday, monday + timedelta(days=2)) == 8 * HOUR


def test_pauses_shift_the_deadline_by_the_paused_working_time_only() -> None:
    cal = office()
    created = utc(2026, 1, 30, 16, 30)
    # Friday 16:45 -> Monday 09:15: 15 working minutes on Friday, 15 on Monday.
    pause = (utc(2026, 1, 30, 16, 45), utc(2026, 2, 2, 9, 15))
    assert add_working_time(cal, created, HOUR, [pause]) == utc(2026, 2, 2, 10)
    # A pause over the weekend takes nothing the calendar had not already taken.
    weekend = (utc(2026, 1, 31, 10), utc(2026, 2, 1, 20))
    assert add_working_time(cal, created, HOUR, [weekend]) == utc(2026, 2, 2, 9, 30)


def test_pauses_may_overlap_start_early_and_be_open() -> None:
    created = utc(2026, 1, 30, 12)
    pauses = [
        (utc(2026, 1, 30, 11), utc(2026, 1, 30, 12, 5)),  # started before the clock
        (utc(2026, 1, 30, 12, 10), utc(2026, 1, 30, 12, 20)),
        (utc(2026, 1, 30, 12, 15), utc(2026, 1, 30, 12, 25)),  # overlaps the previous one
    ]
    # 5 + 15 paused minutes push a 15-minute target from 12:15 to 12:35.
    assert add_working_time(ALWAYS, created, 15 * MINUTE, pauses) == utc(2026, 1, 30, 12, 35)
    open_pause = [(utc(2026, 1, 30, 12, 10), None)]
    assert working_seconds(ALWAYS, created, utc(2026, 1, 30, 13), open_pause) == 10 * MINUTE
    assert add_working_time(ALWAYS, created, 10 * MINUTE, open_pause) == utc(2026, 1, 30, 12, 10)
    with pytest.raises(ValueError, match="never reaches"):
        add_working_time(ALWAYS, created, 11 * MINUTE, open_pause)
    with pytest.raises(ValueError, match="never reaches"):
        add_working_time(office(), created, 11 * MINUTE, open_pause)


def test_zero_seconds_is_the_start_itself() -> None:
    saturday = utc(2026, 1, 31, 12)
    assert add_working_time(office(), saturday, 0) == saturday
    assert add_working_time(ALWAYS, saturday, 0, [(saturday, None)]) == saturday


def test_thresholds_of_a_15_minute_24x7_target() -> None:
    created = utc(2026, 1, 30, 16, 30)
    instants = threshold_instants(ALWAYS, created, 15, [75, 95, 100])
    assert instants == {
        75: created + timedelta(minutes=11, seconds=15),
        95: created + timedelta(minutes=14, seconds=15),
        100: created + timedelta(minutes=15),
    }


def test_thresholds_follow_working_time() -> None:
    cal = office()
    created = utc(2026, 1, 30, 16, 30)
    instants = threshold_instants(cal, created, 60, [100, 50, 75, 150])
    assert list(instants) == [100, 50, 75, 150]
    assert instants[50] == utc(2026, 1, 30, 17)
    assert instants[75] == utc(2026, 2, 2, 9, 15)
    assert instants[100] == utc(2026, 2, 2, 9, 30)
    assert instants[150] == utc(2026, 2, 2, 10)
    for percent, instant in instants.items():
        assert instant == add_working_time(cal, created, 60 * 60 * percent / 100)


def test_explain_splits_the_elapsed_time() -> None:
    cal = office()
    created, now = utc(2026, 1, 30, 16, 30), utc(2026, 2, 2, 10)
    pause = (utc(2026, 1, 30, 16, 45), utc(2026, 2, 2, 9, 15))
    result = explain(cal, created, now, [pause])
    assert result == {
        "working_seconds": 60 * MINUTE,  # 16:30-16:45 and 09:15-10:00
        "paused_seconds": 30 * MINUTE,  # 16:45-17:00 and 09:00-09:15
        "outside_hours_seconds": 64 * HOUR,  # Friday 17:00 -> Monday 09:00
    }
    assert sum(result.values()) == (now - created).total_seconds()
    assert explain(cal, now, created) == dict.fromkeys(result, 0.0)


def test_aware_non_utc_input_is_accepted_and_the_output_is_utc() -> None:
    paris = datetime(2026, 1, 30, 17, 30, tzinfo=ZoneInfo("Europe/Paris"))
    deadline = add_working_time(office(), paris, HOUR)
    assert deadline == utc(2026, 2, 2, 9, 30)
    assert deadline.tzinfo is UTC
    plus_two = datetime(2026, 1, 30, 18, 30, tzinfo=timezone(timedelta(hours=2)))
    assert working_seconds(office(), plus_two, utc(2026, 1, 30, 17)) == 30 * MINUTE


# --- intervals ------------------------------------------------------------------------------


def test_working_intervals_are_clipped_and_in_utc() -> None:
    cal = office("America/New_York")
    assert intervals(cal, utc(2026, 1, 30, 15), utc(2026, 2, 3, 0)) == [
        ("01-30 15:00", "01-30 22:00"),
        ("02-02 14:00", "02-02 22:00"),
    ]
    assert intervals(cal, utc(2026, 2, 3), utc(2026, 2, 3)) == []
    assert intervals(cal, utc(2026, 2, 4), utc(2026, 2, 3)) == []


def test_an_interval_ending_at_midnight_belongs_to_its_own_weekday() -> None:
    # Friday 22:00-24:00 and Monday 00:00-02:00; Friday is a holiday.
    hours = {4: [(time(22), time(0))], 0: [(time(0), time(2))]}
    cal = BusinessCalendar("nights", "UTC", hours)
    assert intervals(cal, utc(2026, 1, 29), utc(2026, 2, 3)) == [
        ("01-30 22:00", "01-31 00:00"),
        ("02-02 00:00", "02-02 02:00"),
    ]
    off = BusinessCalendar("nights", "UTC", hours, frozenset({date(2026, 1, 30)}))
    assert intervals(off, utc(2026, 1, 29), utc(2026, 2, 3)) == [("02-02 00:00", "02-02 02:00")]


def test_touching_intervals_merge_across_midnight() -> None:
    hours = {0: [(time(20), time(0))], 1: [(time(0), time(4)), (time(4), time(6))]}
    cal = BusinessCalendar("late", "Asia/Kolkata", hours)
    assert intervals(cal, utc(2026, 2, 1), utc(2026, 2, 4)) == [("02-02 14:30", "02-03 00:30")]


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Pacific/Kiritimati", "America/New_York"])
def test_night_shifts_merge_into_one_interval_per_night_over_many_weeks(zone: str) -> None:
    # Every night 20:00-24:00 then 00:00-02:00 the next day: one 6-hour interval per night,
    # whatever the offset (Kiritimati is UTC+14) and wherever the weekly batches fall.
    shifts = ((time(0), time(2)), (time(20), time(0)))
    nights = BusinessCalendar("nights", zone, dict.fromkeys(range(7), shifts))
    start = local(ZoneInfo(zone), 2026, 1, 1, 12)
    found = list(working_intervals(nights, start, start + timedelta(days=60)))
    assert len(found) == 60
    assert all(b - a == timedelta(hours=6) for a, b in found)
    assert all(b < c for (_, b), (c, _) in pairwise(found))


def test_a_whole_week_calendar_is_24x7() -> None:
    split = {day: [(time(0), time(12)), (time(12), time(0))] for day in range(7)}
    cal = BusinessCalendar("split", "Australia/Lord_Howe", split)
    assert cal.is_always
    start = utc(2026, 4, 4)  # Lord Howe's clocks go back half an hour that night
    assert working_seconds(cal, start, start + timedelta(days=2)) == 48 * HOUR
    assert not BusinessCalendar("x", "UTC", split, frozenset({date(2026, 1, 1)})).is_always
    assert not office().is_always


# --- daylight saving time -------------------------------------------------------------------


def test_spring_forward_shortens_an_interval_spanning_the_gap() -> None:
    cal = sunday("Europe/Paris", time(1), time(4))  # 02:00 -> 03:00 on 2026-03-29
    day = utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)
    assert working_seconds(cal, *day) == 2 * HOUR
    assert intervals(cal, *day) == [("03-29 00:00", "03-29 02:00")]


def test_fall_back_counts_the_repeated_hour_twice() -> None:
    cal = sunday("Europe/Paris", time(1), time(4))  # 03:00 -> 02:00 on 2026-10-25
    day = utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)
    assert working_seconds(cal, *day) == 4 * HOUR
    assert intervals(cal, *day) == [("10-24 23:00", "10-25 03:00")]


def test_an_interval_inside_the_repeated_hour_happens_twice() -> None:
    cal = sunday("Europe/Paris", time(2, 30), time(2, 45))
    assert intervals(cal, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)) == [
        ("10-25 00:30", "10-25 00:45"),  # 02:30 CEST
        ("10-25 01:30", "10-25 01:45"),  # 02:30 CET
    ]


def test_a_boundary_inside_the_repeated_hour_counts_each_occurrence_inside_it() -> None:
    # 02:30-04:00: the first 02:30-03:00 (CEST), then 02:30-04:00 again (CET) after the jump
    # back from 03:00 to 02:00; the CET 02:00-02:30 is outside the interval.
    cal = sunday("Europe/Paris", time(2, 30), time(4))
    assert intervals(cal, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)) == [
        ("10-25 00:30", "10-25 01:00"),
        ("10-25 01:30", "10-25 03:00"),
    ]


def test_an_interval_inside_the_gap_is_empty_that_day() -> None:
    cal = sunday("Europe/Paris", time(2, 15), time(2, 45))
    assert working_seconds(cal, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)) == 0.0
    assert working_seconds(cal, utc(2026, 3, 21, 12), utc(2026, 3, 22, 12)) == 30 * MINUTE


def test_a_start_inside_the_gap_maps_to_the_jump() -> None:
    cal = sunday("Europe/Paris", time(2, 30), time(5))
    assert intervals(cal, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)) == [
        ("03-29 01:00", "03-29 03:00")  # 03:00-05:00 CEST
    ]


def test_half_hour_dst_on_lord_howe() -> None:
    # 2026-04-05 02:00 (+11) -> 01:30 (+10:30): 01:30-02:00 happens twice.
    cal = sunday("Australia/Lord_Howe", time(1), time(3))
    assert working_seconds(cal, utc(2026, 4, 4), utc(2026, 4, 5)) == 2.5 * HOUR


def test_sao_paulo_spring_forward_at_midnight() -> None:
    # 2018-11-04 00:00 (-03) -> 01:00 (-02): Sunday starts at 01:00.
    cal = sunday("America/Sao_Paulo", time(0), time(2))
    assert intervals(cal, utc(2018, 11, 3, 12), utc(2018, 11, 5)) == [
        ("11-04 03:00", "11-04 04:00")
    ]


def test_sao_paulo_fall_back_across_midnight() -> None:
    # 2019-02-17 00:00 (-02) -> 2019-02-16 23:00 (-03): Saturday 23:00-24:00 happens twice.
    hours = {5: [(time(23), time(0))], 6: [(time(0), time(1))]}
    cal = BusinessCalendar("late", "America/Sao_Paulo", hours)
    assert intervals(cal, utc(2019, 2, 16, 12), utc(2019, 2, 17, 12)) == [
        ("02-17 01:00", "02-17 04:00")
    ]
    saturday_only = BusinessCalendar("late", "America/Sao_Paulo", {5: [(time(23), time(0))]})
    assert working_seconds(saturday_only, utc(2019, 2, 16, 12), utc(2019, 2, 17, 12)) == 2 * HOUR


def test_24x7_never_goes_through_local_time() -> None:
    start = utc(2026, 10, 24, 12)
    assert working_seconds(ALWAYS, start, start + timedelta(days=2)) == 48 * HOUR
    assert add_working_time(ALWAYS, start, 48 * HOUR) == start + timedelta(days=2)


def test_office_hours_follow_local_time_across_dst() -> None:
    cal = office()
    # Monday 2026-03-30 is in BST: 09:00 London is 08:00 UTC.
    assert add_working_time(cal, utc(2026, 3, 27, 16, 30), HOUR) == utc(2026, 3, 30, 8, 30)


# --- a year of working time -----------------------------------------------------------------


def test_a_year_of_working_minutes_on_a_9_to_5_calendar() -> None:
    cal = office()
    created = local(LONDON, 2026, 1, 30, 16, 30)
    target = 525_600 * MINUTE  # 8760 h = 219 weeks of 40 h

    deadline = add_working_time(cal, created, target)

    assert deadline == local(LONDON, 2030, 4, 12, 16, 30)  # Friday, 219 weeks later, in BST
    assert deadline - created == timedelta(weeks=219, hours=-1)
    assert working_seconds(cal, created, deadline) == target


def test_a_year_with_holidays_and_pauses_stays_consistent() -> None:
    holidays = [date(year, month, day) for year in range(2026, 2032) for month, day in ((1, 1),)]
    cal = office("America/New_York", holidays=holidays)
    created = utc(2026, 1, 30, 21, 30)
    pauses = [(utc(2027, 6, 1), utc(2027, 7, 1)), (utc(2027, 6, 15), utc(2027, 8, 1))]
    deadline = add_working_time(cal, created, 525_600 * MINUTE, pauses)
    assert working_seconds(cal, created, deadline, pauses) == 525_600 * MINUTE
    assert timedelta(weeks=219) < deadline - created < timedelta(weeks=235)


# --- validation -----------------------------------------------------------------------------

NAIVE = datetime(2026, 1, 30, 16, 30)


@pytest.mark.parametrize(
    "call",
    [
        lambda: add_working_time(ALWAYS, NAIVE, 60),
        lambda: working_seconds(ALWAYS, NAIVE, utc(2026, 2, 1)),
        lambda: working_seconds(ALWAYS, utc(2026, 1, 1), NAIVE),
        lambda: working_seconds(ALWAYS, utc(2026, 1, 1), utc(2026, 2, 1), [(NAIVE, None)]),
        lambda: working_seconds(
            ALWAYS, utc(2026, 1, 1), utc(2026, 2, 1), [(utc(2026, 1, 2), NAIVE)]
        ),
        lambda: working_intervals(office(), NAIVE, utc(2026, 2, 1)),
        lambda: threshold_instants(ALWAYS, NAIVE, 15, [75]),
        lambda: explain(ALWAYS, utc(2026, 1, 1), NAIVE),
    ],
)
def test_naive_datetimes_are_rejected(call: object) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call()  # type: ignore[operator]


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../etc/passwd", "Europe/"])
def test_unknown_time_zone(zone: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        office(zone)


@pytest.mark.parametrize(
    ("intervals_", "message"),
    [
        ([(time(9), time(12)), (time(11), time(17))], "must not overlap"),
        ([(time(13), time(17)), (time(9), time(12))], "sorted"),
        ([(time(9), time(0)), (time(10), time(11))], "must not overlap"),
        ([(time(17), time(9))], "must end after it starts"),
        ([(time(9), time(9))], "must end after it starts"),
        ([(time(9), time(17), time(18))], "pair"),
        ([("09:00", "17:00")], "times"),
        ([(time(9, tzinfo=UTC), time(17))], "local wall-clock"),
    ],
)
def test_bad_intervals(intervals_: list[tuple[time, time]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessCalendar("bad", "UTC", {0: intervals_})


def test_touching_intervals_are_fine() -> None:
    cal = BusinessCalendar("split", "UTC", {0: [(time(9), time(12)), (time(12), time(17))]})
    assert working_seconds(cal, utc(2026, 2, 2), utc(2026, 2, 3)) == 8 * HOUR


@pytest.mark.parametrize("weekday", [-1, 7, True, "monday"])
def test_bad_weekday(weekday: object) -> None:
    with pytest.raises(ValueError, match="weekday"):
        BusinessCalendar("bad", "UTC", {weekday: [(time(9), time(17))]})  # type: ignore[dict-item]


def test_bad_holidays_and_name() -> None:
    with pytest.raises(ValueError, match="dates"):
        office(holidays=[datetime(2026, 1, 1, tzinfo=UTC)])
    with pytest.raises(ValueError, match="name"):
        BusinessCalendar("", "UTC", {})


def test_negative_or_non_finite_seconds() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_working_time(ALWAYS, utc(2026, 1, 1), -1)
    with pytest.raises(ValueError, match="finite"):
        add_working_time(ALWAYS, utc(2026, 1, 1), float("nan"))
    with pytest.raises(ValueError, match="negative"):
        threshold_instants(ALWAYS, utc(2026, 1, 1), 15, [75, -5])
    with pytest.raises(ValueError, match="negative"):
        threshold_instants(ALWAYS, utc(2026, 1, 1), -15, [75])


def test_a_target_beyond_the_year_9999() -> None:
    start = utc(2026, 1, 1)
    for cal in (ALWAYS, office()):
        with pytest.raises(ValueError, match="year 9999"):
            add_working_time(cal, start, 1e13)
    with pytest.raises(ValueError, match="year 9999"):
        add_working_time(ALWAYS, datetime.max.replace(tzinfo=UTC) - timedelta(hours=1), 7200)
    assert add_working_time(office(), utc(9999, 12, 1), 40 * HOUR) == utc(9999, 12, 7, 17)
    with pytest.raises(ValueError, match="year 9999"):
        add_working_time(office(), utc(9999, 12, 1), 200 * HOUR)


def test_a_pause_ending_before_it_starts() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        working_seconds(
            ALWAYS, utc(2026, 1, 1), utc(2026, 1, 2), [(utc(2026, 1, 2), utc(2026, 1, 1))]
        )


@pytest.mark.parametrize(
    "hours",
    [{}, {0: []}, {day: [] for day in range(7)}],
    ids=["no-days", "empty-monday", "all-empty"],
)
def test_a_calendar_with_no_hours(hours: dict[int, list[tuple[time, time]]]) -> None:
    cal = BusinessCalendar("never", "Europe/Paris", hours)
    assert not cal.has_working_time
    assert working_seconds(cal, utc(2026, 1, 1), utc(2027, 1, 1)) == 0.0
    assert list(working_intervals(cal, utc(2026, 1, 1), utc(2027, 1, 1))) == []
    with pytest.raises(ValueError, match="calendar has no working time"):
        add_working_time(cal, utc(2026, 1, 1), 60)
    with pytest.raises(ValueError, match="calendar has no working time"):
        threshold_instants(cal, utc(2026, 1, 1), 60, [75])


def test_calendars_are_immutable_values() -> None:
    hours = {0: [(time(9), time(17))]}
    cal = BusinessCalendar("a", "UTC", hours)
    hours[1] = [(time(9), time(17))]  # the calendar keeps its own copy
    assert list(cal.hours) == [0]
    assert cal.hours[0] == ((time(9), time(17)),)
    with pytest.raises(TypeError):
        cal.hours[2] = ()  # type: ignore[index]
    same = BusinessCalendar("a", "UTC", {0: ((time(9), time(17)),)})
    assert cal == same
    assert hash(cal) == hash(same)
    assert cal != BusinessCalendar("a", "UTC", {0: [(time(9), time(18))]})
    assert office() == BusinessCalendar.weekly("office", "Europe/London", time(9), time(17))


def test_an_open_pause_before_the_target_is_reached_means_never() -> None:
    # 15 working minutes a week (Mondays 00:00-00:15 Paris); 31 minutes needed, but from
    # the third week on the clock is paused for good: 30 minutes is all it ever gets.
    sparse = BusinessCalendar("sparse", "Europe/Paris", {0: ((time(0, 0), time(0, 15)),)})
    start = datetime(2026, 3, 1, tzinfo=UTC)
    forever = [(datetime(2026, 3, 11, tzinfo=UTC), None)]
    with pytest.raises(ValueError, match="a pause never ends"):
        add_working_time(sparse, start, 31 * 60, forever)
    assert add_working_time(sparse, start, 30 * 60, forever) == datetime(
        2026, 3, 8, 23, 15, tzinfo=UTC
    )
