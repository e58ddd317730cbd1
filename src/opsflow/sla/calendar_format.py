"""A business calendar as documents and clock rows write it (pure).

``{"timezone": "Europe/Paris", "hours": {"mon": ["09:00-17:00"]}, "holidays":
["2026-12-25"]}``: weekdays ``mon``..``sun`` (or ``monday``..``sunday``), intervals
``HH:MM[:SS]-HH:MM[:SS]`` with ``24:00`` for midnight, ISO dates. The same rules apply in
the YAML configuration, the API and the copy every clock keeps; every problem is reported
with its path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opsflow.sla.calendar import ALWAYS_NAME, BusinessCalendar
from opsflow.sla.config_errors import (
    PolicyConfigError,
    Problems,
    as_mapping,
    describe,
    join,
    name_problem,
    short,
    unknown_keys,
)

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_OF: Final = {
    **{short: index for index, short in enumerate(WEEKDAYS)},
    **{
        long: index
        for index, long in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
}
_CLOCK = r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?"
_INTERVAL_RE: Final = re.compile(rf"\s*{_CLOCK}\s*-\s*{_CLOCK}\s*")
_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DAY: Final = timedelta(days=1)
_CALENDAR_KEYS: Final = ("timezone", "hours", "holidays")


def _clock_text(value: time, *, end: bool) -> str:
    if end and value == time(0):
        return "24:00"
    text = f"{value.hour:02d}:{value.minute:02d}"
    return f"{text}:{value.second:02d}" if value.second else text


def _offset(value: time, *, end: bool) -> timedelta:
    if end and value == time(0):
        return _DAY
    return timedelta(hours=value.hour, minutes=value.minute, seconds=value.second)


def format_interval(interval: tuple[time, time]) -> str:
    return f"{_clock_text(interval[0], end=False)}-{_clock_text(interval[1], end=True)}"


def _parse_clock(hours: str, minutes: str, seconds: str | None, *, end: bool) -> time | None:
    h, m, s = int(hours), int(minutes), int(seconds or 0)
    if end and (h, m, s) == (24, 0, 0):
        return time(0)
    if h > 23 or m > 59 or s > 59:
        return None
    return time(h, m, s)


def _parse_interval(value: object) -> tuple[time, time] | str:
    """An interval, or the problem with it."""
    found = _INTERVAL_RE.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        return (
            f"an interval is written 'HH:MM-HH:MM' (24-hour clock, 24:00 for midnight), "
            f"got {describe(value)}"
        )
    sh, sm, ss, eh, em, es = found.groups()
    start = _parse_clock(sh, sm, ss, end=False)
    end = _parse_clock(eh, em, es, end=True)
    if start is None or end is None:
        return f"'{short(value)}' is not a valid time of day range"
    if end != time(0) and end <= start:
        return (
            f"'{short(value)}' must end after it starts (write a night shift as two "
            "intervals on consecutive days)"
        )
    return (start, end)


def _parse_hours(
    value: object, path: str, errors: Problems
) -> dict[int, tuple[tuple[time, time], ...]] | None:
    mapping = as_mapping(value, path, errors, "hours")
    if mapping is None:
        return None
    before = len(errors)
    hours: dict[int, tuple[tuple[time, time], ...]] = {}
    for key, intervals in mapping.items():
        day_path = join(path, key)
        weekday = _WEEKDAY_OF.get(key.lower()) if isinstance(key, str) else None
        if weekday is None:
            errors.add(day_path, "unknown weekday; expected mon, tue, wed, thu, fri, sat, sun")
            continue
        if weekday in hours:
            errors.add(day_path, f"{WEEKDAYS[weekday]} is given more than once")
            continue
        items = [intervals] if isinstance(intervals, str) else intervals
        if items is None:
            items = []
        if not isinstance(items, list):
            errors.add(
                day_path, f"must be a list of 'HH:MM-HH:MM' intervals, got {describe(items)}"
            )
            continue
        parsed: list[tuple[time, time]] = []
        for index, item in enumerate(items):
            interval = _parse_interval(item)
            if isinstance(interval, str):
                errors.add(f"{day_path}[{index}]", interval)
            else:
                parsed.append(interval)
        if len(parsed) != len(items):
            continue
        parsed.sort(key=lambda iv: _offset(iv[0], end=False))
        for first, second in pairwise(parsed):
            if _offset(second[0], end=False) < _offset(first[1], end=True):
                errors.add(
                    day_path,
                    f"intervals {format_interval(first)} and {format_interval(second)} overlap",
                )
                break
        hours[weekday] = tuple(parsed)
    return hours if len(errors) == before else None


def _parse_holidays(value: object, path: str, errors: Problems) -> frozenset[date] | None:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        errors.add(path, f"must be a list of ISO dates (YYYY-MM-DD), got {describe(value)}")
        return None
    days: set[date] = set()
    ok = True
    for index, item in enumerate(value):
        day: date | None = None
        if isinstance(item, date) and not isinstance(item, datetime):
            day = item
        elif isinstance(item, str) and _DATE_RE.fullmatch(item):
            try:
                day = date.fromisoformat(item)
            except ValueError:
                day = None
        if day is None:
            errors.add(
                f"{path}[{index}]", f"must be an ISO date (YYYY-MM-DD), got {describe(item)}"
            )
            ok = False
        else:
            days.add(day)
    return frozenset(days) if ok else None


def _zone_problem(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return f"must be an IANA time zone name such as Europe/Paris, got {describe(value)}"
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        return f"unknown time zone '{short(value)}'"
    return None


def parse_calendar(
    name: object, value: object, path: str, errors: Problems
) -> BusinessCalendar | None:
    before = len(errors)
    problem = name_problem(name, "calendar")
    if problem:
        errors.add(path, problem)
    elif isinstance(name, str) and name.lower() == ALWAYS_NAME:
        errors.add(path, f"'{ALWAYS_NAME}' is built in and cannot be redefined")
    mapping = as_mapping(value, path, errors, "a calendar")
    if mapping is None:
        return None
    unknown_keys(mapping, _CALENDAR_KEYS, path, errors)
    timezone = mapping.get("timezone")
    if "timezone" not in mapping:
        errors.add(join(path, "timezone"), "is required")
    else:
        zone_problem = _zone_problem(timezone)
        if zone_problem:
            errors.add(join(path, "timezone"), zone_problem)
    hours: dict[int, tuple[tuple[time, time], ...]] | None = None
    if "hours" not in mapping:
        errors.add(join(path, "hours"), "is required")
    else:
        hours = _parse_hours(mapping["hours"], join(path, "hours"), errors)
        if hours is not None and not any(hours.values()):
            errors.add(join(path, "hours"), "a calendar needs at least one working interval")
    holidays = _parse_holidays(mapping.get("holidays"), join(path, "holidays"), errors)
    if (
        len(errors) != before
        or hours is None
        or holidays is None
        or not isinstance(name, str)
        or not isinstance(timezone, str)
    ):
        return None
    try:
        return BusinessCalendar(name, timezone, hours, holidays)
    except ValueError as exc:  # pragma: no cover - everything is checked above
        errors.add(path, short(str(exc), 300))
        return None


def calendar_to_dict(calendar: BusinessCalendar) -> dict[str, Any]:
    """A JSON-friendly rendering of a calendar (weekday names, ``HH:MM-HH:MM`` intervals)."""
    return {
        "name": calendar.name,
        "timezone": calendar.timezone,
        "hours": {
            WEEKDAYS[weekday]: [format_interval(iv) for iv in intervals]
            for weekday, intervals in sorted(calendar.hours.items())
        },
        "holidays": [day.isoformat() for day in sorted(calendar.holidays)],
    }


def calendar_from_dict(name: str, data: Mapping[str, Any]) -> BusinessCalendar:
    """The calendar ``calendar_to_dict`` renders (without its ``name``), read back.

    Same rules and error paths as a calendar of the YAML extension block (relative to the
    calendar: ``hours.mon``). Raises ``PolicyConfigError`` listing every problem.
    """
    errors = Problems()
    calendar = parse_calendar(name, dict(data), "", errors)
    if errors or calendar is None:
        raise PolicyConfigError(errors.items)
    return calendar
