"""The reads behind a task's page and a page of tasks, each one statement.

A task's page (`task_page`) is the task with its two clocks and, as correlated columns,
its additional assignees in order, the people it names, its SLA events and its audit
trail (PostgreSQL: `ARRAY(SELECT ROW(...))`; SQLite: `json_group_array(json_array(...))`):
a page otherwise takes four round trips, and sending a statement costs more CPU than the
statement's own work. A page of tasks
(`search`) is the tasks with their clocks, their assignees and the count of the whole
search in one statement too, read as plain rows of the columns a list shows (no ORM
instance, identity map or attribute instrumentation per row: nothing in a list request
changes a task); `tasks.views.list_items` makes each row a JSON-ready item. Every statement
is built once (per shape, for a search) with bound parameters.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.types import NullType

from opsflow.db import loads_json
from opsflow.kit.pagination import PageParams
from opsflow.kit.sql import escape_like
from opsflow.kit.types import UTCDateTime
from opsflow.models.audit import AuditLog
from opsflow.models.enums import ClockStatus, SlaKind
from opsflow.models.sla import SlaClock, SlaEvent
from opsflow.models.task import Task, TaskAssignee
from opsflow.models.user import User
from opsflow.sla.repository import remember_clocks
from opsflow.sla.status import CLOCK_COLUMNS, level
from opsflow.sla.status import State as SlaState
from opsflow.tasks.repository import (
    AUDIT_TRAIL_LIMIT,
    GET_WITH_CLOCKS,
    SLA_EVENT_COLUMNS,
    SLA_EVENT_ORDER,
    TRAIL_COLUMNS,
    audit_trail,
    get_with_clocks,
    people,
    sla_events_brief,
)

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
    """PostgreSQL, `ARRAY(query)`: the rows of a correlated subquery, in its order, as one
    value. asyncpg decodes an array of anonymous records into tuples of native values
    (uuid, timestamptz as aware UTC, jsonb through the connection's JSON codec), so no
    column takes a result processor of SQLAlchemy's."""
    return type_coerce(func.array(query.scalar_subquery()), NullType())


def _rows(query: Select[*tuple[Any, ...]]) -> ColumnElement[Any]:
    """PostgreSQL: the rows of a correlated subquery as an array of records."""
    return _array(query.with_only_columns(func.row(*query.selected_columns)))


def _json_rows(
    query: Select[*tuple[Any, ...]], *, json_column: str | None = None
) -> ColumnElement[Any]:
    """SQLite: the rows of a correlated subquery, in its order, as one JSON array of arrays
    (`json_group_array` over the ordered subquery: SQLite never flattens a subquery with
    an ORDER BY into an aggregate query, so the aggregate receives its rows in that order;
    `test_request_statements` compares this read with the separate ordered reads). Each
    value comes as SQLite keeps it (uuid as hex, instants as text, booleans as 0/1;
    `json_column` holds JSON, embedded as such), for `_sqlite_page` to convert as the
    column types would."""
    rows = query.correlate(Task).subquery()
    values = [func.json(c) if c.key == json_column else c for c in rows.c]
    aggregated = select(func.json_group_array(func.json_array(*values))).scalar_subquery()
    return type_coerce(aggregated, NullType())


def _page_statement(dialect: str, with_audit_trail: bool) -> Select[Any]:
    """The task, its clocks and everything else its page shows, in one statement: a task's
    page otherwise takes four round trips, and on a busy server the sending and waiting of
    each costs more CPU than the statement's own work."""
    assigned = select(TaskAssignee.user_id).where(TaskAssignee.task_id == Task.id)
    extras = assigned.order_by(TaskAssignee.added_at, TaskAssignee.user_id)
    people = select(User.id, User.username, User.full_name).where(
        or_(User.id == Task.created_by, User.id == Task.assigned_to, User.id.in_(assigned))
    )
    events = (
        select(*SLA_EVENT_COLUMNS).where(SlaEvent.task_id == Task.id).order_by(*SLA_EVENT_ORDER)
    )
    trail = (
        select(*TRAIL_COLUMNS)
        .where(AuditLog.entity_type == "task", AuditLog.entity_id == Task.id)
        .order_by(AuditLog.seq)
        .limit(AUDIT_TRAIL_LIMIT)
    )
    if dialect == "postgresql":
        columns = [_array(extras), _rows(people), _rows(events)]
        if with_audit_trail:
            columns.append(_rows(trail))
    else:
        columns = [_json_rows(extras), _json_rows(people), _json_rows(events)]
        if with_audit_trail:
            columns.append(_json_rows(trail, json_column=AuditLog.changes.key))
    return GET_WITH_CLOCKS.add_columns(*columns)


# The dialects whose page is one statement; any other reads the parts one by one.
_PAGES = {
    (dialect, audit): _page_statement(dialect, audit)
    for dialect in ("postgresql", "sqlite")
    for audit in (False, True)
}


async def task_page(
    session: AsyncSession, task_id: uuid.UUID, *, with_audit_trail: bool
) -> TaskPage | None:
    """The task (cancelled ones included) with what its page shows, or None: one
    statement."""
    dialect = session.get_bind().dialect
    statement = _PAGES.get((dialect.name, with_audit_trail))
    if statement is None:
        return await _task_page_by_parts(session, task_id, with_audit_trail=with_audit_trail)
    row = (await session.execute(statement, {"task_id": task_id})).first()
    if row is None:
        return None
    task, start, resolve, extras, people, events, *trail = row
    remember_clocks(session, task.id, [c for c in (start, resolve) if c is not None])
    if dialect.name == "sqlite":
        return _sqlite_page(dialect, task, extras, people, events, trail[0] if trail else None)
    return TaskPage(
        task=task,
        extras=list(extras),
        people={person[0]: Person(*person) for person in people},
        events=[SlaEventRow(*event) for event in events],
        trail=[TrailRow(*entry) for entry in trail[0]] if with_audit_trail else None,
    )


_INSTANTS: dict[Dialect, Callable[[Any], Any]] = {}


def _instant(dialect: Dialect) -> Callable[[Any], Any]:
    """The dialect's converter of a stored instant (text, on SQLite) to an aware UTC
    datetime, as `UTCDateTime` converts a column's values."""
    found = _INSTANTS.get(dialect)
    if found is None:
        processor = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
        assert processor is not None
        found = _INSTANTS[dialect] = processor
    return found


def _sqlite_page(
    dialect: Dialect, task: Task, extras: str, people: str, events: str, trail: str | None
) -> TaskPage:
    """A task's page from SQLite's JSON arrays (see `_json_rows`), each value converted as
    its column's type converts it (uuid from hex, instants through `UTCDateTime`)."""
    instant = _instant(dialect)
    people_rows = loads_json(people)
    return TaskPage(
        task=task,
        extras=[uuid.UUID(user_id) for (user_id,) in loads_json(extras)],
        people={
            person.id: person
            for person in (Person(uuid.UUID(i), name, full) for i, name, full in people_rows)
        },
        events=[
            SlaEventRow(uuid.UUID(i), kind, severity, instant(at), bool(sent))
            for i, kind, severity, at, sent in loads_json(events)
        ],
        trail=[
            TrailRow(
                action,
                name,
                actor_type,
                uuid.UUID(actor) if actor is not None else None,
                instant(at),
                changes,
            )
            for action, name, actor_type, actor, at, changes in loads_json(trail)
        ]
        if trail is not None
        else None,
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


# A list item's own fields, as the task's columns of the same names give them.
ITEM_FIELDS = (
    "id",
    "title",
    "task_type",
    "priority",
    "status",
    "customer_tier",
    "team_id",
    "tags",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "external_id",
    "version",
)
_LIST_START = aliased(SlaClock, name="start_clock")
_LIST_RESOLVE = aliased(SlaClock, name="resolve_clock")
_ASSIGNEE = aliased(User, name="assignee")
# A page row, in this order: the item's fields, its assignee (id, username, full name), its
# START then its RESOLVE clock's `CLOCK_COLUMNS` (what `ClockView.at` takes), the total.
# JSON columns that mostly hold an empty value ("no tags", "never paused", "24x7") read as
# NULL there: a NULL is not decoded, and the readers take None for the empty value.
_EMPTY_JSON = {"tags": "[]", "pauses": "[]", "calendar_spec": "null"}


def _column(entity: Any, name: str) -> ColumnElement[Any]:
    column: ColumnElement[Any] = getattr(entity, name)
    empty = _EMPTY_JSON.get(name)
    if empty is None:
        return column
    return type_coerce(func.nullif(column, literal_column(f"'{empty}'")), column.type)


_PAGE_COLUMNS = (
    *(_column(Task, name) for name in ITEM_FIELDS),
    Task.assigned_to,
    _ASSIGNEE.username,
    _ASSIGNEE.full_name,
    *(_column(_LIST_START, name) for name in CLOCK_COLUMNS),
    *(_column(_LIST_RESOLVE, name) for name in CLOCK_COLUMNS),
)
ASSIGNEE_AT = len(ITEM_FIELDS)
START_AT = ASSIGNEE_AT + 3
RESOLVE_AT = START_AT + len(CLOCK_COLUMNS)
TOTAL_AT = RESOLVE_AT + len(CLOCK_COLUMNS)


def _search_statements(shape: tuple[Any, ...]) -> tuple[Select[Any], Select[Any]]:
    """The count and the page of a search of this shape (which filters it has, the sort),
    every value a bound parameter (see :func:`_search_values`)."""
    (dialect, deleted, status, priority, task_type, assigned_to, team_id, tier, external_id,
     after, before, q, tags, breach, sla_state, sort, order) = shape  # fmt: skip
    where: list[ColumnElement[bool]] = []
    if not deleted:
        where.append(Task.deleted_at.is_(None))
    if status:
        where.append(Task.status.in_(bindparam("status", expanding=True)))
    if priority:
        where.append(Task.priority.in_(bindparam("priority", expanding=True)))
    if task_type:
        where.append(Task.task_type == bindparam("task_type"))
    if assigned_to:
        user = bindparam("assigned_to", type_=Task.assigned_to.type)
        where.append(
            or_(
                Task.assigned_to == user,
                exists().where(TaskAssignee.task_id == Task.id, TaskAssignee.user_id == user),
            )
        )
    if team_id:
        where.append(Task.team_id == bindparam("team_id"))
    if tier:
        where.append(Task.customer_tier == bindparam("customer_tier"))
    if external_id:
        where.append(Task.external_id == bindparam("external_id"))
    if after:
        where.append(Task.created_at >= bindparam("created_after"))
    if before:
        where.append(Task.created_at < bindparam("created_before"))
    if q:
        pattern: ColumnElement[str] = bindparam("pattern")
        where.append(
            or_(
                func.lower(Task.title).like(pattern, escape="\\"),
                func.lower(Task.description).like(pattern, escape="\\"),
            )
        )
    if tags:
        where.append(_has_tags(dialect, tags))
    if breach is not None:
        breached = _breached(bindparam("now", type_=UTCDateTime()))
        where.append(breached if breach else not_(breached))
    if sla_state:
        where.append(_task_level(bindparam("now", type_=UTCDateTime())) == bindparam("sla_level"))
    count = select(func.count()).select_from(select(Task.id).where(*where).subquery())
    key = _SORT_KEYS[sort]()
    ordering = key.asc() if order == "asc" else key.desc()
    tiebreak = Task.id.asc() if order == "asc" else Task.id.desc()
    # The page's clocks come with it (a task has one of each kind: the join adds no row),
    # and so do its assignees and the count of the whole search, a subquery the database
    # runs once: one round trip for the page (see `search`).
    page = (
        select(*_PAGE_COLUMNS, count.scalar_subquery().label("total"))
        .select_from(Task)
        .outerjoin(
            _LIST_START,
            and_(_LIST_START.task_id == Task.id, _LIST_START.kind == SlaKind.START.value),
        )
        .outerjoin(
            _LIST_RESOLVE,
            and_(_LIST_RESOLVE.task_id == Task.id, _LIST_RESOLVE.kind == SlaKind.RESOLVE.value),
        )
        .outerjoin(_ASSIGNEE, _ASSIGNEE.id == Task.assigned_to)
        .where(*where)
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
    rows: list[Row[Any]]  # the page's rows, laid out as `_PAGE_COLUMNS` (see list_items)
    total: int  # tasks the search finds, over all its pages


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
    # On the connection: plain rows need none of the session's ORM execution.
    connection = await session.connection()
    rows = (
        await connection.execute(
            page, {**values, "offset": params.offset, "limit": params.page_size}
        )
    ).all()
    if rows:
        total = int(rows[0][TOTAL_AT])
    elif params.offset:  # past the last page: the count came with no row
        total = int(await session.scalar(count, values) or 0)
    else:
        total = 0
    return SearchResult(list(rows), total)
