"""The queries over SLA clocks: the breach and met rules in SQL, compliance per calendar,
the duration percentiles, and what `opsflow reports rebuild` recomputes.

Split from `repository` (the tallies of tasks and the dashboard) along the table they
read: these read `sla_clocks` (the tasks only for a filter).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, case, cast, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.models.enums import ClockStatus, SlaKind
from opsflow.models.sla import SlaClock
from opsflow.models.task import Task
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


async def calendar_compliance(
    session: AsyncSession, filters: ReportFilters, now: datetime
) -> Sequence[Any]:
    """Clocks of the period's tasks by calendar and kind: met, breached, counting, cancelled."""
    breached = clock_breached(now)
    cancelled = and_(SlaClock.cancelled.is_(True), ~breached)
    counting = and_(SlaClock.stopped_at.is_(None), ~breached)
    calendar = func.coalesce(SlaClock.calendar_name, "24x7").label("calendar")
    query = (
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
    query = _clocks_of_period(query, filters)
    return list((await session.execute(query)).all())


def _stopped_clocks(query: Any, filters: ReportFilters) -> Any:
    """Clocks of the period stopped by the work (response or completion), not by a
    cancellation."""
    return _clocks_of_period(
        query.where(
            SlaClock.stopped_at.is_not(None),
            SlaClock.cancelled.is_(False),
            SlaClock.working_seconds.is_not(None),
        ),
        filters,
    )


FRACTIONS = (0.5, 0.9, 0.95)
Durations = tuple[int, float | None, list[float | None], list[float | None]]


async def durations(session: AsyncSession, filters: ReportFilters) -> dict[str, Durations]:
    """Per clock kind: count, mean wall seconds, wall and working percentiles of the stopped
    clocks (one pass over them)."""
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
