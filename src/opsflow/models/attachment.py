"""Files attached to tasks, and the resumable uploads that produce the big ones."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from opsflow.db import Base
from opsflow.kit.types import UTCDateTime
from opsflow.models.mixins import UUIDPrimaryKey


class Attachment(UUIDPrimaryKey, Base):
    """A stored file of a task. `storage_key` names its bytes in the storage backend.
    A deleted attachment keeps its row (`deleted_at`) until the collector has removed its
    bytes (`purged_at`)."""

    __tablename__ = "attachments"
    __table_args__ = (
        Index("ix_attachments_task_id_created_at", "task_id", "created_at"),
        Index("ix_attachments_deleted_at_purged_at", "deleted_at", "purged_at"),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("tasks.id"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    uploaded_by_type: Mapped[str] = mapped_column(String(16))
    uploaded_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    uploaded_by_name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Upload(UUIDPrimaryKey, Base):
    """A resumable upload: the file declared up front, received in numbered chunks.

    `state` is open | assembling | failed | completed. `backend_id` is what the storage
    backend needs to finish it (the S3 multipart upload id). `expires_at` moves with each
    chunk received; past it, the collector removes the upload and its chunks."""

    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_expires_at", "expires_at"),)

    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("tasks.id"))
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    chunk_size: Mapped[int] = mapped_column(BigInteger)
    total_chunks: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    storage_key: Mapped[str] = mapped_column(String(255))
    backend_id: Mapped[str | None] = mapped_column(String(1024))
    created_by_type: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_by_name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attachment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("attachments.id"))
    failure: Mapped[str | None] = mapped_column(String(255))


class UploadChunk(Base):
    """One received chunk (a chunk sent again replaces the first one)."""

    __tablename__ = "upload_chunks"

    upload_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
