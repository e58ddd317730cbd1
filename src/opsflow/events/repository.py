"""Queries of the outbox (`models/outbox.py`) for the relay and its pruner."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, or_, select, true
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


async def prune_relayed(
    session: AsyncSession, cutoff: datetime, limit: int, *, keep_last_streamed: bool = True
) -> int:
    """Delete up to `limit` events that were relayed and both written and relayed before
    `cutoff`; never the newest streamed one (its `stream_seq` is where numbering goes on).
    ``SKIP LOCKED`` on PostgreSQL, so pruners side by side take different rows."""
    newest = select(func.max(OutboxEvent.stream_seq)).scalar_subquery()
    chosen = (
        select(OutboxEvent.id)
        .where(
            OutboxEvent.published_at.is_not(None),
            OutboxEvent.published_at < cutoff,
            OutboxEvent.created_at < cutoff,
            or_(OutboxEvent.stream_seq.is_(None), OutboxEvent.stream_seq < newest)
            if keep_last_streamed
            else true(),
        )
        .order_by(OutboxEvent.published_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        chosen = chosen.with_for_update(skip_locked=True)
    ids = list(await session.scalars(chosen))
    if ids:
        await session.execute(
            delete(OutboxEvent)
            .where(OutboxEvent.id.in_(ids))
            .execution_options(synchronize_session=False)
        )
    return len(ids)
