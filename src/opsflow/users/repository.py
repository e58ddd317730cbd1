from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from opsflow.kit.pagination import PageParams
from opsflow.kit.sql import escape_like
from opsflow.models.notification_preference import NotificationPreference
from opsflow.models.user import User


@dataclass(frozen=True)
class EmailReach:
    """Whose addresses a search may match: everyone's, or the caller's own and their
    team's (a search must not reveal addresses the caller cannot read)."""

    all: bool
    user_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_many(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, User]:
    if not ids:
        return {}
    rows = await session.scalars(select(User).where(User.id.in_(set(ids))))
    return {user.id: user for user in rows}


async def by_login(session: AsyncSession, login: str) -> User | None:
    login = login.strip().lower()
    return await session.scalar(
        select(User).where(or_(User.username == login, User.email == login))
    )


async def by_logins(session: AsyncSession, logins: Collection[str]) -> dict[str, User]:
    """Users by username or e-mail (lower-cased), each user under both of its names."""
    wanted = {login.strip().lower() for login in logins}
    if not wanted:
        return {}
    rows = await session.scalars(
        select(User).where(or_(User.username.in_(wanted), User.email.in_(wanted)))
    )
    found: dict[str, User] = {}
    for user in rows:
        found[user.username] = user
        found[user.email] = user
    return found


async def exists_with(session: AsyncSession, *, email: str, username: str) -> list[str]:
    """Which of the unique fields are already taken."""
    rows = await session.execute(
        select(User.email, User.username).where(
            or_(User.email == email.lower(), User.username == username.lower())
        )
    )
    taken: set[str] = set()
    for row_email, row_username in rows:
        if row_email == email.lower():
            taken.add("email")
        if row_username == username.lower():
            taken.add("username")
    return sorted(taken)


async def email_taken(session: AsyncSession, email: str) -> bool:
    return await session.scalar(select(User.id).where(User.email == email.lower())) is not None


async def count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def search(
    session: AsyncSession,
    params: PageParams,
    *,
    role: str | None = None,
    team_id: uuid.UUID | None = None,
    is_active: bool | None = None,
    q: str | None = None,
    email_reach: EmailReach | None = None,
) -> tuple[list[User], int]:
    """`q` matches usernames, full names and the e-mail addresses within `email_reach`."""
    query = select(User)
    if role is not None:
        query = query.where(User.role == role)
    if team_id is not None:
        query = query.where(User.team_id == team_id)
    if is_active is not None:
        query = query.where(User.is_active == is_active)
    if q:
        pattern = f"%{escape_like(q.lower())}%"
        email_match: ColumnElement[bool] = User.email.like(pattern, escape="\\")
        if email_reach is not None and not email_reach.all:
            readable = [User.id == email_reach.user_id]
            if email_reach.team_id is not None:
                readable.append(User.team_id == email_reach.team_id)
            email_match = and_(email_match, or_(*readable))
        query = query.where(
            or_(
                User.username.like(pattern, escape="\\"),
                email_match,
                func.lower(User.full_name).like(pattern, escape="\\"),
            )
        )
    total = int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = await session.scalars(
        query.order_by(User.username).offset(params.offset).limit(params.page_size)
    )
    return list(rows), total


async def in_team(
    session: AsyncSession, team_id: uuid.UUID, *, include_inactive: bool = False
) -> list[User]:
    query = select(User).where(User.team_id == team_id)
    if not include_inactive:
        query = query.where(User.is_active.is_(True))
    rows = await session.scalars(query.order_by(User.username))
    return list(rows)


async def preferences(session: AsyncSession, user_id: uuid.UUID) -> list[NotificationPreference]:
    rows = await session.scalars(
        select(NotificationPreference)
        .where(NotificationPreference.user_id == user_id)
        .order_by(NotificationPreference.channel)
    )
    return list(rows)
