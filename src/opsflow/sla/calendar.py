"""Business calendars: which instants count as working time for an SLA clock (pure).

A deadline is the start plus the target's minutes of
*working* time in the policy's calendar, plus paused time. Everything here is a pure function
of its arguments: no I/O, no wall clock (every instant is passed in), so the SLA engine can be
tested with a fake clock.

Instants are timezone-aware datetimes. Any aware datetime is accepted and normalised to UTC;
every datetime returned is in UTC. Naive datetimes raise ``ValueError``.

The working-time rule
---------------------
A calendar has an IANA time zone, working hours per weekday as local wall-clock intervals
``[start, end)`` (``end == time(0)`` meaning midnight at the end of that day), and holidays
(local dates). The single rule everything else follows from:

    A UTC instant ``t`` is working time iff its local wall-clock reading
    ``t.astimezone(zone)`` falls on a date that is not a holiday, whose weekday has working
    hours, and inside one of that weekday's ``[start, end)`` intervals.

Consequences around daylight-saving transitions (all follow from the rule; the unit tests
check them against a brute-force oracle that applies the rule minute by minute):

* Spring forward (a gap of wall-clock times that never happen): a boundary inside the gap
  maps to the instant the clock jumps. Europe/Paris ``01:00-04:00`` on 2026-03-29 is
  2 real hours; an interval lying entirely inside the gap (``02:15-02:45``) is empty that day.
* Fall back (a stretch of wall-clock times that happens twice): every occurrence of a
  wall-clock time inside the interval counts. Europe/Paris ``01:00-04:00`` on 2026-10-25 is
  4 real hours (02:00-03:00 happens twice); ``02:30-02:45`` that day is two separate
  15-minute pieces (one before, one after the clocks go back). When an interval contains the
  whole repeated stretch this is the same as "fold=0 for starts, fold=1 for ends"; it differs
  when a boundary falls inside the repeated stretch, which is why the implementation does not
  convert boundaries with a fold but intersects the interval with the zone's UTC-offset
  segments (see ``_offset_segments``).
* Holidays remove the whole local date; an interval that ends at midnight belongs to the
  weekday (and date) it starts on.

The ``24x7`` calendar (any calendar whose seven weekdays are fully covered and which has no
holidays) counts every instant and never goes through local time.

Pauses are ``(start, end | None)`` pairs; they may overlap, start before the window or be
open-ended (``None``: the pause runs to the end of the window, or forever for
``add_working_time``). Paused working time does not count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "ALWAYS_NAME",
    "BusinessCalendar",
    "Pause",
    "add_working_time",
    "explain",
    "threshold_instants",
    "working_intervals",
    "working_seconds",
]

ALWAYS_NAME = "24x7"

Pause = tuple[datetime, datetime | None]
_Span = tuple[timedelta, timedelta]  # offsets from local midnight, end exclusive
_Interval = tuple[datetime, datetime]  # naive UTC, end exclusive

_DAY = timedelta(days=1)
_ZERO = timedelta(0)
_MICROSECOND = timedelta(microseconds=1)
_SECOND = timedelta(seconds=1)
# A UTC offset is strictly within ±24 h (a datetime invariant), so the UTC instants whose local
# date is ``d`` all lie within one day either side of ``d``'s local midnight read as UTC.
_MAX_OFFSET = timedelta(hours=24)
# Offsets are probed this often to find transitions. Assumes a zone never changes its offset
# twice within this period (true of every real zone: transitions are months apart).
_PROBE = timedelta(hours=6)
_CHUNK_DAYS = 7
# Internally instants are naive UTC datetimes (cheaper arithmetic, and they mix with naive local
# wall-clock readings minus an offset); they are made aware again on the way out.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC).replace(tzinfo=None)
# Sentinel for "never": the end of an open pause, of 24x7 working time.
_FAR = datetime.max.replace(tzinfo=UTC).replace(tzinfo=None)


def _time_offset(value: time) -> timedelta:
    return timedelta(
        hours=value.hour,
        minutes=value.minute,
        seconds=value.second,
        microseconds=value.microsecond,
    )


@dataclass(frozen=True)
class BusinessCalendar:
    """A named calendar: IANA time zone, local working hours per weekday, holidays.

    ``hours`` maps a weekday (0 = Monday .. 6 = Sunday) to local wall-clock intervals
    ``(start, end)``, end exclusive; ``end == time(0)`` means midnight at the end of the day.
    A day's intervals must be sorted and must not overlap (touching is fine). Night shifts
    crossing midnight are written as two intervals on consecutive weekdays. Weekdays absent
    from ``hours`` have no working time. ``holidays`` are local dates with no working time.

    Validation errors raise ``ValueError``. The stored ``hours`` is an immutable copy
    (intervals as tuples, weekdays sorted); ``hours`` is left out of the hash (mappings are
    not hashable) but not out of equality.
    """

    name: str
    timezone: str
    hours: Mapping[int, Sequence[tuple[time, time]]] = field(hash=False)
    holidays: frozenset[date] = frozenset()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False, hash=False)
    _spans: tuple[tuple[_Span, ...], ...] = field(init=False, repr=False, compare=False, hash=False)
    _always: bool = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("calendar name must be a non-empty string")
        object.__setattr__(self, "_zone", _load_zone(self.timezone))

        hours: dict[int, tuple[tuple[time, time], ...]] = {}
        spans: list[tuple[_Span, ...]] = [() for _ in range(7)]
        for weekday, intervals in sorted(_items(self.hours)):
            if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
                raise ValueError(
                    f"weekday must be an integer 0 (Monday) .. 6 (Sunday): {weekday!r}"
                )
            normalised = tuple(_check_interval(weekday, item) for item in intervals)
            day_spans = tuple(
                (_time_offset(s), _DAY if e == time(0) else _time_offset(e)) for s, e in normalised
            )
            for (_, prev_end), (next_start, _) in pairwise(day_spans):
                if next_start < prev_end:
                    raise ValueError(
                        f"weekday {weekday}: working intervals must be sorted and must not overlap"
                    )
            hours[weekday] = normalised
            spans[weekday] = day_spans
        object.__setattr__(self, "hours", MappingProxyType(hours))
        object.__setattr__(self, "_spans", tuple(spans))

        holidays = frozenset(self.holidays)
        for day in holidays:
            if isinstance(day, datetime) or not isinstance(day, date):
                raise ValueError(f"holidays must be dates: {day!r}")
        object.__setattr__(self, "holidays", holidays)
        object.__setattr__(
            self, "_always", not holidays and all(_covers_whole_day(s) for s in spans)
        )

    @classmethod
    def always(cls) -> BusinessCalendar:
        """The ``24x7`` calendar (the default): every instant is working time."""
        whole_day = ((time(0), time(0)),)
        return cls(ALWAYS_NAME, "UTC", dict.fromkeys(range(7), whole_day))

    @classmethod
    def weekly(
        cls,
        name: str,
        timezone: str,
        start: time,
        end: time,
        days: Iterable[int] = range(5),
        holidays: Iterable[date] = (),
    ) -> BusinessCalendar:
        """Same hours on each of ``days`` (default Monday-Friday), e.g. 09:00-17:00."""
        return cls(name, timezone, {day: ((start, end),) for day in days}, frozenset(holidays))

    @property
    def is_always(self) -> bool:
        """True when every instant is working time (all seven days fully covered, no holidays)."""
        return self._always

    @property
    def weekly_working_seconds(self) -> float:
        """Working time in a week without holidays, by the wall clock (a DST week may differ
        by the size of the shift)."""
        return sum((end - start).total_seconds() for spans in self._spans for start, end in spans)

    @property
    def has_working_time(self) -> bool:
        """False when no weekday has any working hours (such a calendar never reaches a target)."""
        return any(self._spans)


def _items(
    hours: Mapping[int, Sequence[tuple[time, time]]],
) -> list[tuple[int, Sequence[tuple[time, time]]]]:
    if not isinstance(hours, Mapping):
        raise ValueError("hours must be a mapping of weekday -> intervals")
    return list(hours.items())


def _load_zone(key: str) -> ZoneInfo:
    if not isinstance(key, str) or not key:
        raise ValueError(f"unknown time zone: {key!r}")
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone: {key!r}") from exc


def _check_interval(weekday: int, item: object) -> tuple[time, time]:
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise ValueError(f"weekday {weekday}: an interval is a (start, end) pair: {item!r}")
    start, end = item
    if not isinstance(start, time) or not isinstance(end, time):
        raise ValueError(f"weekday {weekday}: interval bounds must be times: {item!r}")
    if start.tzinfo is not None or end.tzinfo is not None:
        raise ValueError(f"weekday {weekday}: interval bounds are local wall-clock times")
    if end != time(0) and end <= start:
        raise ValueError(
            f"weekday {weekday}: interval {start}-{end} must end after it starts "
            "(use time(0) for midnight; split night shifts across two weekdays)"
        )
    return (start, end)


def _covers_whole_day(spans: tuple[_Span, ...]) -> bool:
    reached = _ZERO
    for start, end in spans:
        if start > reached:
            return False
        reached = max(reached, end)
    return reached >= _DAY


# --- instants -------------------------------------------------------------------------------


def _utc(value: datetime, what: str) -> datetime:
    """Aware datetime -> naive UTC (the internal representation)."""
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a datetime: {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC): {value!r}")
    return value.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _micros(delta: timedelta) -> int:
    return delta // _MICROSECOND


def _normalise_pauses(pauses: Sequence[Pause]) -> list[_Interval]:
    """Pauses as sorted, merged naive-UTC intervals; an open pause ends at ``_FAR``."""
    intervals: list[_Interval] = []
    for pause in pauses:
        if not isinstance(pause, tuple | list) or len(pause) != 2:
            raise ValueError(f"a pause is a (start, end | None) pair: {pause!r}")
        start = _utc(pause[0], "pause start")
        end = _FAR if pause[1] is None else _utc(pause[1], "pause end")
        if end < start:
            raise ValueError(f"pause ends before it starts: {pause!r}")
        if end > start:
            intervals.append((start, end))
    return _merge(intervals)


def _merge(intervals: list[_Interval]) -> list[_Interval]:
    """Sort and merge overlapping or touching intervals."""
    merged: list[_Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


# --- time zone offsets ----------------------------------------------------------------------


def _offset_at(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.replace(tzinfo=UTC).astimezone(zone).utcoffset()
    if offset is None:  # pragma: no cover - ZoneInfo always answers for aware datetimes
        raise ValueError(f"time zone {zone.key!r} has no UTC offset at {instant}")
    return offset


def _transition(zone: ZoneInfo, low: datetime, high: datetime, low_offset: timedelta) -> datetime:
    """The first instant in ``(low, high]`` whose offset differs from ``low_offset``.

    Bisects on whole seconds: tz database transitions happen on whole UTC seconds, and
    ``low``/``high`` are whole seconds (probe grid points or local midnights ± 24 h).
    """
    while high - low > _SECOND:
        middle = low + timedelta(seconds=int((high - low) / _SECOND) // 2)
        if _offset_at(zone, middle) == low_offset:
            low = middle
        else:
            high = middle
    return high


def _offset_segments(
    zone: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime, timedelta]]:
    """Split naive-UTC ``[start, end)`` into maximal pieces of constant UTC offset.

    The public zoneinfo API has no transition list, so offsets are probed on a grid aligned to
    the epoch every ``_PROBE`` and each change is located by bisection.
    """
    segments: list[tuple[datetime, datetime, timedelta]] = []
    seg_start = start
    offset = _offset_at(zone, start)
    low = start
    probe = _EPOCH + ((start - _EPOCH) // _PROBE + 1) * _PROBE
    while low < end:
        high = min(probe, end)
        high_offset = _offset_at(zone, high)
        if high_offset != offset:
            jump = _transition(zone, low, high, offset)
            if jump < end:
                segments.append((seg_start, jump, offset))
                seg_start, offset = jump, _offset_at(zone, jump)
        low = high
        probe += _PROBE
    segments.append((seg_start, end, offset))
    return segments


# --- working time ---------------------------------------------------------------------------


def _working(cal: BusinessCalendar, since: datetime, until: datetime = _FAR) -> Iterator[_Interval]:
    """Merged working intervals (naive UTC), in order, clipped to ``[since, until)``.

    Works a week of local dates at a time: the zone's offset segments covering those dates are
    computed once, then each (date, interval) is intersected with each segment — so cost is
    proportional to the number of days spanned, never to the minutes in them. Intervals of
    consecutive days that touch (an interval ending at midnight, the next starting at 00:00) are
    merged, and intervals are held back until no later date can still produce an earlier or
    touching one (a clock set back across midnight can interleave adjacent dates).
    """
    if since >= until:
        return
    if cal.is_always:
        yield (since, until)
        return
    if not cal.has_working_time:
        return
    zone, spans, holidays = cal._zone, cal._spans, cal.holidays
    # An instant's local date is within a day of its UTC date (|offset| < 24 h), so working
    # time at or after ``since`` can come from local dates as early as two days before it.
    day = (since - _MAX_OFFSET).date() - _DAY
    pending: list[_Interval] = []
    while True:
        first_midnight = datetime.combine(day, time(0))
        last_midnight = first_midnight + _CHUNK_DAYS * _DAY
        segments = _offset_segments(zone, first_midnight - _MAX_OFFSET, last_midnight + _MAX_OFFSET)
        for index in range(_CHUNK_DAYS):
            current = day + index * _DAY
            if current in holidays:
                continue
            midnight = first_midnight + index * _DAY
            for span_start, span_end in spans[current.weekday()]:
                local_start, local_end = midnight + span_start, midnight + span_end
                for seg_start, seg_end, offset in segments:
                    start = max(local_start - offset, seg_start, since)
                    end = min(local_end - offset, seg_end, until)
                    if start < end:
                        pending.append((start, end))
        pending = _merge(pending)
        # Every later date's working time starts strictly after this frontier.
        frontier = last_midnight - _MAX_OFFSET
        done = 0
        for start, end in pending:
            if end > frontier:
                break
            yield (start, end)
            done += 1
        del pending[:done]
        if frontier >= until:
            yield from pending
            return
        day += _CHUNK_DAYS * _DAY


def _unpaused(intervals: Iterable[_Interval], pauses: list[_Interval]) -> Iterator[_Interval]:
    """``intervals`` (sorted) minus ``pauses`` (sorted, merged). Stops at an open pause."""
    index = 0
    for start, end in intervals:
        while index < len(pauses) and pauses[index][1] <= start:
            index += 1
        cursor = start
        scan = index
        while scan < len(pauses) and pauses[scan][0] < end:
            pause_start, pause_end = pauses[scan]
            if pause_start > cursor:
                yield (cursor, pause_start)
            cursor = max(cursor, pause_end)
            if cursor >= end:
                break
            scan += 1
        if cursor >= _FAR:
            return  # an open pause: nothing after it ever counts
        if cursor < end:
            yield (cursor, end)


def _working_total(
    cal: BusinessCalendar, start: datetime, end: datetime, pauses: list[_Interval]
) -> timedelta:
    total = _ZERO
    for a, b in _unpaused(_working(cal, start, end), pauses):
        total += b - a
    return total


def working_intervals(
    cal: BusinessCalendar, start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """The working time inside ``[start, end)`` as sorted, disjoint, non-touching UTC intervals.

    Empty when ``end <= start``. Arguments are validated when the function is called, not
    when the iterator is first advanced.
    """
    since, until = _utc(start, "start"), _utc(end, "end")
    return ((_aware(a), _aware(b)) for a, b in _working(cal, since, until))


def working_seconds(
    cal: BusinessCalendar,
    start: datetime,
    end: datetime,
    pauses: Sequence[Pause] = (),
) -> float:
    """Seconds of working time in ``[start, end)`` not covered by any pause.

    A pause with a ``None`` end runs to ``end``. ``0.0`` when ``end <= start``. Exact to the
    microsecond (the sum is kept as a ``timedelta``).
    """
    since, until = _utc(start, "start"), _utc(end, "end")
    return _working_total(cal, since, until, _normalise_pauses(pauses)).total_seconds()


def _advance(
    cal: BusinessCalendar, start: datetime, seconds: Sequence[float], pauses: Sequence[Pause]
) -> list[datetime]:
    """For each amount, the earliest instant where that much unpaused working time has elapsed.

    One pass over the working intervals serves every amount. Returns aware UTC instants in the
    order of ``seconds``.
    """
    since = _utc(start, "start")
    paused = _normalise_pauses(pauses)
    targets: list[int] = []
    for amount in seconds:
        try:
            value = float(amount)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"working time must be a number of seconds: {amount!r}") from exc
        if not math.isfinite(value):
            raise ValueError(f"working time must be a finite number of seconds: {amount!r}")
        if value < 0:
            raise ValueError(f"working time must not be negative: {amount!r}")
        targets.append(round(value * 1_000_000))
    if not cal.has_working_time:
        raise ValueError(f"calendar has no working time: {cal.name!r}")

    order = sorted(range(len(targets)), key=targets.__getitem__)
    results: dict[int, datetime] = {}
    position = 0
    elapsed = 0  # microseconds of unpaused working time before the current interval
    while position < len(order) and targets[order[position]] == 0:
        results[order[position]] = since
        position += 1
    beyond = ValueError("working time never reaches the target before the year 9999")
    if position < len(order) and targets[order[-1]] > _micros(_FAR - since):
        raise beyond  # more time than there is left, even if every instant counted
    try:
        if position < len(order):
            for a, b in _unpaused(_working(cal, since), paused):
                length = _micros(b - a)
                while position < len(order) and targets[order[position]] - elapsed <= length:
                    needed = targets[order[position]] - elapsed
                    results[order[position]] = a + timedelta(microseconds=needed)
                    position += 1
                if position == len(order):
                    break
                elapsed += length
            else:
                if paused and paused[-1][1] == _FAR:
                    raise ValueError("working time never reaches the target: a pause never ends")
                raise beyond
    except OverflowError as exc:
        raise beyond from exc
    return [_aware(results[index]) for index in range(len(targets))]


def add_working_time(
    cal: BusinessCalendar,
    start: datetime,
    seconds: float,
    pauses: Sequence[Pause] = (),
) -> datetime:
    """The earliest instant ``t >= start`` with ``working_seconds(cal, start, t, pauses) ==
    seconds``.

    ``seconds == 0`` gives ``start`` itself. Because working time accrues continuously, the
    answer is where the last needed second ends (Friday 16:30 + 30 min on a 9-17 calendar is
    Friday 17:00, not Monday 09:00). ``seconds`` is rounded to the microsecond.

    Raises ``ValueError`` for negative or non-finite ``seconds``, for a calendar with no
    working hours at all (whatever ``seconds``: it is a configuration error), when an
    open-ended pause stops the clock before the target is reached, and when the answer would
    lie beyond the year 9999. Cost grows with the number
    of days spanned (a year of 9-17 working time is ~4.5 years of days), not minutes.
    """
    return _advance(cal, start, (seconds,), pauses)[0]


def threshold_instants(
    cal: BusinessCalendar,
    start: datetime,
    target_minutes: int,
    percents: Sequence[float],
    pauses: Sequence[Pause] = (),
) -> dict[float, datetime]:
    """For each percent ``p``: the instant ``p`` % of the target's working time has elapsed.

    That is ``add_working_time(cal, start, target_minutes * 60 * p / 100, pauses)``, keyed by
    the ``p`` given (e.g. 75 -> warning, 95 -> critical, 100 -> breach), computed in one pass.
    """
    if isinstance(target_minutes, bool) or not isinstance(target_minutes, int):
        raise ValueError(f"target_minutes must be an integer: {target_minutes!r}")
    if target_minutes < 0:
        raise ValueError(f"target_minutes must not be negative: {target_minutes}")
    percent_list = list(percents)
    amounts = [target_minutes * 60 * percent / 100 for percent in percent_list]
    instants = _advance(cal, start, amounts, pauses)
    return dict(zip(percent_list, instants, strict=True))


def explain(
    cal: BusinessCalendar,
    start: datetime,
    now: datetime,
    pauses: Sequence[Pause] = (),
) -> dict[str, float]:
    """Where the time in ``[start, now)`` went, in seconds.

    * ``working_seconds`` — working time not paused (what counts against the target);
    * ``paused_seconds`` — working time covered by a pause (what pausing took off the clock);
    * ``outside_hours_seconds`` — time outside working hours, paused or not (a pause over a
      weekend takes nothing off the clock that the calendar did not already).

    The three add up to ``now - start``; all are 0 when ``now <= start``.
    """
    since, until = _utc(start, "start"), _utc(now, "now")
    if until <= since:
        return {"working_seconds": 0.0, "paused_seconds": 0.0, "outside_hours_seconds": 0.0}
    gross = _working_total(cal, since, until, [])
    net = _working_total(cal, since, until, _normalise_pauses(pauses))
    return {
        "working_seconds": net.total_seconds(),
        "paused_seconds": (gross - net).total_seconds(),
        "outside_hours_seconds": (until - since - gross).total_seconds(),
    }
