"""Request and response bodies of attachments and resumable uploads."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

MiB = 1024 * 1024
MAX_UPLOAD_BYTES = 2 * 1024 * MiB  # 2 GiB
MIN_CHUNK_BYTES = 5 * MiB  # S3's smallest part (all but the last)
SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"


class AttachmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    task_id: uuid.UUID
    filename: str = Field(description="the sanitised file name")
    content_type: str = Field(description="the MIME type detected from the content")
    size: int
    sha256: str
    uploaded_by: uuid.UUID
    uploaded_by_type: str = Field(description="user or api (an API client)")
    uploaded_by_name: str
    created_at: datetime
    download_url: str


class AttachmentList(BaseModel):
    items: list[AttachmentRead]


class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: uuid.UUID
    filename: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=1, le=MAX_UPLOAD_BYTES, description="bytes, at most 2 GiB")
    sha256: str = Field(pattern=SHA256_PATTERN, description="of the whole file, hex")
    chunk_size: int = Field(
        ge=MIN_CHUNK_BYTES,
        description="bytes per chunk (the last one may be shorter): at least 5 MiB, at most "
        "the server's OPSFLOW_UPLOAD_MAX_CHUNK_BYTES (64 MiB by default)",
    )


class UploadRead(BaseModel):
    upload_id: uuid.UUID
    task_id: uuid.UUID
    filename: str
    size: int
    sha256: str
    chunk_size: int
    total_chunks: int
    state: str = Field(description="open, assembling, failed or completed")
    received: list[int] = Field(description="numbers of the chunks received (0-based)")
    received_bytes: int
    missing_chunks: list[int]
    percentage: float = Field(description="share of the file's bytes received, 0-100")
    created_at: datetime
    expires_at: datetime | None = Field(
        description="when the upload is collected unless another chunk arrives first"
    )
    attachment_id: uuid.UUID | None = None
    failure: str | None = None
