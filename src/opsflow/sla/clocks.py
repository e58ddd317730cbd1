"""SLA clock scheduling (pure): when each threshold of a clock is due.

A clock runs from `started_at` for `target_minutes` of working time, not counting its
pauses. Its thresholds (warning and critical percents, then the breach at 100 %) fire in
order; `fired_count` says how many already have, so the next instant to wake up for is
``instants[fired_count]``: that is the clock's `next_fire_at`, and the engine's only key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from opsflow.sla.defaults import CRITICAL_PERCENT, WARNING_PERCENT

DEFAULT_THRESHOLDS = (WARNING_PERCENT, CRITICAL_PERCENT)
BREACH_PERCENT = 100.0


@dataclass(frozen=True)
class Threshold:
    percent: float
    name: str  # WARNING | CRITICAL | BREACH
    severity: str  # WARNING | CRITICAL


def thresholds_of(percents: list[Any] | tuple[float, ...]) -> list[Threshold]:
    """The clock's thresholds in firing order, the breach always last."""
    ordered = sorted({float(p) for p in percents if 0 < float(p) < BREACH_PERCENT})
    result: list[Threshold] = []
    for index, percent in enumerate(ordered):
        # The highest configured threshold below the breach is the critical one; any
        # lower ones are warnings (the default pair is 75 → WARNING, 95 → CRITICAL).
        is_critical = index == len(ordered) - 1 and len(ordered) > 1
        result.append(
            Threshold(
                percent,
                "CRITICAL" if is_critical else "WARNING",
                "CRITICAL" if is_critical else "WARNING",
            )
        )
    result.append(Threshold(BREACH_PERCENT, "BREACH", "CRITICAL"))
    return result


def closed_pauses(pauses: list[Any]) -> list[tuple[datetime, datetime]]:
    """Finished pauses as UTC intervals, from their stored JSON form."""
    result = []
    for pause in pauses:
        if pause.get("to"):
            result.append((parse_instant(pause["from"]), parse_instant(pause["to"])))
    return result


def parse_instant(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def due_instant(
    started_at: datetime,
    target_minutes: int,
    percent: float,
    pauses: list[tuple[datetime, datetime]],
) -> datetime:
    """When `percent` of the target has run, around the closed pauses (24x7 time).

    Pauses are walked in order: a pause that begins before the clock has used up the
    budget pushes the instant by its length.
    """
    budget = timedelta(minutes=target_minutes) * (percent / 100.0)
    cursor = started_at
    for start, end in sorted(pauses):
        start = max(start, cursor)
        if end <= start:
            continue
        if start - cursor >= budget:
            break
        budget -= start - cursor
        cursor = end
    return cursor + budget


def schedule(
    started_at: datetime, target_minutes: int, percents: list[Any], pauses: list[Any]
) -> list[tuple[Threshold, datetime]]:
    closed = closed_pauses(pauses)
    return [
        (threshold, due_instant(started_at, target_minutes, threshold.percent, closed))
        for threshold in thresholds_of(percents)
    ]
