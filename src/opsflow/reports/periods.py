"""Time arithmetic of the reports (pure): local buckets, slots, percentiles, hour classes.

The database groups rows by *slot* — whole multiples of `step` seconds since the Unix
epoch, in UTC — and this module maps slots to buckets in a time zone. Every offset a time
zone has used since 1970 is a whole number of quarter hours, so with a 15-minute step (one
hour for zones whose offsets in the period are whole hours) every local midnight, week and
month start and every local hour falls on a slot boundary: the mapping is exact, DST
included.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

GroupBy = Literal["day", "week", "month"]
HourClass = Literal["business_hours", "off_hours", "sleep_hours"]

QUARTER_HOUR = 900
HOUR = 3600

# A responder's business hours: Monday to Friday, 09:00 to 18:00 local time. Sleep hours:
# 22:00 to 07:00 local time, every day. Off hours: the rest.
BUSINESS_START, BUSINESS_END = 9, 18
SLEEP_START, SLEEP_END = 22, 7


def slot_step(zone: ZoneInfo, start: datetime, end: datetime) -> int:
    """One hour when every offset of `zone` in [start, end) is whole hours, else 15 min."""
    at = start.replace(minute=0, second=0, microsecond=0)
    while at < end:
        offset = at.astimezone(zone).utcoffset()
        if offset is None or offset.total_seconds() % HOUR:
            return QUARTER_HOUR
        at += timedelta(hours=1)
    return HOUR


def slot_start(slot: int, step: int) -> datetime:
    return datetime.fromtimestamp(slot * step, UTC)


def bucket_of(instant: datetime, zone: ZoneInfo, group_by: GroupBy) -> date:
    """The first local day of the bucket `instant` falls in (weeks start on Monday)."""
    day = instant.astimezone(zone).date()
    if group_by == "week":
        return day - timedelta(days=day.weekday())
    if group_by == "month":
        return day.replace(day=1)
    return day


def buckets(start: datetime, end: datetime, zone: ZoneInfo, group_by: GroupBy) -> list[date]:
    """Every bucket that [start, end) touches, in order (empty ones included)."""
    if end <= start:
        return []
    first = bucket_of(start, zone, group_by)
    last = bucket_of(end - timedelta(microseconds=1), zone, group_by)
    result = []
    day = first
    while day <= last:
        result.append(day)
        if group_by == "day":
            day += timedelta(days=1)
        elif group_by == "week":
            day += timedelta(days=7)
        else:
            day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return result


def hour_class(instant: datetime, zone: ZoneInfo) -> HourClass:
    local = instant.astimezone(zone)
    if local.hour >= SLEEP_START or local.hour < SLEEP_END:
        return "sleep_hours"
    if local.weekday() < 5 and BUSINESS_START <= local.hour < BUSINESS_END:
        return "business_hours"
    return "off_hours"


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def zone_or_utc(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ValueError, KeyError, OSError):
        return ZoneInfo("UTC")
