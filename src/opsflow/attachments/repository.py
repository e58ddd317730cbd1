"""Queries of attachments, uploads and their chunks."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow import db
from opsflow.collaboration.repository import After, after_clause
from opsflow.models.attachment import Attachment, Upload, UploadChunk


def _locking(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def attachment(session: AsyncSession, attachment_id: uuid.UUID) -> Attachment | None:
    """A live (not deleted) attachment."""
    query = select(Attachment).where(
        Attachment.id == attachment_id, Attachment.deleted_at.is_(None)
    )
    result: Attachment | None = await session.scalar(query)
    return result


async def of_task(session: AsyncSession, task_id: uuid.UUID) -> Sequence[Attachment]:
    rows = await session.scalars(
        select(Attachment)
        .where(Attachment.task_id == task_id, Attachment.deleted_at.is_(None))
        .order_by(Attachment.created_at, Attachment.id)
    )
    return rows.all()


async def upload(
    session: AsyncSession, upload_id: uuid.UUID, *, for_update: bool = False
) -> Upload | None:
    query = select(Upload).where(Upload.id == upload_id)
    if for_update and _locking(session):
        query = query.with_for_update()
    result: Upload | None = await session.scalar(query)
    return result


async def chunks(session: AsyncSession, upload_id: uuid.UUID) -> list[UploadChunk]:
    rows = await session.scalars(
        select(UploadChunk).where(UploadChunk.upload_id == upload_id).order_by(UploadChunk.number)
    )
    return list(rows)


async def save_chunk(session: AsyncSession, chunk: UploadChunk) -> None:
    """Record a received chunk; one received before under the same number is replaced."""
    await session.execute(
        delete(UploadChunk).where(
            UploadChunk.upload_id == chunk.upload_id, UploadChunk.number == chunk.number
        )
    )
    session.add(chunk)
    await session.flush()


async def drop_chunks(session: AsyncSession, upload_id: uuid.UUID) -> None:
    await session.execute(delete(UploadChunk).where(UploadChunk.upload_id == upload_id))


async def claim_expired(session: AsyncSession, now: datetime, limit: int) -> list[Upload]:
    """Uploads past their expiry (abandoned, failed or stuck), locked on PostgreSQL."""
    return await db.claim_due(session, Upload, Upload.expires_at, now, limit)


async def claim_deleted(session: AsyncSession, limit: int) -> list[Attachment]:
    """Deleted attachments whose bytes are still stored."""
    return await db.claim(
        session,
        select(Attachment)
        .where(Attachment.deleted_at.is_not(None), Attachment.purged_at.is_(None))
        .order_by(Attachment.deleted_at)
        .limit(limit),
    )


async def next_expiry(session: AsyncSession) -> datetime | None:
    value: datetime | None = await session.scalar(select(func.min(Upload.expires_at)))
    return value


async def remove_upload(session: AsyncSession, upload: Upload) -> None:
    await drop_chunks(session, upload.id)
    await session.delete(upload)


async def timeline_rows(
    session: AsyncSession, task_id: uuid.UUID, after: After | None, rank: int, limit: int
) -> list[Attachment]:
    """A task's attachments (deleted ones too) after a timeline position, oldest first."""
    key = uuid.UUID(int=0) if after is None or after.rank != rank else uuid.UUID(after.key)
    query = (
        select(Attachment)
        .where(
            Attachment.task_id == task_id,
            after_clause(rank, Attachment.created_at, Attachment.id, after, key),
        )
        .order_by(Attachment.created_at, Attachment.id)
        .limit(limit)
    )
    return list(await session.scalars(query))
