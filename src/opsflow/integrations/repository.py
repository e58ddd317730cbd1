"""Queries for alert integrations: integrations, their event log, their incidents, key locks."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.kit.pagination import PageParams
from opsflow.models.integration import Integration, IntegrationEvent
from opsflow.models.task import Task


async def named(session: AsyncSession, name: str) -> Integration | None:
    return await session.scalar(select(Integration).where(Integration.name == name))


async def by_key_hash(session: AsyncSession, key_hash: str) -> Integration | None:
    return await session.scalar(select(Integration).where(Integration.key_hash == key_hash))


async def page_of(session: AsyncSession, page: PageParams) -> tuple[list[Integration], int]:
    total = int(await session.scalar(select(func.count()).select_from(Integration)) or 0)
    rows = await session.scalars(
        select(Integration).order_by(Integration.name).offset(page.offset).limit(page.page_size)
    )
    return list(rows), total


async def events_of(
    session: AsyncSession, integration_id: uuid.UUID, page: PageParams
) -> tuple[list[IntegrationEvent], int]:
    """An integration's event log, newest first, one page."""
    where = IntegrationEvent.integration_id == integration_id
    total = int(
        await session.scalar(select(func.count()).select_from(IntegrationEvent).where(where)) or 0
    )
    rows = await session.scalars(
        select(IntegrationEvent)
        .where(where)
        .order_by(IntegrationEvent.received_at.desc(), IntegrationEvent.id)
        .offset(page.offset)
        .limit(page.page_size)
    )
    return list(rows), total


async def prune_events(session: AsyncSession, integration_id: uuid.UUID, cutoff: datetime) -> None:
    await session.execute(
        delete(IntegrationEvent).where(
            IntegrationEvent.integration_id == integration_id,
            IntegrationEvent.received_at < cutoff,
        )
    )


async def lock(session: AsyncSession, lock_id: int) -> None:
    """A transaction-scoped advisory lock (PostgreSQL)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})


async def latest_incident(
    session: AsyncSession, source: str, dedup_key: str, *, open_only: bool
) -> Task | None:
    """The newest live incident of this source and dedup key (only an open one if asked)."""
    query = select(Task).where(
        Task.source == source, Task.dedup_key == dedup_key, Task.deleted_at.is_(None)
    )
    if open_only:
        query = query.where(Task.completed_at.is_(None))
    return await session.scalar(query.order_by(Task.created_at.desc()).limit(1))
