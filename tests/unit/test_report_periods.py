"""Report buckets from UTC slots: local days across DST changes, odd offsets, hour classes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from opsflow.reports import periods

PARIS = ZoneInfo("Europe/Paris")
KOLKATA = ZoneInfo("Asia/Kolkata")


def test_slot_step_is_an_hour_for_whole_hour_zones_and_15_minutes_otherwise() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    assert periods.slot_step(PARIS, start, start + timedelta(days=60)) == 3600
    assert periods.slot_step(KOLKATA, start, start + timedelta(days=1)) == 900


def test_local_days_across_the_spring_change_are_23_hours() -> None:
    # Paris moves from UTC+1 to UTC+2 on 2026-03-29 at 01:00 UTC.
    start = datetime(2026, 3, 28, 23, tzinfo=UTC)  # 2026-03-29 00:00 in Paris
    step = periods.slot_step(PARIS, start, start + timedelta(days=2))
    days = []
    slot = int(start.timestamp()) // step
    for hours in range(47):
        instant = periods.slot_start(slot + hours, step)
        days.append(periods.bucket_of(instant, PARIS, "day"))
    assert days.count(date(2026, 3, 29)) == 23
    assert days.count(date(2026, 3, 30)) == 24


def test_buckets_list_every_week_and_month_the_period_touches() -> None:
    start = datetime(2026, 1, 28, tzinfo=UTC)
    end = datetime(2026, 3, 3, tzinfo=UTC)
    assert periods.buckets(start, end, PARIS, "month") == [
        date(2026, 1, 1),
        date(2026, 2, 1),
        date(2026, 3, 1),
    ]
    weeks = periods.buckets(start, end, PARIS, "week")
    assert weeks[0] == date(2026, 1, 26)
    assert weeks[-1] == date(2026, 3, 2)
    assert all(w.weekday() == 0 for w in weeks)


def test_quarter_hour_slots_classify_half_hour_zones_exactly() -> None:
    # 03:15 UTC is 08:45 in Kolkata (off hours), 03:30 UTC is 09:00 (business hours).
    tuesday = datetime(2026, 1, 27, 3, 15, tzinfo=UTC)
    assert periods.hour_class(tuesday, KOLKATA) == "off_hours"
    assert periods.hour_class(tuesday + timedelta(minutes=15), KOLKATA) == "business_hours"
    # 01:29 UTC is 06:59 there (sleep hours), 01:30 UTC is 07:00 (off hours).
    assert periods.hour_class(datetime(2026, 1, 27, 1, 29, tzinfo=UTC), KOLKATA) == "sleep_hours"
    assert periods.hour_class(datetime(2026, 1, 27, 1, 30, tzinfo=UTC), KOLKATA) == "off_hours"
    saturday_noon = datetime(2026, 1, 31, 11, tzinfo=UTC)
    assert periods.hour_class(saturday_noon, PARIS) == "off_hours"


def test_percentile_interpolates_between_ranks() -> None:
    assert periods.percentile([], 0.5) is None
    assert periods.percentile([7.0], 0.95) == 7.0
    assert periods.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert periods.percentile([0.0, 10.0], 0.9) == 9.0
