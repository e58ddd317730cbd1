"""Every query on escalation policies and escalation events."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow import db
from opsflow.kit.pagination import PageParams
from opsflow.models.enums import EscalationStatus
from opsflow.models.escalation import EscalationEvent, EscalationPolicy
from opsflow.models.sla import SlaClock, SlaPolicyRow, SlaSettingsRow
from opsflow.models.task import Task, TaskAssignee
from opsflow.models.team import Team
from opsflow.models.user import User


async def active_policies(
    session: AsyncSession, trigger: str | None = None
) -> list[EscalationPolicy]:
    """The active policies (of one trigger), by name; read once per relay pass
    (`db.shared`)."""
    query = select(EscalationPolicy).where(EscalationPolicy.is_active.is_(True))
    if trigger is not None:
        query = query.where(EscalationPolicy.trigger == trigger)

    async def load() -> list[EscalationPolicy]:
        return list(await session.scalars(query.order_by(EscalationPolicy.name)))

    return await db.read_shared(session, "escalation.active_policies", trigger, load)


async def all_policies(
    session: AsyncSession, params: PageParams
) -> tuple[list[EscalationPolicy], int]:
    total = int(await session.scalar(select(func.count()).select_from(EscalationPolicy)) or 0)
    rows = await session.scalars(
        select(EscalationPolicy)
        .order_by(EscalationPolicy.name)
        .offset(params.offset)
        .limit(params.page_size)
    )
    return list(rows), total


async def get_policy(session: AsyncSession, policy_id: uuid.UUID) -> EscalationPolicy | None:
    return await session.get(EscalationPolicy, policy_id)


async def policy_named(session: AsyncSession, name: str) -> EscalationPolicy | None:
    return await session.scalar(select(EscalationPolicy).where(EscalationPolicy.name == name))


async def run_exists(session: AsyncSession, run_id: uuid.UUID) -> bool:
    query = select(EscalationEvent.id).where(EscalationEvent.run_id == run_id).limit(1)
    return (await session.scalar(query)) is not None


# Built once: every change of a task reads its pending steps (constructing the statement
# cost about as much CPU as running it).
_PENDING = (
    select(EscalationEvent)
    .where(
        EscalationEvent.task_id == bindparam("task_id"),
        EscalationEvent.status == EscalationStatus.PENDING,
    )
    .order_by(EscalationEvent.fire_at, EscalationEvent.level)
)
_PENDING_FOR_UPDATE = _PENDING.with_for_update()


async def pending_of_task(
    session: AsyncSession, task_id: uuid.UUID, *, for_update: bool = True
) -> list[EscalationEvent]:
    query = _PENDING_FOR_UPDATE if for_update else _PENDING
    return list(await session.scalars(query, {"task_id": task_id}))


async def pending_of_tasks(
    session: AsyncSession, task_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[EscalationEvent]]:
    """The pending steps of many tasks (locked), each task's in `pending_of_task`'s order."""
    result: dict[uuid.UUID, list[EscalationEvent]] = {task_id: [] for task_id in task_ids}
    if not task_ids:
        return result
    query = (
        select(EscalationEvent)
        .where(
            EscalationEvent.task_id.in_(set(task_ids)),
            EscalationEvent.status == EscalationStatus.PENDING,
        )
        .order_by(EscalationEvent.task_id, EscalationEvent.fire_at, EscalationEvent.level)
        .with_for_update()
    )
    for step in await session.scalars(query):
        result[step.task_id].append(step)
    return result


async def of_task(session: AsyncSession, task_id: uuid.UUID) -> list[EscalationEvent]:
    query = (
        select(EscalationEvent)
        .where(EscalationEvent.task_id == task_id)
        .order_by(EscalationEvent.fire_at, EscalationEvent.cycle, EscalationEvent.step_index)
    )
    return list(await session.scalars(query))


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> list[EscalationEvent]:
    """Lock due pending steps (``SKIP LOCKED`` on PostgreSQL, like the SLA engine)."""
    due, pending = EscalationEvent.fire_at, EscalationEvent.status == EscalationStatus.PENDING
    return await db.claim_due(session, EscalationEvent, due, now, limit, where=[pending])


async def next_due(session: AsyncSession) -> datetime | None:
    query = select(func.min(EscalationEvent.fire_at)).where(
        EscalationEvent.status == EscalationStatus.PENDING
    )
    value: datetime | None = await session.scalar(query)
    return value


@dataclass(frozen=True)
class EventFilters:
    task_id: uuid.UUID | None = None
    status: str | None = None
    level: int | None = None
    policy_id: uuid.UUID | None = None


async def search_events(
    session: AsyncSession, filters: EventFilters, params: PageParams
) -> tuple[list[EscalationEvent], int]:
    query = select(EscalationEvent)
    if filters.task_id:
        query = query.where(EscalationEvent.task_id == filters.task_id)
    if filters.status:
        query = query.where(EscalationEvent.status == filters.status)
    if filters.level is not None:
        query = query.where(EscalationEvent.level == filters.level)
    if filters.policy_id:
        query = query.where(EscalationEvent.policy_id == filters.policy_id)
    total = int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = await session.scalars(
        query.order_by(EscalationEvent.fire_at.desc(), EscalationEvent.id)
        .offset(params.offset)
        .limit(params.page_size)
    )
    return list(rows), total


# --- who a target reaches -----------------------------------------------------------------


async def team(session: AsyncSession, team_id: uuid.UUID | None) -> Team | None:
    return await session.get(Team, team_id) if team_id else None


async def additional_assignees(session: AsyncSession, task_id: uuid.UUID) -> list[uuid.UUID]:
    query = select(TaskAssignee.user_id).where(TaskAssignee.task_id == task_id)
    return list(await session.scalars(query))


async def active_users(
    session: AsyncSession,
    *,
    ids: Sequence[uuid.UUID] = (),
    team_id: uuid.UUID | None = None,
    role: str | None = None,
) -> list[User]:
    query = select(User).where(User.is_active.is_(True))
    if ids:
        query = query.where(User.id.in_(set(ids)))
    if team_id is not None:
        query = query.where(User.team_id == team_id)
    if role is not None:
        query = query.where(User.role == role)
    return list(await session.scalars(query.order_by(User.username)))


# --- escalation levels of the task's SLA policy ---------------------------------------------


@dataclass(frozen=True)
class SlaLevels:
    policy_name: str
    levels: list[tuple[int, int]]  # (level, working minutes after creation)
    labels: dict[int, str]  # escalation_levels of the SLA configuration
    calendar_name: str | None  # of the task's START clock (None: 24x7)
    calendar_spec: dict[str, Any] | None


async def sla_levels(session: AsyncSession, task: Task) -> SlaLevels | None:
    """The escalation levels of the SLA policy the task was created under, if it has any."""
    if task.sla_policy_id is None:
        return None
    policy = await session.get(SlaPolicyRow, task.sla_policy_id)
    if policy is None or not policy.escalation:
        return None
    settings = await session.get(SlaSettingsRow, 1)
    labels = settings.escalation_levels if settings else []
    clock = await session.scalar(
        select(SlaClock).where(SlaClock.task_id == task.id, SlaClock.kind == "START")
    )
    return SlaLevels(
        policy_name=policy.name,
        levels=sorted((int(level), int(minutes)) for level, minutes in policy.escalation),
        labels={int(level): str(label) for level, label in labels},
        calendar_name=clock.calendar_name if clock else None,
        calendar_spec=clock.calendar_spec if clock else None,
    )
