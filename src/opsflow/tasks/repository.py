"""The queries of tasks' changes and of the reads that other packages share. The reads
behind a page of tasks and a task's page, each one statement, are in `tasks.reads`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from opsflow.db import memo, shared
from opsflow.models.audit import AuditLog
from opsflow.models.enums import SlaKind
from opsflow.models.sla import SlaClock, SlaEvent
from opsflow.models.task import Task, TaskAssignee
from opsflow.models.user import User
from opsflow.sla.repository import remember_clocks

# Built once (see GET_WITH_CLOCKS below): a task by id, as it is read or to be changed.
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


def with_clocks(query: Select[Any]) -> Select[Any]:
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
GET_WITH_CLOCKS = with_clocks(select(Task)).where(Task.id == bindparam("task_id"))


async def get_with_clocks(session: AsyncSession, task_id: uuid.UUID) -> Task | None:
    """The task (cancelled ones included) and its clocks, in one statement."""
    rows = await session.execute(GET_WITH_CLOCKS, {"task_id": task_id})
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
TRAIL_COLUMNS = (
    AuditLog.action,
    AuditLog.actor_name,
    AuditLog.actor_type,
    AuditLog.actor_id,
    AuditLog.timestamp,
    AuditLog.changes,
)
_AUDIT_TRAIL = (
    select(*TRAIL_COLUMNS)
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


# A task's SLA events as its page shows them, in their order (here and in the
# one-statement read of `reads.py`).
SLA_EVENT_COLUMNS = (
    SlaEvent.id,
    SlaEvent.event_type,
    SlaEvent.severity,
    SlaEvent.triggered_at,
    SlaEvent.notification_sent,
)
SLA_EVENT_ORDER = (SlaEvent.due_at, SlaEvent.event_type)
_SLA_EVENTS = (
    select(*SLA_EVENT_COLUMNS)
    .where(SlaEvent.task_id == bindparam("task_id"))
    .order_by(*SLA_EVENT_ORDER)
)


async def sla_events_brief(session: AsyncSession, task_id: uuid.UUID) -> list[Any]:
    """The task's SLA events as a task's page lists them, in the order they fall due."""
    return list(await session.execute(_SLA_EVENTS, {"task_id": task_id}))
