"""Every query on notifications."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.kit.pagination import PageParams
from opsflow.models.enums import DELIVERABLE
from opsflow.models.notification import (
    MaintenanceWindow,
    Notification,
    NotificationTemplate,
    WebhookSubscription,
)
from opsflow.models.notification_preference import NotificationPreference
from opsflow.models.task import Task, TaskAssignee
from opsflow.models.team import Team
from opsflow.models.user import User


async def existing_keys(session: AsyncSession, keys: Sequence[str]) -> set[str]:
    if not keys:
        return set()
    query = select(Notification.dedup_key).where(Notification.dedup_key.in_(set(keys)))
    return set(await session.scalars(query))


async def users(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[User]:
    if not ids:
        return []
    query = select(User).where(User.id.in_(set(ids)), User.is_active.is_(True))
    return list(await session.scalars(query))


async def preferences(
    session: AsyncSession, user_ids: Sequence[uuid.UUID]
) -> dict[tuple[uuid.UUID, str], NotificationPreference]:
    if not user_ids:
        return {}
    query = select(NotificationPreference).where(NotificationPreference.user_id.in_(set(user_ids)))
    return {(p.user_id, p.channel): p for p in await session.scalars(query)}


async def task(session: AsyncSession, task_id: uuid.UUID) -> Task | None:
    return await session.get(Task, task_id)


async def assignees(session: AsyncSession, task: Task) -> list[uuid.UUID]:
    extra = await session.scalars(
        select(TaskAssignee.user_id).where(TaskAssignee.task_id == task.id)
    )
    return [u for u in ([task.assigned_to] if task.assigned_to else []) + list(extra)]


async def webhook_secrets(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Signing secrets of the (active) subscriptions these deliveries go to."""
    if not ids:
        return {}
    query = select(WebhookSubscription.id, WebhookSubscription.secret).where(
        WebhookSubscription.id.in_(ids), WebhookSubscription.is_active.is_(True)
    )
    return {row_id: secret for row_id, secret in (await session.execute(query)).all()}


async def windows(
    session: AsyncSession, ids: set[uuid.UUID], now: datetime
) -> list[MaintenanceWindow]:
    """Windows open at `now`, and the windows named by `ids` (that held rows before)."""
    query = select(MaintenanceWindow).where(
        or_(
            and_(MaintenanceWindow.starts_at <= now, MaintenanceWindow.ends_at > now),
            MaintenanceWindow.id.in_(ids or {uuid.UUID(int=0)}),
        )
    )
    return list(await session.scalars(query))


async def all_windows(
    session: AsyncSession, params: PageParams
) -> tuple[list[MaintenanceWindow], int]:
    total = int(await session.scalar(select(func.count()).select_from(MaintenanceWindow)) or 0)
    rows = await session.scalars(
        select(MaintenanceWindow)
        .order_by(MaintenanceWindow.starts_at.desc(), MaintenanceWindow.id)
        .offset(params.offset)
        .limit(params.page_size)
    )
    return list(rows), total


async def tasks_with_team_names(
    session: AsyncSession, ids: set[uuid.UUID]
) -> dict[uuid.UUID, tuple[Task, str | None]]:
    if not ids:
        return {}
    query = select(Task, Team.name).outerjoin(Team, Team.id == Task.team_id).where(Task.id.in_(ids))
    return {task.id: (task, name) for task, name in (await session.execute(query)).all()}


async def next_due(session: AsyncSession) -> datetime | None:
    query = select(func.min(Notification.scheduled_at)).where(Notification.status.in_(DELIVERABLE))
    value: datetime | None = await session.scalar(query)
    return value


async def get(
    session: AsyncSession, notification_id: uuid.UUID, *, for_update: bool = False
) -> Notification | None:
    return await session.get(Notification, notification_id, with_for_update=for_update)


async def claim_and_lease(
    session: AsyncSession, now: datetime, limit: int, lease: datetime
) -> list[Notification]:
    """Take up to `limit` due PENDING/RETRY notifications, the most overdue first, and move
    their `scheduled_at` to `lease`, in one statement: ``UPDATE … WHERE id IN (SELECT …
    LIMIT n FOR UPDATE SKIP LOCKED) RETURNING …`` on PostgreSQL, so engines side by side
    never take the same row; SQLite serialises writers and needs no lock clause."""
    due = (
        select(Notification.id)
        .where(Notification.scheduled_at <= now, Notification.status.in_(DELIVERABLE))
        .order_by(Notification.scheduled_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    query = (
        update(Notification)
        .where(Notification.id.in_(due.scalar_subquery()))
        .values(scheduled_at=lease)
        .returning(Notification)
        .execution_options(synchronize_session=False)
    )
    return list(await session.scalars(query))


async def still_leased(
    session: AsyncSession, ids: Sequence[uuid.UUID], lease: datetime
) -> set[uuid.UUID]:
    """Which of these notifications still carry this engine's lease, locked in id order (two
    units of work locking overlapping sets cannot deadlock). Ids only: no rows loaded."""
    if not ids:
        return set()
    query = (
        select(Notification.id)
        .where(Notification.id.in_(set(ids)), Notification.scheduled_at == lease)
        .order_by(Notification.id)
        .with_for_update()
    )
    return set(await session.scalars(query))


_TABLE = cast(Table, Notification.__table__)
RECORDED = (
    "status", "attempts", "attempt_log", "scheduled_at", "sent_at", "failed_at",
    "error_message", "updated_at",
)  # fmt: skip
_RECORD = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("b_id"), _TABLE.c.scheduled_at == bindparam("b_lease"))
    .values({name: bindparam(f"b_{name}") for name in RECORDED})
)


async def record_many(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Write deliveries' outcomes, one executemany UPDATE by id, no ORM rows: each dict has
    `id`, `lease` (the row is written only if it still carries it) and every `RECORDED`
    column."""
    if rows:
        params = [{f"b_{key}": value for key, value in row.items()} for row in rows]
        await session.execute(_RECORD, params)


@dataclass(frozen=True)
class Filters:
    task_id: uuid.UUID | None = None
    status: str | None = None
    notification_type: str | None = None
    channel: str | None = None
    recipient_id: uuid.UUID | None = None


async def search(
    session: AsyncSession, filters: Filters, params: PageParams
) -> tuple[list[Notification], int]:
    query = select(Notification)
    if filters.task_id:
        query = query.where(Notification.task_id == filters.task_id)
    if filters.status:
        query = query.where(Notification.status == filters.status)
    if filters.notification_type:
        query = query.where(Notification.notification_type == filters.notification_type)
    if filters.channel:
        query = query.where(Notification.channel == filters.channel)
    if filters.recipient_id:
        query = query.where(Notification.recipient_id == filters.recipient_id)
    total = int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = await session.scalars(
        query.order_by(Notification.created_at.desc(), Notification.id)
        .offset(params.offset)
        .limit(params.page_size)
    )
    return list(rows), total


async def display_names(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Full name (username when none) of each user, active or not, by id."""
    if not ids:
        return {}
    rows = await session.execute(
        select(User.id, User.full_name, User.username).where(User.id.in_(set(ids)))
    )
    return {row.id: row.full_name or row.username for row in rows}


async def templates(session: AsyncSession) -> list[NotificationTemplate]:
    """Every user-edited template part (a small table)."""
    return list(await session.scalars(select(NotificationTemplate)))
