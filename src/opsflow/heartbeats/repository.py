"""Queries of the heartbeat monitors, their pings and their open runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow import db
from opsflow.models.heartbeat import HeartbeatMonitor, HeartbeatPing, HeartbeatRun

PINGS_KEPT = 100  # per monitor; older pings are deleted as new ones arrive


def _locking(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> list[HeartbeatMonitor]:
    """Lock up to `limit` monitors whose next check is due (``FOR UPDATE SKIP LOCKED`` on
    PostgreSQL: passes side by side take different monitors; SQLite serialises writers)."""
    return await db.claim_due(session, HeartbeatMonitor, HeartbeatMonitor.next_check_at, now, limit)


async def next_due(session: AsyncSession) -> datetime | None:
    query = select(func.min(HeartbeatMonitor.next_check_at))
    value: datetime | None = await session.scalar(query)
    return value


async def by_key(session: AsyncSession, key: str) -> HeartbeatMonitor | None:
    """The monitor of a ping key, locked on PostgreSQL (a signal and an engine pass on the
    same monitor take turns)."""
    query = select(HeartbeatMonitor).where(HeartbeatMonitor.ping_key == key)
    if _locking(session):
        query = query.with_for_update()
    result: HeartbeatMonitor | None = await session.scalar(query)
    return result


async def get(
    session: AsyncSession, monitor_id: uuid.UUID, *, for_update: bool = False
) -> HeartbeatMonitor | None:
    query = select(HeartbeatMonitor).where(HeartbeatMonitor.id == monitor_id)
    if for_update and _locking(session):
        query = query.with_for_update()
    result: HeartbeatMonitor | None = await session.scalar(query)
    return result


async def listing(
    session: AsyncSession, limit: int, offset: int
) -> tuple[Sequence[HeartbeatMonitor], int]:
    total = await session.scalar(select(func.count()).select_from(HeartbeatMonitor))
    rows = await session.scalars(
        select(HeartbeatMonitor)
        .order_by(HeartbeatMonitor.name, HeartbeatMonitor.id)
        .limit(limit)
        .offset(offset)
    )
    return rows.all(), int(total or 0)


async def runs(session: AsyncSession, monitor_id: uuid.UUID) -> list[HeartbeatRun]:
    query = select(HeartbeatRun).where(HeartbeatRun.monitor_id == monitor_id)
    return list(await session.scalars(query.order_by(HeartbeatRun.started_at)))


async def prune_pings(session: AsyncSession, monitor: HeartbeatMonitor) -> None:
    await session.execute(
        delete(HeartbeatPing).where(
            HeartbeatPing.monitor_id == monitor.id,
            HeartbeatPing.seq <= monitor.ping_count - PINGS_KEPT,
        )
    )


async def pings(
    session: AsyncSession, monitor_id: uuid.UUID, limit: int
) -> Sequence[HeartbeatPing]:
    rows = await session.scalars(
        select(HeartbeatPing)
        .where(HeartbeatPing.monitor_id == monitor_id)
        .order_by(HeartbeatPing.seq.desc())
        .limit(limit)
    )
    return rows.all()


async def delete_monitor(session: AsyncSession, monitor: HeartbeatMonitor) -> None:
    await session.execute(delete(HeartbeatPing).where(HeartbeatPing.monitor_id == monitor.id))
    await session.execute(delete(HeartbeatRun).where(HeartbeatRun.monitor_id == monitor.id))
    await session.delete(monitor)
