"""Every query of the reports: aggregates computed by the database, grouped small.

Each report reads a few grouped aggregates (at most a few thousand rows) over the tasks of
the period and their SLA clocks; the rows a report returns never grow with the number of
tasks. What the database cannot compute portably — time zones, working time — is kept
out of SQL: rows are grouped by UTC slot (see `periods`), and a clock's working time is
stored on it when it stops (`sla_clocks.working_seconds`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.kit.sql import epoch_seconds
from opsflow.kit.types import UTCDateTime
from opsflow.models.enums import (
    ClockStatus,
    EscalationStatus,
    Role,
    SlaKind,
    TaskStatus,
    TaskType,
)
from opsflow.models.escalation import EscalationEvent
from opsflow.models.notification_preference import NotificationPreference
from opsflow.models.sla import SlaClock, SlaEvent
from opsflow.models.task import Task
from opsflow.models.team import Team
from opsflow.models.user import User
from opsflow.reports.periods import percentile

OPEN_STATUSES = (
    TaskStatus.CREATED,
    TaskStatus.ASSIGNED,
    TaskStatus.IN_PROGRESS,
    TaskStatus.BLOCKED,
)
# Roles that take work: the people team utilisation counts.
RESPONDER_ROLES = (Role.TEAM_LEAD, Role.DEVELOPER, Role.SUPPORT)
BREACH_EVENTS = ("START_BREACH", "RESOLVE_BREACH")
PRIORITY_WEIGHT = {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}


@dataclass(frozen=True)
class ReportFilters:
    start: datetime
    end: datetime
    task_type: str | None = None
    priority: str | None = None
    team_id: uuid.UUID | None = None
    customer_tier: str | None = None
    tz: str = "UTC"


def task_clauses(filters: ReportFilters, *, window: bool = True) -> list[ColumnElement[bool]]:
    """The filters on tasks; `window`: created in [start, end)."""
    clauses: list[ColumnElement[bool]] = []
    if window:
        clauses += [Task.created_at >= filters.start, Task.created_at < filters.end]
    if filters.task_type is not None:
        clauses.append(Task.task_type == filters.task_type)
    if filters.priority is not None:
        clauses.append(Task.priority == filters.priority)
    if filters.team_id is not None:
        clauses.append(Task.team_id == filters.team_id)
    if filters.customer_tier is not None:
        clauses.append(Task.customer_tier == filters.customer_tier)
    return clauses


def _clocks_of_period(query: Any, filters: ReportFilters) -> Any:
    """Restrict a query over `sla_clocks` to the clocks of the period's tasks. A task's clocks
    start at its creation (`sla.service.create_clocks`), so without a filter on the tasks
    themselves the window applies to `started_at` and the tasks are not read."""
    clauses = task_clauses(filters, window=False)
    if not clauses:
        return query.where(SlaClock.started_at >= filters.start, SlaClock.started_at < filters.end)
    return query.join(Task, Task.id == SlaClock.task_id).where(*task_clauses(filters))


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


# PostgreSQL settings for the transaction that reads a report: groups by an expression
# (the UTC slot) are estimated as one per row, which plans an external sort of every row;
# the groups are few (at most a few thousand), so hash them, and give percentiles the
# memory to sort in place. No JIT: compiling the few expressions of a report costs more
# than it saves (and the sort penalty's cost estimates would always trigger it).
REPORT_SETTINGS = {"enable_sort": "off", "work_mem": "256MB", "jit": "off"}


async def prepare(session: AsyncSession) -> None:
    """Set REPORT_SETTINGS for the rest of the transaction (PostgreSQL only)."""
    if _dialect(session) != "postgresql":
        return
    for name, value in REPORT_SETTINGS.items():
        await session.execute(select(func.set_config(name, value, True)))


def _slot(dialect: str, column: Any, step: int) -> ColumnElement[Any]:
    """Whole `step`s of seconds since the epoch (exact: integer seconds on SQLite; on
    PostgreSQL the double `date_part` is exact to the microsecond at today's epochs, so an
    instant a microsecond before a slot boundary still floors below it)."""
    if dialect == "postgresql":
        return cast(func.floor(func.date_part("epoch", column) / step), Integer)
    return cast(func.strftime("%s", column), Integer).op("/")(step)


def _now(now: datetime) -> ColumnElement[Any]:
    return literal(now, UTCDateTime())


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


def task_breached(now: datetime) -> ColumnElement[bool]:
    """A task with a breached clock at `now`: `tasks.sla_breach_at` (the earliest instant
    from which one of its clocks counts as breached, see `sla.clocks.breached_since`) is
    at or before it. Equal to `clock_breached` over the task's clocks for a `now` no earlier
    than the instants its clocks recorded; a report is read at the present."""
    return and_(Task.sla_breach_at.is_not(None), Task.sla_breach_at <= _now(now))


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


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _completion_seconds() -> ColumnElement[Any]:
    return epoch_seconds(Task.completed_at) - epoch_seconds(Task.created_at)


def _tally_columns(now: datetime) -> list[ColumnElement[Any]]:
    completed = and_(Task.status == TaskStatus.COMPLETED, Task.completed_at.is_not(None))
    return [
        func.count().label("total"),
        _count_if(completed).label("completed"),
        _count_if(Task.status.in_(OPEN_STATUSES)).label("open"),
        _count_if(Task.status == TaskStatus.CANCELLED).label("cancelled"),
        func.sum(case((completed, _completion_seconds()), else_=None)).label("completion_seconds"),
        _count_if(task_breached(now)).label("breached"),
        func.coalesce(
            func.sum(
                case(
                    (
                        Task.status.in_(OPEN_STATUSES),
                        case(PRIORITY_WEIGHT, value=Task.priority, else_=0),
                    ),
                    else_=0,
                )
            ),
            0,
        ).label("workload"),
    ]


def _tallied(
    keys: Sequence[Any], filters: ReportFilters, now: datetime, *, window: bool
) -> Select[Any]:
    return (
        select(*keys, *_tally_columns(now))
        .select_from(Task)
        .where(*task_clauses(filters, window=window))
        .group_by(*keys)
    )


async def task_tallies(
    session: AsyncSession, filters: ReportFilters, now: datetime, step: int
) -> Sequence[Any]:
    """Tallies of the period's tasks by priority, type and creation slot."""
    slot = _slot(_dialect(session), Task.created_at, step).label("slot")
    query = _tallied([Task.priority, Task.task_type, slot], filters, now, window=True)
    return list((await session.execute(query)).all())


async def people_tallies(
    session: AsyncSession, filters: ReportFilters, now: datetime
) -> Sequence[Any]:
    """Tallies by primary assignee and team."""
    query = _tallied([Task.assigned_to, Task.team_id], filters, now, window=True)
    return list((await session.execute(query)).all())


async def tier_tallies(
    session: AsyncSession, filters: ReportFilters, now: datetime
) -> Sequence[Any]:
    query = _tallied([Task.customer_tier], filters, now, window=True)
    return list((await session.execute(query)).all())


async def severity_tallies(
    session: AsyncSession, filters: ReportFilters, now: datetime
) -> Sequence[Any]:
    query = _tallied([Task.priority], filters, now, window=True).where(
        Task.task_type == TaskType.INCIDENT
    )
    return list((await session.execute(query)).all())


async def tag_tallies(session: AsyncSession, filters: ReportFilters) -> Sequence[Any]:
    """Incidents of the period by tag: count, completed count, completion seconds."""
    dialect = _dialect(session)
    function = (
        func.jsonb_array_elements_text(Task.tags)
        if dialect == "postgresql"
        else func.json_each(Task.tags)
    )
    tags = function.table_valued("value").alias("tag")
    completed = and_(Task.status == TaskStatus.COMPLETED, Task.completed_at.is_not(None))
    query = (
        select(
            tags.c.value.label("tag"),
            func.count().label("count"),
            _count_if(completed).label("completed"),
            func.sum(case((completed, _completion_seconds()), else_=None)).label("seconds"),
        )
        .select_from(Task)
        .join(tags, true())
        .where(*task_clauses(filters), Task.task_type == TaskType.INCIDENT)
        .group_by(tags.c.value)
    )
    return list((await session.execute(query)).all())


async def users_by_id(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, User]:
    if not ids:
        return {}
    rows = await session.scalars(select(User).where(User.id.in_(ids)))
    return {u.id: u for u in rows}


async def teams_by_id(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Team]:
    if not ids:
        return {}
    rows = await session.scalars(select(Team).where(Team.id.in_(ids)))
    return {t.id: t for t in rows}


# --- the dashboard ----------------------------------------------------------------------


async def open_incident_counts(session: AsyncSession, filters: ReportFilters) -> tuple[int, int]:
    query = select(func.count(), _count_if(Task.priority == "CRITICAL")).where(
        *task_clauses(filters, window=False),
        Task.task_type == TaskType.INCIDENT,
        Task.status.in_(OPEN_STATUSES),
    )
    active, critical = (await session.execute(query)).one()
    return int(active), int(critical)


async def tasks_at_risk(session: AsyncSession, filters: ReportFilters, now: datetime) -> int:
    """Open tasks with a counting clock past its warning instant and not yet breached."""
    until = func.coalesce(SlaClock.paused_at, _now(now))
    query = (
        select(func.count(func.distinct(SlaClock.task_id)))
        .join(Task, Task.id == SlaClock.task_id)
        .where(
            SlaClock.stopped_at.is_(None),
            SlaClock.status != ClockStatus.BREACHED,
            until < SlaClock.deadline,
            SlaClock.warning_at.is_not(None),
            until >= SlaClock.warning_at,
            Task.status.in_(OPEN_STATUSES),
            *task_clauses(filters, window=False),
        )
    )
    return int((await session.execute(query)).scalar_one())


async def pending_escalations(session: AsyncSession, filters: ReportFilters) -> int:
    query = (
        select(func.count())
        .select_from(EscalationEvent)
        .join(Task, Task.id == EscalationEvent.task_id)
        .where(
            EscalationEvent.status == EscalationStatus.PENDING,
            *task_clauses(filters, window=False),
        )
    )
    return int((await session.execute(query)).scalar_one())


async def utilization(session: AsyncSession, filters: ReportFilters) -> tuple[int, int]:
    """(responders with at least one open task, active responders)."""
    busy = (
        select(Task.id)
        .where(
            Task.assigned_to == User.id,
            Task.status.in_(OPEN_STATUSES),
            *task_clauses(filters, window=False),
        )
        .exists()
    )
    clauses: list[ColumnElement[bool]] = [
        User.is_active.is_(True),
        User.role.in_(RESPONDER_ROLES),
    ]
    if filters.team_id is not None:
        clauses.append(User.team_id == filters.team_id)
    query = select(_count_if(busy), func.count()).select_from(User).where(*clauses)
    working, everyone = (await session.execute(query)).one()
    return int(working), int(everyone)


async def recent_breaches(
    session: AsyncSession, filters: ReportFilters, limit: int
) -> Sequence[Any]:
    query = (
        select(
            SlaEvent.task_id,
            Task.title,
            SlaEvent.sla_type,
            SlaEvent.delay_minutes,
            SlaEvent.triggered_at,
        )
        .join(Task, Task.id == SlaEvent.task_id)
        .where(
            SlaEvent.event_type.in_(BREACH_EVENTS),
            SlaEvent.triggered_at >= filters.start,
            SlaEvent.triggered_at < filters.end,
            *task_clauses(filters, window=False),
        )
        .order_by(SlaEvent.triggered_at.desc(), SlaEvent.id)
        .limit(limit)
    )
    return list((await session.execute(query)).all())


async def upcoming_deadlines(
    session: AsyncSession, filters: ReportFilters, now: datetime, limit: int
) -> Sequence[Any]:
    """Counting (not paused) clocks of open tasks whose deadline is still ahead, soonest
    first."""
    query = (
        select(
            SlaClock.task_id,
            Task.title,
            SlaClock.kind,
            SlaClock.deadline,
            SlaClock.warning_at,
        )
        .join(Task, Task.id == SlaClock.task_id)
        .where(
            SlaClock.stopped_at.is_(None),
            SlaClock.paused_at.is_(None),
            SlaClock.deadline > _now(now),
            Task.status.in_(OPEN_STATUSES),
            *task_clauses(filters, window=False),
        )
        .order_by(SlaClock.deadline, SlaClock.task_id, SlaClock.kind)
        .limit(limit)
    )
    return list((await session.execute(query)).all())


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


async def acknowledgements(
    session: AsyncSession, filters: ReportFilters, step: int
) -> Sequence[Any]:
    """Incidents acknowledged in [start, end) by responder and UTC slot."""
    slot = _slot(_dialect(session), Task.acknowledged_at, step).label("slot")
    query = (
        select(Task.acknowledged_by, slot, func.count().label("count"))
        .where(
            Task.acknowledged_at >= filters.start,
            Task.acknowledged_at < filters.end,
            Task.acknowledged_by.is_not(None),
            Task.task_type == TaskType.INCIDENT,
            *task_clauses(filters, window=False),
        )
        .group_by(Task.acknowledged_by, slot)
    )
    return list((await session.execute(query)).all())


async def user_zones(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The time zone of each user's notification preferences (the first by name)."""
    if not ids:
        return {}
    query = (
        select(NotificationPreference.user_id, func.min(NotificationPreference.timezone))
        .where(
            NotificationPreference.user_id.in_(ids),
            NotificationPreference.timezone.is_not(None),
        )
        .group_by(NotificationPreference.user_id)
    )
    return {row[0]: str(row[1]) for row in (await session.execute(query)).all()}


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
