from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.models.auth import ApiClient, AuthSession, RefreshToken


async def get_session(session: AsyncSession, session_id: uuid.UUID) -> AuthSession | None:
    return await session.get(AuthSession, session_id)


async def refresh_token_by_hash(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    return await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
    )


async def revoke_sessions_of_user(
    session: AsyncSession, user_id: uuid.UUID, *, now: datetime, reason: str
) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )


async def client_by_client_id(session: AsyncSession, client_id: str) -> ApiClient | None:
    return await session.scalar(select(ApiClient).where(ApiClient.client_id == client_id))


async def touch_client(session: AsyncSession, id_: uuid.UUID, now: datetime) -> bool:
    """Record a use of a client that is still active; False when it was revoked meanwhile."""
    result = await session.execute(
        update(ApiClient)
        .where(ApiClient.id == id_, ApiClient.revoked_at.is_(None))
        .values(last_used_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def get_client(session: AsyncSession, id_: uuid.UUID) -> ApiClient | None:
    return await session.get(ApiClient, id_)


async def list_clients(session: AsyncSession) -> list[ApiClient]:
    return list(await session.scalars(select(ApiClient).order_by(ApiClient.created_at)))
