"""Queries of the outbox (`models/outbox.py`) for the relay."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow import db
from opsflow.models.outbox import OutboxEvent


async def claim_unpublished(session: AsyncSession, now: datetime, limit: int) -> list[OutboxEvent]:
    """Unpublished events that are available, oldest first (``SKIP LOCKED`` on PostgreSQL)."""
    due, unpublished = OutboxEvent.available_at, OutboxEvent.published_at.is_(None)
    order = [OutboxEvent.created_at, OutboxEvent.id]
    return await db.claim_due(
        session, OutboxEvent, due, now, limit, where=[unpublished], order_by=order
    )


async def next_available(session: AsyncSession) -> datetime | None:
    """The earliest instant an unpublished event becomes available, None when none is left."""
    value: datetime | None = await session.scalar(
        select(func.min(OutboxEvent.available_at)).where(OutboxEvent.published_at.is_(None))
    )
    return value
