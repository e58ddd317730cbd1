from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.kit.pagination import PageParams
from opsflow.models.audit import AuditLog


@dataclass(frozen=True)
class AuditFilters:
    entity_type: str | None = None
    entity_id: uuid.UUID | None = None
    action: str | None = None
    actor_id: uuid.UUID | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None


def _filtered(filters: AuditFilters) -> Select[AuditLog]:
    # Committed rows are all sealed; the condition lets a newest-first scan of the `seq`
    # index start past the NULL entries that sealing leaves behind until vacuum.
    query = select(AuditLog).where(AuditLog.seq.is_not(None))
    if filters.entity_type:
        query = query.where(AuditLog.entity_type == filters.entity_type)
    if filters.entity_id:
        query = query.where(AuditLog.entity_id == filters.entity_id)
    if filters.action:
        query = query.where(AuditLog.action == filters.action.upper())
    if filters.actor_id:
        query = query.where(AuditLog.actor_id == filters.actor_id)
    if filters.start_date:
        query = query.where(AuditLog.timestamp >= filters.start_date)
    if filters.end_date:
        query = query.where(AuditLog.timestamp <= filters.end_date)
    return query


async def search(
    session: AsyncSession, filters: AuditFilters, params: PageParams
) -> tuple[list[AuditLog], int]:
    query = _filtered(filters)
    total = int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = await session.scalars(
        query.order_by(AuditLog.seq.desc()).offset(params.offset).limit(params.page_size)
    )
    return list(rows), total


async def stream(
    session: AsyncSession, filters: AuditFilters | None = None, batch: int = 1000
) -> AsyncIterator[list[AuditLog]]:
    """Batches in chain order, by keyset on `seq` (constant memory, no OFFSET scans)."""
    after = 0
    base = _filtered(filters or AuditFilters())
    while True:
        rows = list(
            await session.scalars(
                base.where(AuditLog.seq > after).order_by(AuditLog.seq).limit(batch)
            )
        )
        if not rows:
            return
        yield rows
        after = rows[-1].seq
        session.expunge_all()
