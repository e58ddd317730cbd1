"""Every query on notifications."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.db import memo, read_shared, shared
from opsflow.kit.pagination import PageParams
from opsflow.models.enums import DELIVERABLE
from opsflow.models.notification import (
    MaintenanceWindow,
    Notification,
    NotificationTemplate,
    WebhookSubscription,
)
from opsflow.models.notification_preference import NotificationPreference
from opsflow.models.task import Task
from opsflow.models.team import Team
from opsflow.models.user import User
from opsflow.tasks import repository as tasks_repository

_EXISTING_KEYS = select(Notification.dedup_key).where(
    Notification.dedup_key.in_(bindparam("keys", expanding=True))
)
_USERS = select(User).where(User.id.in_(bindparam("ids", expanding=True)))
_PREFERENCES = select(NotificationPreference).where(
    NotificationPreference.user_id.in_(bindparam("ids", expanding=True))
)
_TEMPLATES = select(NotificationTemplate)
# db.shared kinds a relay pass fills (`prepare_people`) and its events read: user id ->
# {channel: preference}; user id -> User; task id -> its additional assignees in order.
PREFERENCES = "notifications.preferences"
PEOPLE = "notifications.people"
ASSIGNEES = "notifications.assignees"
_KEYS_OF_EVENTS = select(Notification.source_event_id, Notification.dedup_key).where(
    Notification.source_event_id.in_(bindparam("ids", expanding=True))
)
EXISTING = "notifications.existing"  # db.shared kind: outbox event id -> its rows' dedup keys


async def existing_keys(
    session: AsyncSession, keys: Sequence[str], source_event_id: uuid.UUID | None = None
) -> set[str]:
    """Which of these dedup keys are taken. Keys of `source_event_id`'s rows, when the
    relay pass read them with its batch (`prepare_existing`), are not asked again."""
    if not keys:
        return set()
    prepared: dict[uuid.UUID, set[str]] = shared(session, EXISTING) or {}
    if source_event_id is not None and source_event_id in prepared:
        return prepared[source_event_id] & set(keys)
    return set(await session.scalars(_EXISTING_KEYS, {"keys": list(set(keys))}))


async def prepare_existing(session: AsyncSession, event_ids: Sequence[uuid.UUID]) -> None:
    """The dedup keys of the rows these outbox events already have (one statement for a
    relay pass's batch; a redelivered event has some). Every notification row names its
    event (`source_event_id`) and its key starts with that event's id, and only the pass
    that claimed an event writes rows for it, so the set cannot miss one; a failed event's
    savepoint rollback takes its rows and the pass's shared reads with it."""
    prepared = shared(session, EXISTING)
    if prepared is None or not event_ids:
        return
    found: dict[uuid.UUID, set[str]] = {event_id: set() for event_id in event_ids}
    for event_id, key in await session.execute(_KEYS_OF_EVENTS, {"ids": list(set(event_ids))}):
        found[event_id].add(key)
    prepared.update(found)


async def _users_by_id(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, User]:
    """These users, active or not, by id: those the relay pass read for the people of its
    batch (`prepare_people`) or the unit of work for the people of its tasks
    (`tasks.repository.people`) from there, the others read."""
    seen: dict[uuid.UUID, User] = memo(session, tasks_repository.USERS)
    found = {user_id: seen[user_id] for user_id in set(ids) if user_id in seen}
    prepared = shared(session, PEOPLE) or {}
    found.update((user_id, prepared[user_id]) for user_id in set(ids) if user_id in prepared)
    missing = set(ids) - found.keys()
    if missing:
        loaded = {u.id: u for u in await session.scalars(_USERS, {"ids": list(missing)})}
        seen.update(loaded)
        found.update(loaded)
    return found


async def users(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[User]:
    """The active users among these."""
    if not ids:
        return []
    return [user for user in (await _users_by_id(session, ids)).values() if user.is_active]


async def preferences(
    session: AsyncSession, user_ids: Sequence[uuid.UUID]
) -> dict[tuple[uuid.UUID, str], NotificationPreference]:
    """The users' channel preferences by (user id, channel). A relay pass reads them once
    per user (`db.shared`; `prepare_people` reads those of a whole batch at once)."""
    if not user_ids:
        return {}
    known = shared(session, PREFERENCES)
    if known is None:
        rows = await session.scalars(_PREFERENCES, {"ids": list(set(user_ids))})
        return {(p.user_id, p.channel): p for p in rows}
    missing = set(user_ids) - known.keys()
    if missing:
        for user_id in missing:
            known[user_id] = {}
        for p in await session.scalars(_PREFERENCES, {"ids": list(missing)}):
            known[p.user_id][p.channel] = p
    return {
        (user_id, channel): p for user_id in set(user_ids) for channel, p in known[user_id].items()
    }


async def prepare_people(session: AsyncSession, tasks: Sequence[Task]) -> None:
    """Read the people of these tasks (creator, assignees, each user once) and their
    channel preferences in two statements, for a relay pass about to notify them event by
    event: `users`, `assignees`, `display_names` and `preferences` then find them read.

    Kept for the pass (`db.shared`: savepoints release the unit of work's memo, not
    these), like the pass's other reads of what it never writes: every event of the batch
    was committed before the pass claimed it, so what is read here is at least as new as
    each event; a change committed while the pass runs is the next pass's."""
    assignees_of = shared(session, ASSIGNEES)
    people_of = shared(session, PEOPLE)
    if not tasks or assignees_of is None or people_of is None:
        return
    extras, people = await tasks_repository.people(session, tasks)
    assignees_of.update((task.id, extras.get(task.id, [])) for task in tasks)
    people_of.update(people)
    await preferences(session, list(people))


async def task(session: AsyncSession, task_id: uuid.UUID) -> Task | None:
    return await session.get(Task, task_id)


async def assignees(session: AsyncSession, task: Task) -> list[uuid.UUID]:
    """The task's assignee, then its additional assignees in the order they were added."""
    prepared = shared(session, ASSIGNEES) or {}
    if task.id in prepared:
        extra = list(prepared[task.id])
    else:
        extra = (await tasks_repository.additional_assignees(session, [task.id])).get(task.id, [])
    return [u for u in ([task.assigned_to] if task.assigned_to else []) + extra]


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
    found = await _users_by_id(session, ids)
    return {user_id: user.full_name or user.username for user_id, user in found.items()}


async def templates(session: AsyncSession) -> list[NotificationTemplate]:
    """Every user-edited template part (a small table); read once per relay pass
    (`db.shared`)."""

    async def load() -> list[NotificationTemplate]:
        return list(await session.scalars(_TEMPLATES))

    return await read_shared(session, "notifications.templates", None, load)
