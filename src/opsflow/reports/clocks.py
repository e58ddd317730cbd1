"""The queries over SLA clocks: the breach and met rules in SQL, compliance per calendar,
the duration percentiles, and what `opsflow reports rebuild` recomputes.

Split from `repository` (the tallies of tasks and the dashboard) along the table they
read: these read `sla_clocks` (the tasks only for a filter).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.models.enums import ClockStatus, SlaKind
from opsflow.models.report import (
    DAY_SECONDS,
    HOUR_SECONDS,
    ReportClockHour,
    ReportDurationBin,
)
from opsflow.models.sla import SlaClock
from opsflow.models.task import Task
from opsflow.reports import rollups
from opsflow.reports.periods import percentile
from opsflow.reports.repository import ReportFilters, _count_if, _dialect, _now, task_clauses


def _clocks_of_period(query: Any, filters: ReportFilters) -> Any:
    """Restrict a query over `sla_clocks` to the clocks of the period's tasks. A task's clocks
    start at its creation (`sla.service.create_clocks`), so without a filter on the tasks
    themselves the window applies to `started_at` and the tasks are not read."""
    clauses = task_clauses(filters, window=False)
    if not clauses:
        return query.where(SlaClock.started_at >= filters.start, SlaClock.started_at < filters.end)
    return query.join(Task, Task.id == SlaClock.task_id).where(*task_clauses(filters))


def clock_breached(now: datetime) -> ColumnElement[bool]:
    """sla.status.ClockView.breached in SQL: recorded as breached, stopped after its
    deadline, or still counting (or paused) at or past it."""
    until = func.coalesce(SlaClock.paused_at, _now(now))
    return or_(
        SlaClock.status == ClockStatus.BREACHED,
        and_(SlaClock.stopped_at.is_not(None), SlaClock.stopped_at > SlaClock.deadline),
        and_(SlaClock.stopped_at.is_(None), until >= SlaClock.deadline),
    )


def clock_met() -> ColumnElement[bool]:
    """Stopped by the response (START) or the completion (RESOLVE), in time."""
    return and_(
        SlaClock.stopped_at.is_not(None),
        SlaClock.cancelled.is_(False),
        SlaClock.status != ClockStatus.BREACHED,
        SlaClock.stopped_at <= SlaClock.deadline,
    )


def _earlier(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    """The earlier of two nullable instants, None only when both are (portable LEAST)."""
    return case((a.is_(None), b), (b.is_(None), a), (a < b, a), else_=b)


def clock_breached_since() -> ColumnElement[Any]:
    """`sla.clocks.breached_since` in SQL."""
    recorded = case(
        (
            SlaClock.status == ClockStatus.BREACHED,
            func.coalesce(SlaClock.breached_at, SlaClock.started_at),
        ),
        else_=None,
    )
    by_deadline = case(
        (
            SlaClock.stopped_at.is_not(None),
            case((SlaClock.stopped_at > SlaClock.deadline, SlaClock.deadline), else_=None),
        ),
        (
            or_(SlaClock.paused_at.is_(None), SlaClock.paused_at >= SlaClock.deadline),
            SlaClock.deadline,
        ),
        else_=None,
    )
    return _earlier(recorded, by_deadline)


def breach_at_update() -> Any:
    """Set every task's `sla_breach_at` from its clocks where it differs (exact: the rule of
    `sla.clocks.task_breached_since`)."""
    value = (
        select(func.min(clock_breached_since()))
        .where(SlaClock.task_id == Task.id)
        .scalar_subquery()
    )
    return (
        update(Task)
        .where(Task.sla_breach_at.is_distinct_from(value))
        .values(sla_breach_at=value)
        .execution_options(synchronize_session=False)
    )


async def rebuild_breach_at(session: AsyncSession) -> int:
    result = await session.execute(breach_at_update())
    return int(getattr(result, "rowcount", 0) or 0)


# --- SLA compliance ---------------------------------------------------------------------


def _compliance(now: datetime) -> Any:
    """Clocks by calendar and kind: met, breached, counting, cancelled (no window yet)."""
    breached = clock_breached(now)
    cancelled = and_(SlaClock.cancelled.is_(True), ~breached)
    counting = and_(SlaClock.stopped_at.is_(None), ~breached)
    calendar = func.coalesce(SlaClock.calendar_name, "24x7").label("calendar")
    return (
        select(
            calendar,
            SlaClock.kind,
            _count_if(clock_met()).label("met"),
            _count_if(breached).label("breached"),
            _count_if(counting).label("counting"),
            _count_if(cancelled).label("cancelled"),
        )
        .select_from(SlaClock)
        .group_by(calendar, SlaClock.kind)
    )


def _fast(session: AsyncSession, filters: ReportFilters) -> bool:
    """The clock rollups apply: on PostgreSQL, with no filter on the tasks (the rollups
    keep the clocks by start day and calendar only)."""
    return rollups.enabled(session) and not task_clauses(filters, window=False)


async def calendar_compliance(
    session: AsyncSession, filters: ReportFilters, now: datetime
) -> Sequence[Any]:
    """Clocks of the period's tasks by calendar and kind: met, breached, counting, cancelled."""
    if not _fast(session, filters):
        query = _clocks_of_period(_compliance(now), filters)
        return list((await session.execute(query)).all())
    # The stopped clocks of the whole hours from their rollup (which of the four a stopped
    # clock is never changes with the moment of reading); the clocks of the partial hours
    # and the counting clocks of the whole hours (few: those of open tasks) live.
    window = rollups.split(filters.start, filters.end, HOUR)
    parts = [_compliance(now).where(window.edges(SlaClock.started_at))]
    if window.whole:
        parts.append(
            _compliance(now).where(
                SlaClock.stopped_at.is_(None),
                SlaClock.started_at >= window.inner_start,
                SlaClock.started_at < window.inner_end,
            )
        )
        hours = ReportClockHour
        parts.append(
            select(
                hours.calendar,
                hours.kind,
                func.sum(hours.met),
                func.sum(hours.breached),
                literal(0),
                func.sum(hours.cancelled),
            )
            .where(window.slots(hours.hour))
            .group_by(hours.calendar, hours.kind)
            .having(func.sum(hours.met + hours.breached + hours.cancelled) != 0)
        )
    folded: dict[tuple[str, str], list[int]] = {}
    for calendar, kind, *counts in (await session.execute(rollups._union(parts))).all():
        sums = folded.setdefault((calendar, kind), [0, 0, 0, 0])
        for index, count in enumerate(counts):
            sums[index] += int(count)
    return [ComplianceRow(calendar, kind, *sums) for (calendar, kind), sums in folded.items()]


@dataclass
class ComplianceRow:
    calendar: str
    kind: str
    met: int
    breached: int
    counting: int
    cancelled: int


def _by_work() -> list[ColumnElement[bool]]:
    """Stopped by the response or the completion, not by a cancellation (`STOPPED_BY_WORK`)."""
    return [
        SlaClock.stopped_at.is_not(None),
        SlaClock.cancelled.is_(False),
        SlaClock.working_seconds.is_not(None),
    ]


def _stopped_clocks(query: Any, filters: ReportFilters) -> Any:
    """Clocks of the period stopped by the work (response or completion), not by a
    cancellation."""
    return _clocks_of_period(query.where(*_by_work()), filters)


FRACTIONS = (0.5, 0.9, 0.95)
DAY = timedelta(seconds=DAY_SECONDS)
HOUR = timedelta(seconds=HOUR_SECONDS)
Durations = tuple[int, float | None, list[float | None], list[float | None]]


async def durations(session: AsyncSession, filters: ReportFilters) -> dict[str, Durations]:
    """Per clock kind: count, mean wall seconds, wall and working percentiles of the stopped
    clocks (one pass over them)."""
    if _fast(session, filters):
        return await _binned_durations(session, filters)
    if _dialect(session) == "postgresql":
        # Seconds as a double, like `timedelta.total_seconds()`.
        wall_seconds = func.date_part("epoch", SlaClock.stopped_at - SlaClock.started_at)
        fractions = postgresql.array([literal(f, Float()) for f in FRACTIONS])
        kinds = [kind.value for kind in SlaKind]
        columns = []
        for kind in kinds:
            # One pass over the clocks, no sort by kind: each aggregate keeps its kind's
            # rows, and each percentile sorts its values once for all three fractions.
            mine = SlaClock.kind == kind
            columns += [
                func.count().filter(mine),
                func.avg(wall_seconds).filter(mine),
                func.percentile_cont(fractions).within_group(wall_seconds).filter(mine),
                func.percentile_cont(fractions).within_group(SlaClock.working_seconds).filter(mine),
            ]
        row = (await session.execute(_stopped_clocks(select(*columns), filters))).one()
        result: dict[str, Durations] = {}
        for index, kind in enumerate(kinds):
            count, mean, walls_pg, works_pg = row[4 * index : 4 * index + 4]
            if count:
                result[kind] = (
                    int(count),
                    float(mean),
                    [None if v is None else float(v) for v in walls_pg],
                    [None if v is None else float(v) for v in works_pg],
                )
        return result
    rows_query = select(
        SlaClock.kind, SlaClock.started_at, SlaClock.stopped_at, SlaClock.working_seconds
    )
    query = _stopped_clocks(rows_query, filters)
    walls: dict[str, list[float]] = {}
    works: dict[str, list[float]] = {}
    for row in (await session.execute(query)).all():
        walls.setdefault(row.kind, []).append((row.stopped_at - row.started_at).total_seconds())
        works.setdefault(row.kind, []).append(float(row.working_seconds))
    result = {}
    for kind, wall in walls.items():
        wall.sort()
        work = sorted(works[kind])
        result[kind] = (
            len(wall),
            sum(wall) / len(wall),
            [percentile(wall, f) for f in FRACTIONS],
            [percentile(work, f) for f in FRACTIONS],
        )
    return result


def _wall_seconds() -> ColumnElement[Any]:
    """Seconds as a double, like `timedelta.total_seconds()`; `'epoch'` written into the
    statement, so that it is the expression of `ix_sla_clocks_wall_bins`."""
    return func.date_part(literal_column("'epoch'"), SlaClock.stopped_at - SlaClock.started_at)


def _measures() -> dict[str, Any]:
    return {"wall": _wall_seconds(), "working": SlaClock.working_seconds}


def _wall_us() -> ColumnElement[Any]:
    seconds = func.extract("epoch", SlaClock.stopped_at - SlaClock.started_at)
    return cast(seconds * 1000000, BigInteger)


Histograms = dict[tuple[str, str], dict[int, int]]


async def _binned_durations(session: AsyncSession, filters: ReportFilters) -> dict[str, Durations]:
    """`durations` from the duration histograms (PostgreSQL, no filter on the tasks).

    The histograms of the whole days plus the partial days' clocks (live) give, per kind
    and measure, how many durations each bin holds; the rank rule of `periods.percentile`
    (the one of `percentile_cont`) says which ranks a percentile reads, the cumulated counts
    say which bin holds each, and only the period's durations inside those bins are read
    (`ix_sla_clocks_wall_bins`, `ix_sla_clocks_working_bins`), sorted, to take the exact
    values. The bins are ordered as the durations are, so the k-th smallest duration of
    the period is the (k - durations in lower bins)-th smallest of its bin."""
    window = rollups.split(filters.start, filters.end, DAY)
    histograms, wall_us = await _histograms(session, window)
    inside = await _inside(session, filters, histograms)
    result: dict[str, Durations] = {}
    for kind in sorted({kind for kind, _ in histograms}):
        wall = histograms.get((kind, "wall"), {})
        count = sum(wall.values())
        if not count:
            continue
        result[kind] = (
            count,
            wall_us.get(kind, 0) / count / 1e6,
            _percentiles(wall, inside.get((kind, "wall"), {})),
            _percentiles(histograms.get((kind, "working"), {}), inside.get((kind, "working"), {})),
        )
    return result


async def _histograms(
    session: AsyncSession, window: rollups.Split
) -> tuple[Histograms, dict[str, int]]:
    """Per kind and measure: durations per bin; per kind: the summed wall-clock durations
    (microseconds). The whole days' rollups plus the partial days' clocks, read once for
    both measures (grouping sets)."""
    wall_bin = func.opsflow_duration_bin(_wall_seconds())
    working_bin = func.opsflow_duration_bin(SlaClock.working_seconds)
    parts: list[Any] = [
        select(SlaClock.kind, wall_bin, working_bin, func.count(), func.sum(_wall_us()))
        .where(*_by_work(), window.edges(SlaClock.started_at))
        .group_by(
            func.grouping_sets(tuple_(SlaClock.kind, wall_bin), tuple_(SlaClock.kind, working_bin))
        )
    ]
    if window.whole:
        bins, hours, none = ReportDurationBin, ReportClockHour, cast(null(), Integer)
        parts += [
            select(
                bins.kind,
                case((bins.measure == "wall", bins.bin)),
                case((bins.measure == "working", bins.bin)),
                func.sum(bins.clocks),
                literal(0),
            )
            .where(window.slots(bins.day))
            .group_by(bins.kind, bins.measure, bins.bin),
            # The whole days' hours.
            select(hours.kind, none, none, literal(0), func.sum(hours.wall_us))
            .where(hours.hour >= window.first * 24, hours.hour < window.last * 24)
            .group_by(hours.kind),
        ]
    histograms: Histograms = {}
    wall_us: dict[str, int] = {}
    for kind, wall, working, count, micros in (await session.execute(rollups._union(parts))).all():
        if wall is None and working is None:  # the whole days' sums
            wall_us[kind] = wall_us.get(kind, 0) + int(micros or 0)
            continue
        if wall is not None:
            wall_us[kind] = wall_us.get(kind, 0) + int(micros or 0)
        measure, bin_number = ("wall", int(wall)) if wall is not None else ("working", int(working))
        histogram = histograms.setdefault((kind, measure), {})
        histogram[bin_number] = histogram.get(bin_number, 0) + int(count)
    return histograms, wall_us


async def _inside(
    session: AsyncSession, filters: ReportFilters, histograms: Histograms
) -> dict[tuple[str, str], dict[int, list[tuple[float, int]]]]:
    """The period's durations inside the bins that hold a rank some percentile reads, each
    distinct value with how many times it occurs."""
    reads = []
    for (kind, measure), histogram in histograms.items():
        ranked = _ranks_by_bin(histogram, sum(histogram.values()))
        if not ranked:
            continue
        seconds = _measures()[measure]
        bin_ = func.opsflow_duration_bin(seconds)
        reads.append(
            select(literal(measure), SlaClock.kind, bin_, seconds, func.count())
            .where(
                *_by_work(),
                SlaClock.started_at >= filters.start,
                SlaClock.started_at < filters.end,
                SlaClock.kind == kind,
                bin_.in_(sorted(ranked)),
            )
            .group_by(SlaClock.kind, bin_, seconds)
        )
    inside: dict[tuple[str, str], dict[int, list[tuple[float, int]]]] = {}
    if reads:
        for measure, kind, bin_number, value, count in (
            await session.execute(rollups._union(reads))
        ).all():
            by_bin = inside.setdefault((kind, measure), {})
            by_bin.setdefault(int(bin_number), []).append((float(value), int(count)))
    return inside


def _positions(count: int) -> list[tuple[float, int, int]]:
    """Per fraction: the rank `periods.percentile` interpolates at and its two neighbours."""
    result = []
    for fraction in FRACTIONS:
        position = fraction * (count - 1)
        low = int(position)
        result.append((position, low, min(low + 1, count - 1)))
    return result


def _ranks_by_bin(histogram: dict[int, int], count: int) -> dict[int, list[int]]:
    """The bins holding the ranks the percentiles read, with those ranks."""
    ranks = sorted({rank for _, low, high in _positions(count) for rank in (low, high)})
    found: dict[int, list[int]] = {}
    below = 0
    for bin_number in sorted(histogram):
        size = histogram[bin_number]
        found.update({bin_number: [r for r in ranks if below <= r < below + size]})
        below += size
    return {bin_number: ranks for bin_number, ranks in found.items() if ranks}


def _percentiles(
    histogram: dict[int, int], inside: dict[int, list[tuple[float, int]]]
) -> list[float | None]:
    """The percentiles of a measure from its histogram and the durations inside the bins
    that hold the ranks read (distinct values with their counts): the rank-th duration is
    the (rank - durations in the lower bins)-th smallest of its bin."""
    count = sum(histogram.values())
    if not count:
        return [None] * len(FRACTIONS)
    ranked = _ranks_by_bin(histogram, count)
    values: dict[int, float] = {}
    below = 0
    for bin_number in sorted(histogram):
        if bin_number in ranked:
            for rank in ranked[bin_number]:
                values[rank] = _nth(sorted(inside[bin_number]), rank - below)
        below += histogram[bin_number]
    return [
        values[low] + (values[high] - values[low]) * (position - low)
        for position, low, high in _positions(count)
    ]


def _nth(counted: list[tuple[float, int]], index: int) -> float:
    """The index-th (from 0) of the values, each repeated its count of times, in order."""
    for value, times in counted:
        if index < times:
            return value
        index -= times
    raise IndexError(index)


# --- rebuild ---------------------------------------------------------------------------


def _plain_clock() -> ColumnElement[bool]:
    """24x7 and never paused (PostgreSQL): its working time is its wall-clock time."""
    return and_(
        SlaClock.calendar_name.is_(None),
        func.jsonb_typeof(SlaClock.pauses) == "array",
        func.jsonb_array_length(SlaClock.pauses) == 0,
    )


async def clear_counting_clocks(session: AsyncSession) -> int:
    result = await session.execute(
        update(SlaClock)
        .where(SlaClock.stopped_at.is_(None), SlaClock.working_seconds.is_not(None))
        .values(working_seconds=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def rebuild_plain_clocks(session: AsyncSession) -> int | None:
    """PostgreSQL: the stopped plain clocks in one statement (exact: the interval's seconds
    as PostgreSQL gives them are what `timedelta.total_seconds()` gives). None elsewhere."""
    if _dialect(session) != "postgresql":
        return None
    wall = func.greatest(SlaClock.stopped_at, SlaClock.started_at) - SlaClock.started_at
    value = cast(func.extract("epoch", wall), Float)
    result = await session.execute(
        update(SlaClock)
        .where(
            SlaClock.stopped_at.is_not(None),
            _plain_clock(),
            SlaClock.working_seconds.is_distinct_from(value),
        )
        .values(working_seconds=value)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def stopped_clock_ids(
    session: AsyncSession, after: uuid.UUID | None, limit: int, *, plain_done: bool
) -> Sequence[SlaClock]:
    query = select(SlaClock).where(SlaClock.stopped_at.is_not(None)).order_by(SlaClock.id)
    if plain_done:
        query = query.where(~_plain_clock())
    if after is not None:
        query = query.where(SlaClock.id > after)
    return (await session.scalars(query.limit(limit))).all()
