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
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.kit.sql import epoch_seconds
from opsflow.kit.types import UTCDateTime
from opsflow.models.enums import (
    ClockStatus,
    EscalationStatus,
    Role,
    TaskStatus,
    TaskType,
)
from opsflow.models.escalation import EscalationEvent
from opsflow.models.notification_preference import NotificationPreference
from opsflow.models.report import SLOT_SECONDS
from opsflow.models.sla import SlaClock, SlaEvent
from opsflow.models.task import Task
from opsflow.models.team import Team
from opsflow.models.user import User
from opsflow.reports import rollups

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
    return clauses + value_clauses(Task, filters)


def value_clauses(table: Any, filters: ReportFilters) -> list[ColumnElement[bool]]:
    """The filters on priority, team and customer tier, over `table`: the tasks, or a
    rollup table that keeps those three values (every rollup does)."""
    clauses: list[ColumnElement[bool]] = []
    if filters.priority is not None:
        clauses.append(table.priority == filters.priority)
    if filters.team_id is not None:
        clauses.append(table.team_id == filters.team_id)
    if filters.customer_tier is not None:
        clauses.append(table.customer_tier == filters.customer_tier)
    return clauses


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


# PostgreSQL settings for the transaction that reads a report: groups by an expression
# (the UTC slot) are estimated as one per row, which plans an external sort of every row;
# the groups are few (at most a few thousand), so hash them, and give percentiles the
# memory to sort in place. No JIT: compiling the few expressions of a report costs more
# than it saves (and the sort penalty's cost estimates would always trigger it). Plans for
# the values of each read: after five executions of a prepared statement PostgreSQL may
# keep a generic plan, blind to how few rows the period's partial ends and the filter
# select (at 1M a team filter's tallies went from 20 to 240 ms); planning a report's few
# statements costs a few milliseconds at most.
REPORT_SETTINGS = {
    "enable_sort": "off",
    "work_mem": "256MB",
    "jit": "off",
    "plan_cache_mode": "force_custom_plan",
}


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


def task_breached(now: datetime) -> ColumnElement[bool]:
    """A task with a breached clock at `now`: `tasks.sla_breach_at` (the earliest instant
    from which one of its clocks counts as breached, see `sla.clocks.breached_since`) is
    at or before it. Equal to `clock_breached` over the task's clocks for a `now` no earlier
    than the instants its clocks recorded; a report is read at the present. (A task with
    no breach instant compares as NULL, which no WHERE or FILTER counts.)"""
    return Task.sla_breach_at <= _now(now)


def _is_open() -> ColumnElement[bool]:
    """The open statuses, written into the statement (not bound): a plan the database
    caches for a prepared statement then still knows they are the few open tasks and reads
    them through the status index, where a generic plan with parameters scanned every
    task. (Constants of the code, never input.)"""
    statuses: BindParameter[list[str]] = bindparam(
        "open_statuses", [s.value for s in OPEN_STATUSES], expanding=True
    )
    return Task.status.in_(statuses.render_literal_execute())


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _completion_seconds() -> ColumnElement[Any]:
    return epoch_seconds(Task.completed_at) - epoch_seconds(Task.created_at)


@dataclass
class Tally:
    """The tasks of one group: the counts the reports read (see `_fold`)."""

    keys: dict[str, Any]
    total: int = 0
    completed: int = 0
    open: int = 0
    cancelled: int = 0
    completion_seconds: float | None = None
    breached: int = 0
    workload: int = 0

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["keys"][name]
        except KeyError:
            raise AttributeError(name) from None


def _tallied(
    keys: Sequence[Any], filters: ReportFilters, now: datetime, *, window: bool
) -> Select[Any]:
    """Per group and status (and priority, for the workload): the count, the completed
    count (with a completion instant), their summed completion seconds and the breached
    count. Grouping by status costs a few more groups and saves most of the per-row work:
    which status counts as what is decided once per group, in `_fold`."""
    extra = [Task.status] + ([] if any(k is Task.priority for k in keys) else [Task.priority])
    return (
        select(
            *keys,
            *extra,
            func.count().label("total"),
            func.count(Task.completed_at).label("with_completion"),
            func.sum(_completion_seconds()).label("completion_seconds"),
            func.count().filter(task_breached(now)).label("breached"),
        )
        .select_from(Task)
        .where(*task_clauses(filters, window=window))
        .group_by(*keys, *extra)
    )


_OPEN = frozenset(status.value for status in OPEN_STATUSES)


def _fold(rows: Sequence[Any], names: Sequence[str]) -> list[Tally]:
    """The rows of `_tallied` folded into one `Tally` per group (`names`: its keys):
    completed = COMPLETED with a completion instant (their completion seconds summed),
    open = the open statuses, cancelled = CANCELLED, workload = the priority weights of the
    open tasks."""
    groups: dict[tuple[Any, ...], Tally] = {}
    for row in rows:
        mapping = row._mapping
        key = tuple(mapping[name] for name in names)
        tally = groups.get(key)
        if tally is None:
            tally = groups[key] = Tally(dict(zip(names, key, strict=True)))
        total = int(mapping["total"])
        status = mapping["status"]
        tally.total += total
        tally.breached += int(mapping["breached"])
        if status == TaskStatus.COMPLETED:
            tally.completed += int(mapping["with_completion"])
            seconds = mapping["completion_seconds"]
            if seconds is not None:
                tally.completion_seconds = (tally.completion_seconds or 0.0) + float(seconds)
        elif status in _OPEN:
            tally.open += total
            tally.workload += PRIORITY_WEIGHT.get(mapping["priority"], 0) * total
        elif status == TaskStatus.CANCELLED:
            tally.cancelled += total
    return list(groups.values())


async def task_tallies(
    session: AsyncSession, filters: ReportFilters, now: datetime, step: int
) -> Sequence[Tally]:
    """Tallies of the period's tasks by priority, type and creation slot."""
    names = ["priority", "task_type", "slot"]
    if rollups.enabled(session):
        return _fold(await rollups.tallies(session, names, filters, now, step=step), names)
    slot = _slot(_dialect(session), Task.created_at, step).label("slot")
    query = _tallied([Task.priority, Task.task_type, slot], filters, now, window=True)
    return _fold((await session.execute(query)).all(), names)


async def people_tallies(
    session: AsyncSession, filters: ReportFilters, now: datetime
) -> Sequence[Tally]:
    """Tallies by primary assignee and team."""
    if rollups.enabled(session):
        names = ["assigned_to", "team_id"]
        return _fold(await rollups.tallies(session, names, filters, now), names)
    query = _tallied([Task.assigned_to, Task.team_id], filters, now, window=True)
    return _fold((await session.execute(query)).all(), ["assigned_to", "team_id"])


async def tier_tallies(
    session: AsyncSession, filters: ReportFilters, now: datetime
) -> Sequence[Tally]:
    if rollups.enabled(session):
        rows = await rollups.tallies(session, ["customer_tier"], filters, now)
        return _fold(rows, ["customer_tier"])
    query = _tallied([Task.customer_tier], filters, now, window=True)
    return _fold((await session.execute(query)).all(), ["customer_tier"])


async def severity_tallies(
    session: AsyncSession, filters: ReportFilters, now: datetime
) -> Sequence[Tally]:
    if rollups.enabled(session):
        rows = await rollups.tallies(session, ["priority"], filters, now, incidents=True)
        return _fold(rows, ["priority"])
    query = _tallied([Task.priority], filters, now, window=True).where(
        Task.task_type == TaskType.INCIDENT
    )
    return _fold((await session.execute(query)).all(), ["priority"])


async def tag_tallies(session: AsyncSession, filters: ReportFilters) -> Sequence[Any]:
    """Incidents of the period by tag: count, completed count, completion seconds."""
    if rollups.enabled(session):
        return await rollups.tag_tallies(session, filters)
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
        _is_open(),
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
            _is_open(),
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
    """(responders with at least one open task, active responders). The busy ones are
    the distinct assignees of the open tasks (one pass over the open tasks), not a probe
    of the tasks per person: a plan the database may cache for the probe scanned every
    task once per person."""
    clauses: list[ColumnElement[bool]] = [
        User.is_active.is_(True),
        User.role.in_(RESPONDER_ROLES),
    ]
    if filters.team_id is not None:
        clauses.append(User.team_id == filters.team_id)
    busy = (
        select(func.count(func.distinct(Task.assigned_to)))
        .join(User, User.id == Task.assigned_to)
        .where(_is_open(), *clauses, *task_clauses(filters, window=False))
        .scalar_subquery()
    )
    everyone = select(func.count()).select_from(User).where(*clauses).scalar_subquery()
    working, total = (await session.execute(select(busy, everyone))).one()
    return int(working), int(total)


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
            _is_open(),
            *task_clauses(filters, window=False),
        )
        .order_by(SlaClock.deadline, SlaClock.task_id, SlaClock.kind)
        .limit(limit)
    )
    return list((await session.execute(query)).all())


async def acknowledgements(
    session: AsyncSession, filters: ReportFilters, step: int
) -> Sequence[Any]:
    """Incidents acknowledged in [start, end) by responder and UTC slot (`step` a whole
    number of quarter hours)."""
    if rollups.enabled(session) and step == SLOT_SECONDS:
        return await rollups.acknowledgements(session, filters)
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
