from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.kit.pagination import PageParams
from opsflow.models.team import Team
from opsflow.models.user import User


async def get(session: AsyncSession, team_id: uuid.UUID) -> Team | None:
    return await session.get(Team, team_id)


async def by_name(session: AsyncSession, name: str) -> Team | None:
    return await session.scalar(select(Team).where(func.lower(Team.name) == name.lower()))


async def by_names(session: AsyncSession, names: Collection[str]) -> dict[str, Team]:
    """Teams by name (lower-cased)."""
    wanted = {name.strip().lower() for name in names}
    if not wanted:
        return {}
    rows = await session.scalars(select(Team).where(func.lower(Team.name).in_(wanted)))
    return {team.name.lower(): team for team in rows}


async def member_counts(session: AsyncSession, team_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not team_ids:
        return {}
    rows = await session.execute(
        select(User.team_id, func.count())
        .where(User.team_id.in_(team_ids), User.is_active.is_(True))
        .group_by(User.team_id)
    )
    return {team_id: int(n) for team_id, n in rows if team_id is not None}


async def search(
    session: AsyncSession, params: PageParams, *, include_inactive: bool
) -> tuple[list[Team], int]:
    query = select(Team)
    if not include_inactive:
        query = query.where(Team.is_active.is_(True))
    total = int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = await session.scalars(
        query.order_by(Team.name).offset(params.offset).limit(params.page_size)
    )
    return list(rows), total
