"""Every query on tasks. SLA filters are computed in SQL against a bound `now`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.types import NullType

from opsflow.db import memo, shared
from opsflow.kit.pagination import PageParams
from opsflow.kit.sql import escape_like
from opsflow.kit.types import UTCDateTime
from opsflow.models.audit import AuditLog
from opsflow.models.enums import ClockStatus, SlaKind
from opsflow.models.sla import SlaClock, SlaEvent
from opsflow.models.task import Task, TaskAssignee
from opsflow.models.user import User
from opsflow.sla.repository import remember_clocks
from opsflow.sla.status import State as SlaState
from opsflow.sla.status import level

SortField = Literal["created_at", "updated_at", "priority", "deadline"]


@dataclass
class TaskFilters:
    status: list[str] = field(default_factory=list)
    priority: list[str] = field(default_factory=list)
    task_type: str | None = None
    assigned_to: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    customer_tier: str | None = None
    has_breach: bool | None = None
    sla_state: SlaState | None = None
    tags: list[str] = field(default_factory=list)
    q: str | None = None
    external_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    include_deleted: bool = False


# Built once (see _GET_WITH_CLOCKS below): a task by id, as it is read or to be changed.
_GET = select(Task).where(Task.id == bindparam("task_id"))
_GET_FOR_UPDATE = _GET.with_for_update()


async def get(
    session: AsyncSession, task_id: uuid.UUID, *, for_update: bool = False
) -> Task | None:
    query = _GET_FOR_UPDATE if for_update else _GET
    result: Task | None = await session.scalar(query, {"task_id": task_id})
    return result


# A task's two clocks joined to it: the rows that read tasks to show them load their clocks
# in the same statement (and leave them in the unit of work's memo, see db.memo).
_START = aliased(SlaClock, name="start_clock")
_RESOLVE = aliased(SlaClock, name="resolve_clock")


def _with_clocks(query: Select[Any]) -> Select[Any]:
    return (
        query.add_columns(_START, _RESOLVE)
        .outerjoin(_START, and_(_START.task_id == Task.id, _START.kind == SlaKind.START.value))
        .outerjoin(
            _RESOLVE, and_(_RESOLVE.task_id == Task.id, _RESOLVE.kind == SlaKind.RESOLVE.value)
        )
    )


# A task to be changed with its two clocks, all three locked (in the order a separate read
# of the task, then of its clocks by kind, locks them: task, RESOLVE, START). Inner joins:
# PostgreSQL locks no row on the nullable side of an outer join, so a task short of a clock
# gives no row and is read the separate way.
_LOCK_WITH_CLOCKS = (
    select(Task, _RESOLVE, _START)
    .join(_RESOLVE, and_(_RESOLVE.task_id == Task.id, _RESOLVE.kind == SlaKind.RESOLVE.value))
    .join(_START, and_(_START.task_id == Task.id, _START.kind == SlaKind.START.value))
    .where(Task.id == bindparam("task_id"))
    .with_for_update()
)


async def lock_with_clocks(
    session: AsyncSession, task_id: uuid.UUID
) -> tuple[Task, dict[str, SlaClock]] | None:
    """The task and its clocks by kind, locked, in one statement (left in the unit of
    work's memo for the answer); None for a task that is missing or has not both clocks."""
    row = (await session.execute(_LOCK_WITH_CLOCKS, {"task_id": task_id})).first()
    if row is None:
        return None
    task, resolve, start = row
    clocks = {SlaKind.START.value: start, SlaKind.RESOLVE.value: resolve}
    remember_clocks(session, task.id, [start, resolve])
    return task, clocks


def _remember_clocks(session: AsyncSession, rows: Any) -> list[Task]:
    tasks = []
    for task, start, resolve in rows:
        remember_clocks(session, task.id, [c for c in (start, resolve) if c is not None])
        tasks.append(task)
    return tasks


# Built once: the statements of the hottest reads are not rebuilt per request (building
# one costs about as much CPU as executing it; SQLAlchemy's compiled cache needs only its
# cache key).
_GET_WITH_CLOCKS = _with_clocks(select(Task)).where(Task.id == bindparam("task_id"))


async def get_with_clocks(session: AsyncSession, task_id: uuid.UUID) -> Task | None:
    """The task (cancelled ones included) and its clocks, in one statement."""
    rows = await session.execute(_GET_WITH_CLOCKS, {"task_id": task_id})
    tasks = _remember_clocks(session, rows)
    return tasks[0] if tasks else None


async def lock_many(session: AsyncSession, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Task]:
    """These tasks, locked in id order and refreshed from the locked rows."""
    if not task_ids:
        return {}
    query = (
        select(Task)
        .where(Task.id.in_(set(task_ids)))
        .order_by(Task.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {task.id: task for task in await session.scalars(query)}


async def load(session: AsyncSession, task_ids: Sequence[uuid.UUID]) -> None:
    """Bring these tasks into the unit of work's identity map in one statement, so that
    `session.get` of any of them later asks nothing (the relay's consumers each get the
    task of every event they handle). The identity map holds objects weakly, so where the
    unit of work shares its reads (`db.shared`) they are kept there for its duration."""
    if not task_ids:
        return
    tasks = (await session.scalars(select(Task).where(Task.id.in_(set(task_ids))))).all()
    kept = shared(session, "tasks.loaded")
    if kept is not None:
        kept.update((task.id, task) for task in tasks)


async def open_with_dedup_key(
    session: AsyncSession, source: str | None, dedup_key: str, other_than: uuid.UUID
) -> Task | None:
    """The open task (an alert's incident) holding this dedup key, other than `other_than`."""
    query = select(Task).where(
        Task.source == source,
        Task.dedup_key == dedup_key,
        Task.completed_at.is_(None),
        Task.deleted_at.is_(None),
        Task.id != other_than,
    )
    return await session.scalar(query.limit(1))


ASSIGNEES = "task_assignees"  # db.memo kind: task id -> additional assignees in order


def remember_no_assignees(session: AsyncSession, task_id: uuid.UUID) -> None:
    """A task just created without additional assignees: later reads need not ask."""
    memo(session, ASSIGNEES)[task_id] = []


_ASSIGNEES = (
    select(TaskAssignee.task_id, TaskAssignee.user_id)
    .where(TaskAssignee.task_id.in_(bindparam("task_ids", expanding=True)))
    .order_by(TaskAssignee.added_at, TaskAssignee.user_id)
)


async def additional_assignees(
    session: AsyncSession, task_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Each task's additional assignees in the order they were added (tasks without any
    are left out); what this unit of work already read is not read again."""
    known: dict[uuid.UUID, list[uuid.UUID]] = memo(session, ASSIGNEES)
    missing = set(task_ids) - known.keys()
    if missing:
        rows = await session.execute(_ASSIGNEES, {"task_ids": list(missing)})
        loaded: dict[uuid.UUID, list[uuid.UUID]] = {task_id: [] for task_id in missing}
        for task_id, user_id in rows:
            loaded[task_id].append(user_id)
        known.update(loaded)
    return {task_id: list(known[task_id]) for task_id in set(task_ids) if known[task_id]}


# The users named by tasks, with the additional assignees of those tasks whose assignees
# the unit of work does not know yet (their order: see additional_assignees).
_PEOPLE = (
    select(User, TaskAssignee.task_id)
    .outerjoin(
        TaskAssignee,
        and_(
            TaskAssignee.user_id == User.id,
            TaskAssignee.task_id.in_(bindparam("task_ids", expanding=True)),
        ),
    )
    .where(
        or_(User.id.in_(bindparam("user_ids", expanding=True)), TaskAssignee.task_id.is_not(None))
    )
    .order_by(TaskAssignee.added_at, TaskAssignee.user_id)
)
_USERS = select(User).where(User.id.in_(bindparam("user_ids", expanding=True)))


USERS = "task_people"  # db.memo kind: user id -> the User that people() loaded


async def people(
    session: AsyncSession, tasks: Sequence[Task]
) -> tuple[dict[uuid.UUID, list[uuid.UUID]], dict[uuid.UUID, User]]:
    """Each task's additional assignees (as :func:`additional_assignees` gives them) and
    the users these tasks name (creator, assignee, additional assignees) by id: one
    statement for both, where the unit of work does not know the assignees yet. Users an
    earlier call of this unit of work loaded are not read again (a change that read the
    task's people before changing it answers without another read)."""
    known: dict[uuid.UUID, list[uuid.UUID]] = memo(session, ASSIGNEES)
    seen: dict[uuid.UUID, User] = memo(session, USERS)
    task_ids = {task.id for task in tasks}
    missing = task_ids - known.keys()
    direct = {u for task in tasks for u in (task.created_by, task.assigned_to) if u}
    users: dict[uuid.UUID, User] = {}
    if missing:
        rows = await session.execute(_PEOPLE, {"task_ids": list(missing), "user_ids": list(direct)})
        loaded: dict[uuid.UUID, list[uuid.UUID]] = {task_id: [] for task_id in missing}
        for user, task_id in rows:
            users[user.id] = user
            if task_id is not None:
                loaded[task_id].append(user.id)
        known.update(loaded)
    extras = {task_id: list(known[task_id]) for task_id in task_ids if known[task_id]}
    wanted = direct.union(*extras.values()) - users.keys()
    for user_id in wanted & seen.keys():
        users[user_id] = seen[user_id]
    wanted -= users.keys()
    if wanted:
        for user in await session.scalars(_USERS, {"user_ids": list(wanted)}):
            users[user.id] = user
    seen.update(users)
    return extras, users


async def set_additional_assignees(
    session: AsyncSession, task_id: uuid.UUID, user_ids: Sequence[uuid.UUID], now: datetime
) -> None:
    current = (await additional_assignees(session, [task_id])).get(task_id, [])
    # The order of rows added at the same instant is the database's (added_at, user_id):
    # read it back rather than guess it.
    memo(session, ASSIGNEES).pop(task_id, None)
    wanted = list(dict.fromkeys(user_ids))
    for row in await session.scalars(
        select(TaskAssignee).where(
            TaskAssignee.task_id == task_id, TaskAssignee.user_id.not_in(wanted)
        )
    ):
        await session.delete(row)
    for user_id in wanted:
        if user_id not in current:
            session.add(TaskAssignee(task_id=task_id, user_id=user_id, added_at=now))
    await session.flush()


# The columns of an audit trail entry as a task's detail shows it, in this order.
_TRAIL_COLUMNS = (
    AuditLog.action,
    AuditLog.actor_name,
    AuditLog.actor_type,
    AuditLog.actor_id,
    AuditLog.timestamp,
    AuditLog.changes,
)
_AUDIT_TRAIL = (
    select(*_TRAIL_COLUMNS)
    .where(AuditLog.entity_type == "task", AuditLog.entity_id == bindparam("task_id"))
    .order_by(AuditLog.seq)
    .limit(bindparam("limit"))
)


AUDIT_TRAIL_LIMIT = 500  # rows a task's page shows of its audit trail, oldest first


async def audit_trail(
    session: AsyncSession, task_id: uuid.UUID, limit: int = AUDIT_TRAIL_LIMIT
) -> list[Any]:
    """The task's audit rows, oldest first: the columns a task's page shows (not the whole
    row with its states and hashes)."""
    rows = await session.execute(_AUDIT_TRAIL, {"task_id": task_id, "limit": limit})
    return list(rows)


_SLA_EVENTS = (
    select(
        SlaEvent.id,
        SlaEvent.event_type,
        SlaEvent.severity,
        SlaEvent.triggered_at,
        SlaEvent.notification_sent,
    )
    .where(SlaEvent.task_id == bindparam("task_id"))
    .order_by(SlaEvent.due_at, SlaEvent.event_type)
)


async def sla_events_brief(session: AsyncSession, task_id: uuid.UUID) -> list[Any]:
    """The task's SLA events as a task's page lists them, in the order they fall due."""
    return list(await session.execute(_SLA_EVENTS, {"task_id": task_id}))


# --- A task's page in one statement -----------------------------------------------------


class Person(NamedTuple):
    """A user as a task names them (creator, assignee, additional assignee)."""

    id: uuid.UUID
    username: str
    full_name: str | None


class TrailRow(NamedTuple):
    action: str
    actor_name: str | None
    actor_type: str
    actor_id: uuid.UUID | None
    timestamp: datetime
    changes: dict[str, Any] | None


class SlaEventRow(NamedTuple):
    id: uuid.UUID
    event_type: str
    severity: str
    triggered_at: datetime
    notification_sent: bool


@dataclass
class TaskPage:
    """What a task's page shows of the database: the task (its clocks remembered, see
    db.memo), its additional assignees in order, the people it names by id, its SLA events
    and, when asked for, its audit trail."""

    task: Task
    extras: list[uuid.UUID]
    people: dict[uuid.UUID, Person]
    events: list[SlaEventRow]
    trail: list[TrailRow] | None


def _array(query: Select[Any]) -> ColumnElement[Any]:
    """`ARRAY(query)`: the rows of a correlated subquery, in its order, as one value.
    asyncpg decodes an array of anonymous records into tuples of native values (uuid,
    timestamptz as aware UTC, jsonb through the connection's JSON codec), so no column
    takes a result processor of SQLAlchemy's."""
    return type_coerce(func.array(query.scalar_subquery()), NullType())


def _page_statement(with_audit_trail: bool) -> Select[Any]:
    """The task, its clocks and (PostgreSQL) everything else its page shows, in one
    statement: a task's page otherwise takes four round trips, and on a busy server the
    sending and waiting of each costs more CPU than the statement's own work."""
    assigned = select(TaskAssignee.user_id).where(TaskAssignee.task_id == Task.id)
    extras = assigned.order_by(TaskAssignee.added_at, TaskAssignee.user_id)
    people = select(func.row(User.id, User.username, User.full_name)).where(
        or_(User.id == Task.created_by, User.id == Task.assigned_to, User.id.in_(assigned))
    )
    events = select(
        func.row(
            SlaEvent.id,
            SlaEvent.event_type,
            SlaEvent.severity,
            SlaEvent.triggered_at,
            SlaEvent.notification_sent,
        )
    ).where(SlaEvent.task_id == Task.id)
    columns = [
        _array(extras),
        _array(people),
        _array(events.order_by(SlaEvent.due_at, SlaEvent.event_type)),
    ]
    if with_audit_trail:
        trail = (
            select(func.row(*_TRAIL_COLUMNS))
            .where(AuditLog.entity_type == "task", AuditLog.entity_id == Task.id)
            .order_by(AuditLog.seq)
            .limit(AUDIT_TRAIL_LIMIT)
        )
        columns.append(_array(trail))
    return _GET_WITH_CLOCKS.add_columns(*columns)


_PAGES = {audit: _page_statement(audit) for audit in (False, True)}


async def task_page(
    session: AsyncSession, task_id: uuid.UUID, *, with_audit_trail: bool
) -> TaskPage | None:
    """The task (cancelled ones included) with what its page shows, or None: one statement
    on PostgreSQL, the same reads one by one elsewhere."""
    if session.get_bind().dialect.name != "postgresql":
        return await _task_page_by_parts(session, task_id, with_audit_trail=with_audit_trail)
    row = (await session.execute(_PAGES[with_audit_trail], {"task_id": task_id})).first()
    if row is None:
        return None
    task, start, resolve, extras, people, events, *trail = row
    remember_clocks(session, task.id, [c for c in (start, resolve) if c is not None])
    return TaskPage(
        task=task,
        extras=list(extras),
        people={person[0]: Person(*person) for person in people},
        events=[SlaEventRow(*event) for event in events],
        trail=[TrailRow(*entry) for entry in trail[0]] if with_audit_trail else None,
    )


async def _task_page_by_parts(
    session: AsyncSession, task_id: uuid.UUID, *, with_audit_trail: bool
) -> TaskPage | None:
    task = await get_with_clocks(session, task_id)
    if task is None:
        return None
    return await page_of(session, task, with_audit_trail=with_audit_trail)


async def page_of(session: AsyncSession, task: Task, *, with_audit_trail: bool) -> TaskPage:
    """What the page of a task already read shows, read one by one."""
    extras, users = await people(session, [task])
    return TaskPage(
        task=task,
        extras=extras.get(task.id, []),
        people={u.id: Person(u.id, u.username, u.full_name) for u in users.values()},
        events=[SlaEventRow(*e) for e in await sla_events_brief(session, task.id)],
        trail=[TrailRow(*r) for r in await audit_trail(session, task.id)]
        if with_audit_trail
        else None,
    )


# --- SLA expressions -------------------------------------------------------------------


def _responded_at() -> ColumnElement[Any]:
    return case(
        (Task.acknowledged_at.is_(None), Task.started_at),
        (Task.started_at.is_(None), Task.acknowledged_at),
        (Task.acknowledged_at < Task.started_at, Task.acknowledged_at),
        else_=Task.started_at,
    )


def _start_stop() -> ColumnElement[Any]:
    return func.coalesce(_responded_at(), Task.cancelled_at)


def _clock_level(now: ColumnElement[Any]) -> ColumnElement[Any]:
    """A clock's state as a number (0 compliant .. 3 breached), as sla.status.ClockView
    decides it: the stored threshold instants against the instant the clock stands at."""
    until = func.coalesce(SlaClock.stopped_at, SlaClock.paused_at, now)
    return case(
        (SlaClock.status == ClockStatus.BREACHED, 3),
        (
            SlaClock.stopped_at.is_not(None),
            case((SlaClock.stopped_at > SlaClock.deadline, 3), else_=0),
        ),
        (until >= SlaClock.deadline, 3),
        (and_(SlaClock.critical_at.is_not(None), until >= SlaClock.critical_at), 2),
        (and_(SlaClock.warning_at.is_not(None), until >= SlaClock.warning_at), 1),
        else_=0,
    )


def _task_level(now: ColumnElement[Any]) -> ColumnElement[Any]:
    """The worst state of the task's clocks."""
    return (
        select(func.max(_clock_level(now)))
        .where(SlaClock.task_id == Task.id)
        .correlate(Task)
        .scalar_subquery()
    )


def _breached(now: ColumnElement[Any]) -> ColumnElement[bool]:
    return _task_level(now) == 3


def next_deadline() -> ColumnElement[Any]:
    """The deadline that matters now: response while unanswered, resolution after."""
    return case((_start_stop().is_(None), Task.start_deadline), else_=Task.resolve_deadline)


_PRIORITY_RANK = case(
    {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}, value=Task.priority, else_=0
)


def _has_tags(dialect: str, count: int) -> ColumnElement[bool]:
    """Tasks carrying all of `count` tags, given as the parameter `tags` (PostgreSQL) or
    `tag_0`, `tag_1`, … (SQLite)."""
    if dialect == "postgresql":
        return type_coerce(Task.tags, JSONB).contains(bindparam("tags", type_=JSONB))
    clauses = []
    for index in range(count):
        clauses.append(
            exists(
                select(literal(1))
                .select_from(func.json_each(Task.tags).table_valued("value"))
                .where(text(f"value = :tag_{index}"))
            )
        )
    return and_(*clauses)


_SORT_KEYS: dict[str, Any] = {
    "created_at": lambda: Task.created_at,
    "updated_at": lambda: Task.updated_at,
    "priority": lambda: _PRIORITY_RANK,
    "deadline": next_deadline,
}


_ASSIGNEE = aliased(User, name="assignee")


def _search_statements(shape: tuple[Any, ...]) -> tuple[Select[Any], Select[Any]]:
    """The count and the page of a search of this shape (which filters it has, the sort),
    every value a bound parameter (see :func:`_search_values`)."""
    (dialect, deleted, status, priority, task_type, assigned_to, team_id, tier, external_id,
     after, before, q, tags, breach, sla_state, sort, order) = shape  # fmt: skip
    query = select(Task)
    if not deleted:
        query = query.where(Task.deleted_at.is_(None))
    if status:
        query = query.where(Task.status.in_(bindparam("status", expanding=True)))
    if priority:
        query = query.where(Task.priority.in_(bindparam("priority", expanding=True)))
    if task_type:
        query = query.where(Task.task_type == bindparam("task_type"))
    if assigned_to:
        user = bindparam("assigned_to", type_=Task.assigned_to.type)
        query = query.where(
            or_(
                Task.assigned_to == user,
                exists().where(TaskAssignee.task_id == Task.id, TaskAssignee.user_id == user),
            )
        )
    if team_id:
        query = query.where(Task.team_id == bindparam("team_id"))
    if tier:
        query = query.where(Task.customer_tier == bindparam("customer_tier"))
    if external_id:
        query = query.where(Task.external_id == bindparam("external_id"))
    if after:
        query = query.where(Task.created_at >= bindparam("created_after"))
    if before:
        query = query.where(Task.created_at < bindparam("created_before"))
    if q:
        pattern: ColumnElement[str] = bindparam("pattern")
        query = query.where(
            or_(
                func.lower(Task.title).like(pattern, escape="\\"),
                func.lower(Task.description).like(pattern, escape="\\"),
            )
        )
    if tags:
        query = query.where(_has_tags(dialect, tags))
    if breach is not None:
        breached = _breached(bindparam("now", type_=UTCDateTime()))
        query = query.where(breached if breach else not_(breached))
    if sla_state:
        query = query.where(
            _task_level(bindparam("now", type_=UTCDateTime())) == bindparam("sla_level")
        )
    count = select(func.count()).select_from(query.subquery())
    key = _SORT_KEYS[sort]()
    ordering = key.asc() if order == "asc" else key.desc()
    tiebreak = Task.id.asc() if order == "asc" else Task.id.desc()
    # The page's clocks come with it (a task has one of each kind: the join adds no row),
    # and so do its assignees and the count of the whole search, a subquery the database
    # runs once: one round trip for the page (see `search`).
    page = (
        _with_clocks(query)
        .add_columns(
            count.scalar_subquery().label("total"),
            _ASSIGNEE.id,
            _ASSIGNEE.username,
            _ASSIGNEE.full_name,
        )
        .outerjoin(_ASSIGNEE, _ASSIGNEE.id == Task.assigned_to)
        .order_by(ordering, tiebreak)
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )
    return count, page


def _search_values(filters: TaskFilters, now: datetime, dialect: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        "status": filters.status,
        "priority": filters.priority,
        "task_type": filters.task_type,
        "assigned_to": filters.assigned_to,
        "team_id": filters.team_id,
        "customer_tier": filters.customer_tier,
        "external_id": filters.external_id,
        "created_after": filters.created_after,
        "created_before": filters.created_before,
        "now": now,
    }
    if filters.q:
        values["pattern"] = f"%{escape_like(filters.q.lower())}%"
    if filters.sla_state:
        values["sla_level"] = level(filters.sla_state)
    if dialect == "postgresql":
        values["tags"] = filters.tags
    else:
        values.update({f"tag_{index}": tag for index, tag in enumerate(filters.tags)})
    return values


# A search's statements by shape, built once per shape: building them cost more CPU than a
# page's two statements take to run. Shapes are few (which filters, the sort); bounded
# all the same.
_SEARCHES: dict[tuple[Any, ...], tuple[Select[Any], Select[Any]]] = {}
CACHED_SEARCH_SHAPES = 1024


class SearchResult(NamedTuple):
    tasks: list[Task]
    total: int  # tasks the search finds, over all its pages
    assignees: dict[uuid.UUID, Person]  # the page's tasks' assignees (`assigned_to`) by id


async def search(
    session: AsyncSession,
    filters: TaskFilters,
    params: PageParams,
    *,
    now: datetime,
    sort: SortField = "created_at",
    order: Literal["asc", "desc"] = "desc",
) -> SearchResult:
    dialect = session.get_bind().dialect.name
    shape = (
        dialect,
        filters.include_deleted,
        bool(filters.status),
        bool(filters.priority),
        bool(filters.task_type),
        bool(filters.assigned_to),
        bool(filters.team_id),
        bool(filters.customer_tier),
        bool(filters.external_id),
        bool(filters.created_after),
        bool(filters.created_before),
        bool(filters.q),
        len(filters.tags),
        filters.has_breach,
        bool(filters.sla_state),
        sort,
        order,
    )
    statements = _SEARCHES.get(shape)
    if statements is None:
        if len(_SEARCHES) >= CACHED_SEARCH_SHAPES:
            _SEARCHES.clear()
        statements = _SEARCHES[shape] = _search_statements(shape)
    count, page = statements
    values = _search_values(filters, now, dialect)
    rows = (
        await session.execute(page, {**values, "offset": params.offset, "limit": params.page_size})
    ).all()
    tasks: list[Task] = []
    assignees: dict[uuid.UUID, Person] = {}
    for task, start, resolve, _total, user_id, username, full_name in rows:
        remember_clocks(session, task.id, [c for c in (start, resolve) if c is not None])
        tasks.append(task)
        if user_id is not None:
            assignees[user_id] = Person(user_id, username, full_name)
    if rows:
        total = int(rows[0].total)
    elif params.offset:  # past the last page: the count came with no row
        total = int(await session.scalar(count, values) or 0)
    else:
        total = 0
    return SearchResult(tasks, total, assignees)
