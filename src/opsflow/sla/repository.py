from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.models.sla import SlaClock, SlaEvent
from opsflow.models.task import Task

if TYPE_CHECKING:  # keeps the engine process from importing FastAPI
    from opsflow.kit.pagination import PageParams


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> list[SlaClock]:
    """Lock up to `limit` clocks whose next threshold is due.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so engines running side by side each take a
    different batch. SQLite serialises writers, so the lock clause is not needed there.
    """
    query = (
        select(SlaClock)
        .where(SlaClock.next_fire_at <= now)
        .order_by(SlaClock.next_fire_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(await session.scalars(query))


async def tasks_by_id(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, Task]:
    if not ids:
        return {}
    return {task.id: task for task in await session.scalars(select(Task).where(Task.id.in_(ids)))}


async def clocks_of(
    session: AsyncSession, task_id: uuid.UUID, *, for_update: bool = False
) -> dict[str, SlaClock]:
    query = select(SlaClock).where(SlaClock.task_id == task_id)
    if for_update:
        query = query.with_for_update()
    return {clock.kind: clock for clock in await session.scalars(query)}


async def events_of(session: AsyncSession, task_ids: Sequence[uuid.UUID]) -> list[SlaEvent]:
    if not task_ids:
        return []
    rows = await session.scalars(
        select(SlaEvent)
        .where(SlaEvent.task_id.in_(set(task_ids)))
        .order_by(SlaEvent.due_at, SlaEvent.event_type)
    )
    return list(rows)


@dataclass(frozen=True)
class EventFilters:
    event_type: str | None = None
    severity: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    task_id: uuid.UUID | None = None


async def search_events(
    session: AsyncSession, filters: EventFilters, params: PageParams
) -> tuple[list[SlaEvent], int]:
    query = select(SlaEvent)
    if filters.event_type:
        query = query.where(SlaEvent.event_type == filters.event_type)
    if filters.severity:
        query = query.where(SlaEvent.severity == filters.severity)
    if filters.start_date:
        query = query.where(SlaEvent.triggered_at >= filters.start_date)
    if filters.end_date:
        query = query.where(SlaEvent.triggered_at <= filters.end_date)
    if filters.task_id:
        query = query.where(SlaEvent.task_id == filters.task_id)
    total = int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = await session.scalars(
        query.order_by(SlaEvent.triggered_at.desc(), SlaEvent.id)
        .offset(params.offset)
        .limit(params.page_size)
    )
    return list(rows), total
