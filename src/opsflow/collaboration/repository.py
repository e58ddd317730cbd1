"""Every query of comments, watchers, read markers and the inbox."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from opsflow.kit.pagination import PageParams
from opsflow.kit.types import UTCDateTime
from opsflow.models.audit import AuditLog
from opsflow.models.collaboration import Comment, TaskReadMarker, TaskWatcher
from opsflow.models.enums import ActorType, EscalationStatus, NotificationStatus
from opsflow.models.escalation import EscalationEvent
from opsflow.models.integration import Integration, IntegrationEvent
from opsflow.models.notification import Notification
from opsflow.models.sla import SlaEvent
from opsflow.models.task import Task, TaskAssignee
from opsflow.models.user import User


def visible(include_internal: bool) -> ColumnElement[bool]:
    """Comments a reader sees: not deleted, and public unless internal ones are theirs to read."""
    live = Comment.deleted_at.is_(None)
    return live if include_internal else and_(live, Comment.internal.is_(False))


async def get(
    session: AsyncSession, comment_id: uuid.UUID, *, for_update: bool = False
) -> Comment | None:
    query = select(Comment).where(Comment.id == comment_id)
    if for_update and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return await session.scalar(query)


async def page_of_task(
    session: AsyncSession,
    task_id: uuid.UUID,
    *,
    include_internal: bool,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Comment]:
    """A task's visible comments, oldest first, strictly after the cursor's (time, id)."""
    query = select(Comment).where(Comment.task_id == task_id, visible(include_internal))
    if after is not None:
        at, last_id = after
        query = query.where(
            or_(Comment.created_at > at, and_(Comment.created_at == at, Comment.id > last_id))
        )
    query = query.order_by(Comment.created_at, Comment.id).limit(limit)
    return list(await session.scalars(query))


async def active_users_named(session: AsyncSession, usernames: Collection[str]) -> list[User]:
    if not usernames:
        return []
    query = select(User).where(
        User.username.in_({u.lower() for u in usernames}), User.is_active.is_(True)
    )
    return list(await session.scalars(query))


async def users(session: AsyncSession, ids: Collection[uuid.UUID]) -> list[User]:
    if not ids:
        return []
    return list(await session.scalars(select(User).where(User.id.in_(set(ids)))))


# --- watchers and read markers --------------------------------------------------------------


async def watcher(
    session: AsyncSession, task_id: uuid.UUID, user_id: uuid.UUID
) -> TaskWatcher | None:
    return await session.get(TaskWatcher, (task_id, user_id))


async def marker(
    session: AsyncSession, task_id: uuid.UUID, user_id: uuid.UUID
) -> TaskReadMarker | None:
    return await session.get(TaskReadMarker, (task_id, user_id))


async def unread_count(
    session: AsyncSession,
    task_id: uuid.UUID,
    user_id: uuid.UUID,
    since: datetime | None,
    *,
    include_internal: bool,
) -> int:
    query = select(func.count()).where(
        Comment.task_id == task_id, visible(include_internal), _not_by(user_id)
    )
    if since is not None:
        query = query.where(Comment.created_at > since)
    return int(await session.scalar(query) or 0)


def _not_by(user_id: uuid.UUID) -> ColumnElement[bool]:
    """Comments someone else wrote (one's own are never unread)."""
    return or_(Comment.actor_type != ActorType.USER.value, Comment.actor_id != user_id)


# --- the inbox ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxRow:
    task: Task
    unread: int
    last_activity_at: datetime
    last_read_at: datetime | None


def _involvement(user_id: uuid.UUID):  # type: ignore[no-untyped-def]
    """(task_id, reason) for every way `user_id` is part of a task."""
    return union_all(
        select(Task.id.label("task_id"), literal("assigned").label("reason")).where(
            Task.assigned_to == user_id
        ),
        select(TaskAssignee.task_id, literal("assigned")).where(TaskAssignee.user_id == user_id),
        select(Task.id, literal("created")).where(Task.created_by == user_id),
        select(Comment.task_id, literal("commented")).where(
            Comment.author_id == user_id,  # indexed; for a user's own comment, its actor
            Comment.actor_type == ActorType.USER.value,
            Comment.deleted_at.is_(None),
        ),
        select(TaskWatcher.task_id, literal("watching")).where(TaskWatcher.user_id == user_id),
    ).subquery()


async def inbox(
    session: AsyncSession, user_id: uuid.UUID, *, include_internal: bool, page: PageParams
) -> tuple[list[InboxRow], int, int]:
    """The page of the user's inbox (latest activity first), the number of tasks in it and
    the unread comments over all of them."""
    involved = _involvement(user_id)
    ids = select(involved.c.task_id).distinct().subquery()
    shown = and_(visible(include_internal), Comment.task_id.in_(select(ids.c.task_id)))
    last_comment = (
        select(Comment.task_id, func.max(Comment.created_at).label("at"))
        .where(shown)
        .group_by(Comment.task_id)
        .subquery()
    )
    unread = (
        select(Comment.task_id, func.count().label("n"))
        .select_from(Comment)
        .outerjoin(
            TaskReadMarker,
            and_(TaskReadMarker.task_id == Comment.task_id, TaskReadMarker.user_id == user_id),
        )
        .where(
            shown,
            _not_by(user_id),
            or_(TaskReadMarker.read_at.is_(None), Comment.created_at > TaskReadMarker.read_at),
        )
        .group_by(Comment.task_id)
        .subquery()
    )
    marker_ = (
        select(TaskReadMarker.task_id, TaskReadMarker.read_at)
        .where(TaskReadMarker.user_id == user_id)
        .subquery()
    )
    activity = type_coerce(
        case(
            (last_comment.c.at > Task.updated_at, last_comment.c.at),
            else_=Task.updated_at,
        ),
        UTCDateTime,
    )
    unread_n = func.coalesce(unread.c.n, 0)
    base = (
        select(Task)
        .join(ids, ids.c.task_id == Task.id)
        .outerjoin(last_comment, last_comment.c.task_id == Task.id)
        .outerjoin(unread, unread.c.task_id == Task.id)
        .outerjoin(marker_, marker_.c.task_id == Task.id)
        .where(Task.deleted_at.is_(None))
    )
    rows = (
        await session.execute(
            base.add_columns(unread_n, activity, type_coerce(marker_.c.read_at, UTCDateTime))
            .order_by(activity.desc(), Task.id.desc())
            .offset(page.offset)
            .limit(page.page_size)
        )
    ).all()
    counted = base.with_only_columns(unread_n.label("n")).subquery()
    totals = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(counted.c.n), 0)).select_from(counted)
        )
    ).one()
    return (
        [InboxRow(task, int(n), at, read_at) for task, n, at, read_at in rows],
        int(totals[0]),
        int(totals[1]),
    )


async def reasons(
    session: AsyncSession, user_id: uuid.UUID, task_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, set[str]]:
    """Why each of these tasks is in the user's inbox."""
    if not task_ids:
        return {}
    involved = _involvement(user_id)
    query = select(involved.c.task_id, involved.c.reason).where(
        involved.c.task_id.in_(set(task_ids)), true()
    )
    result: dict[uuid.UUID, set[str]] = {}
    for task_id, reason in (await session.execute(query)).all():
        result.setdefault(task_id, set()).add(reason)
    return result


# --- the timeline's rows ------------------------------------------------------------------------


@dataclass(frozen=True)
class After:
    """Where the previous timeline page stopped: entries sort by (time, source rank, key)."""

    at: datetime
    rank: int
    key: str


def after_clause(
    rank: int,
    time_col: ColumnElement[datetime] | QueryableAttribute[datetime],
    key_col: ColumnElement[Any] | QueryableAttribute[Any],
    after: After | None,
    key_value: Any,
) -> ColumnElement[bool]:
    """Rows of the source ranked `rank` that sort strictly after `after` (`key_value`: its
    key as the column compares it)."""
    if after is None:
        return true()
    if rank > after.rank:
        return time_col >= after.at
    if rank < after.rank:
        return time_col > after.at
    return or_(time_col > after.at, and_(time_col == after.at, key_col > key_value))


async def task_audit_rows(
    session: AsyncSession,
    task_id: uuid.UUID,
    actions: Collection[str],
    after: After | None,
    rank: int,
    limit: int,
) -> list[AuditLog]:
    key = int(after.key) if after is not None and after.rank == rank else 0
    query = (
        select(AuditLog)
        .where(
            AuditLog.entity_type == "task",
            AuditLog.entity_id == task_id,
            AuditLog.action.in_(set(actions)),
            after_clause(rank, AuditLog.timestamp, AuditLog.seq, after, key),
        )
        .order_by(AuditLog.timestamp, AuditLog.seq)
        .limit(limit)
    )
    return list(await session.scalars(query))


def _uuid_key(after: After | None, rank: int) -> uuid.UUID:
    if after is None or after.rank != rank:
        return uuid.UUID(int=0)
    return uuid.UUID(after.key)


async def sla_event_rows(
    session: AsyncSession, task_id: uuid.UUID, after: After | None, rank: int, limit: int
) -> list[SlaEvent]:
    query = (
        select(SlaEvent)
        .where(
            SlaEvent.task_id == task_id,
            after_clause(rank, SlaEvent.triggered_at, SlaEvent.id, after, _uuid_key(after, rank)),
        )
        .order_by(SlaEvent.triggered_at, SlaEvent.id)
        .limit(limit)
    )
    return list(await session.scalars(query))


async def fired_escalation_rows(
    session: AsyncSession, task_id: uuid.UUID, after: After | None, rank: int, limit: int
) -> list[EscalationEvent]:
    fired_at = type_coerce(EscalationEvent.fired_at, UTCDateTime)
    query = (
        select(EscalationEvent)
        .where(
            EscalationEvent.task_id == task_id,
            EscalationEvent.status == EscalationStatus.FIRED.value,
            EscalationEvent.fired_at.is_not(None),
            after_clause(rank, fired_at, EscalationEvent.id, after, _uuid_key(after, rank)),
        )
        .order_by(EscalationEvent.fired_at, EscalationEvent.id)
        .limit(limit)
    )
    return list(await session.scalars(query))


def notification_time() -> ColumnElement[datetime]:
    """When a notification was sent, or given up (DEAD)."""
    return type_coerce(func.coalesce(Notification.sent_at, Notification.failed_at), UTCDateTime)


async def finished_notification_rows(
    session: AsyncSession,
    task_id: uuid.UUID,
    recipient_id: uuid.UUID | None,
    after: After | None,
    rank: int,
    limit: int,
) -> list[Notification]:
    """Sent or dead notifications of a task (only those addressed to `recipient_id` if given)."""
    at = notification_time()
    query = select(Notification).where(
        Notification.task_id == task_id,
        Notification.status.in_([NotificationStatus.SENT.value, NotificationStatus.DEAD.value]),
        at.is_not(None),
        after_clause(rank, at, Notification.id, after, _uuid_key(after, rank)),
    )
    if recipient_id is not None:
        query = query.where(Notification.recipient_id == recipient_id)
    query = query.order_by(at, Notification.id).limit(limit)
    return list(await session.scalars(query))


async def comment_rows(
    session: AsyncSession,
    task_id: uuid.UUID,
    include_internal: bool,
    after: After | None,
    rank: int,
    limit: int,
) -> list[Comment]:
    query = (
        select(Comment)
        .where(
            Comment.task_id == task_id,
            visible(include_internal),
            after_clause(rank, Comment.created_at, Comment.id, after, _uuid_key(after, rank)),
        )
        .order_by(Comment.created_at, Comment.id)
        .limit(limit)
    )
    return list(await session.scalars(query))


async def alert_rows(
    session: AsyncSession, task_id: uuid.UUID, after: After | None, rank: int, limit: int
) -> list[tuple[IntegrationEvent, str | None]]:
    """What alert integrations received about the task, with the integration's name."""
    query = (
        select(IntegrationEvent, Integration.name)
        .outerjoin(Integration, Integration.id == IntegrationEvent.integration_id)
        .where(
            IntegrationEvent.task_id == task_id,
            after_clause(
                rank,
                IntegrationEvent.received_at,
                IntegrationEvent.id,
                after,
                _uuid_key(after, rank),
            ),
        )
        .order_by(IntegrationEvent.received_at, IntegrationEvent.id)
        .limit(limit)
    )
    return [(event, name) for event, name in (await session.execute(query)).all()]


async def display_names(session: AsyncSession, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    query = select(User.id, User.full_name, User.username).where(User.id.in_(set(ids)))
    return {i: full or name for i, full, name in (await session.execute(query)).all()}
