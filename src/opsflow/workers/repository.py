"""Queries of the engine heartbeats table (`models/engine.py`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.models.engine import EngineHeartbeat


async def save_heartbeat(session: AsyncSession, row: EngineHeartbeat) -> None:
    """Update the process's row (`last_seen`, `rounds`), or insert it the first time."""
    updated = await session.execute(
        update(EngineHeartbeat)
        .where(EngineHeartbeat.id == row.id)
        .values(last_seen=row.last_seen, rounds=row.rounds)
        .execution_options(synchronize_session=False)
    )
    if getattr(updated, "rowcount", 0) == 0:
        session.add(row)
        await session.flush()


async def delete_heartbeat(session: AsyncSession, heartbeat_id: uuid.UUID) -> None:
    await session.execute(delete(EngineHeartbeat).where(EngineHeartbeat.id == heartbeat_id))


async def delete_unseen_since(session: AsyncSession, before: datetime) -> None:
    await session.execute(delete(EngineHeartbeat).where(EngineHeartbeat.last_seen < before))


async def recent_heartbeats(session: AsyncSession, limit: int) -> list[EngineHeartbeat]:
    query = select(EngineHeartbeat).order_by(EngineHeartbeat.last_seen.desc()).limit(limit)
    return list(await session.scalars(query))
