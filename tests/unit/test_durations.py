"""Human durations as the API shows them ("1 hour 55 minutes")."""

from __future__ import annotations

from datetime import timedelta

import pytest

from opsflow.kit.durations import humanize


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(minutes=15), "15 minutes"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(hours=2), "2 hours"),
        (timedelta(hours=1), "1 hour"),
        (timedelta(hours=1, minutes=55), "1 hour 55 minutes"),
        (timedelta(hours=1, minutes=15), "1 hour 15 minutes"),
        (timedelta(hours=23, minutes=59), "23 hours 59 minutes"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=3), "3 days"),
        (timedelta(days=1, hours=1), "1 day 1 hour"),
        (timedelta(days=7, hours=4), "7 days 4 hours"),
    ],
)
def test_humanize(delta: timedelta, text: str) -> None:
    assert humanize(delta) == text


def test_rounds_down_to_the_minute() -> None:
    assert humanize(timedelta(minutes=1, seconds=59)) == "1 minute"
    assert humanize(timedelta(hours=1, minutes=54, seconds=59)) == "1 hour 54 minutes"


@pytest.mark.parametrize("seconds", [1, 30, 59, 59.999])
def test_under_a_minute(seconds: float) -> None:
    assert humanize(timedelta(seconds=seconds)) == "less than a minute"


def test_zero() -> None:
    assert humanize(timedelta(0)) == "0 minutes"


def test_two_units_at_most_by_default() -> None:
    delta = timedelta(days=2, hours=3, minutes=4)
    assert humanize(delta) == "2 days 3 hours"
    assert humanize(delta, max_units=3) == "2 days 3 hours 4 minutes"
    assert humanize(delta, max_units=1) == "2 days"


def test_skipped_unit_is_not_jumped_over() -> None:
    # "1 day 3 minutes" would hide that zero hours sit in between.
    assert humanize(timedelta(days=1, minutes=3)) == "1 day"


def test_negative_by_magnitude() -> None:
    assert humanize(timedelta(minutes=-90)) == "1 hour 30 minutes"


def test_accepts_seconds_as_number() -> None:
    assert humanize(6900) == "1 hour 55 minutes"
    assert humanize(900.7) == "15 minutes"
