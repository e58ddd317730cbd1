"""Queries for ticket ingestion: tasks by their (source, external id)."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.models.task import Task


async def by_external_ids(
    session: AsyncSession, source: str, external_ids: Collection[str]
) -> dict[str, Task]:
    """The tasks of `source` with these external ids (cancelled ones included)."""
    if not external_ids:
        return {}
    rows = await session.scalars(
        select(Task).where(Task.source == source, Task.external_id.in_(set(external_ids)))
    )
    return {task.external_id: task for task in rows if task.external_id is not None}


async def with_external_id(
    session: AsyncSession, external_id: str, source: str | None
) -> list[Task]:
    """Live tasks carrying `external_id` (from `source`, or from any source: at most two,
    enough to tell an unambiguous match)."""
    query = select(Task).where(Task.external_id == external_id, Task.deleted_at.is_(None))
    if source is not None:
        query = query.where(Task.source == source)
    return list(await session.scalars(query.order_by(Task.source).limit(2)))
