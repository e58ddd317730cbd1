"""Quiet hours of a notification preference: when a held notification may go out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opsflow.notifications.service import quiet_until


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "zone", "now", "expected"),
    [
        ("22:00", "07:00", "UTC", utc(27, 23), utc(28, 7)),  # spans midnight, evening side
        ("22:00", "07:00", "UTC", utc(28, 3), utc(28, 7)),  # morning side
        ("22:00", "07:00", "UTC", utc(28, 7), None),  # the end itself is awake
        ("22:00", "07:00", "UTC", utc(28, 12), None),
        ("12:00", "13:30", "UTC", utc(28, 12, 15), utc(28, 13, 30)),  # same day
        ("12:00", "13:30", "UTC", utc(28, 11, 59), None),
        # Europe/Paris is UTC+1 in January: 23:30 local is 22:30 UTC; 07:00 local is 06:00 UTC.
        ("23:00", "07:00", "Europe/Paris", utc(27, 22, 30), utc(28, 6)),
        ("23:00", "07:00", "Nowhere/Zone", utc(27, 23, 30), utc(28, 7)),  # unknown zone: UTC
        (None, None, None, utc(27, 23), None),
        ("08:00", "08:00", "UTC", utc(27, 8), None),  # empty span
    ],
)
def test_quiet_until(
    start: str | None, end: str | None, zone: str | None, now: datetime, expected: datetime | None
) -> None:
    assert quiet_until(start, end, zone, now) == expected
