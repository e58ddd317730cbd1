"""Queries of the outbox (`models/outbox.py`) for the relay."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.models.outbox import OutboxEvent


async def claim_unpublished(session: AsyncSession, now: datetime, limit: int) -> list[OutboxEvent]:
    """Unpublished events that are available, oldest first (``SKIP LOCKED`` on PostgreSQL)."""
    query = (
        select(OutboxEvent)
        .where(OutboxEvent.published_at.is_(None), OutboxEvent.available_at <= now)
        .order_by(OutboxEvent.created_at, OutboxEvent.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(await session.scalars(query))


async def next_available(session: AsyncSession) -> datetime | None:
    """The earliest instant an unpublished event becomes available, None when none is left."""
    value: datetime | None = await session.scalar(
        select(func.min(OutboxEvent.available_at)).where(OutboxEvent.published_at.is_(None))
    )
    return value
