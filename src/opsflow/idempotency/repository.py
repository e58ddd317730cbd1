from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.models.idempotency import IdempotencyRecord


async def find(session: AsyncSession, principal: str, key: str) -> IdempotencyRecord | None:
    return await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal, IdempotencyRecord.key == key
        )
    )


async def remove(session: AsyncSession, record_id: uuid.UUID) -> None:
    await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))


async def complete(
    session: AsyncSession,
    record_id: uuid.UUID,
    *,
    status_code: int,
    body: bytes | None,
    headers: dict[str, Any],
) -> None:
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id, IdempotencyRecord.status_code.is_(None))
        .values(status_code=status_code, response_body=body, response_headers=headers)
    )
