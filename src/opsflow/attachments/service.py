"""Attachments of tasks and the resumable uploads that produce big ones.

Bytes move outside database transactions: a request body is spooled to a file (counted,
hashed, its type detected from its first bytes), handed to the storage backend, and only
then is the row written, with its audit entry and outbox event, in one short unit of work.
A file whose row never commits is removed again. Deleting an attachment marks its row; the
collector engine removes the bytes afterwards, so a rolled-back delete loses nothing.

Readers of a task read its attachments; holders of the comment permission add them; the
uploader or an admin deletes one. An upload belongs to whoever began it.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.attachments import repository
from opsflow.attachments.content import BadName, clean_filename, detect_type
from opsflow.attachments.schemas import AttachmentRead, UploadCreate, UploadRead
from opsflow.attachments.storage import HEAD, Part, Storage
from opsflow.auth.permissions import Permission, reach_of
from opsflow.auth.principal import Principal
from opsflow.context import AppContext
from opsflow.db import on_rollback, unit_of_work
from opsflow.errors import (
    AppError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from opsflow.events.changes import record_change
from opsflow.models.attachment import Attachment, Upload, UploadChunk
from opsflow.models.task import Task

API_PREFIX = "/api/v1"
SPOOL_BUFFER = 1024 * 1024


class ChecksumMismatch(AppError):
    status_code = 422
    code = "CHECKSUM_MISMATCH"
    default_message = "The assembled file does not match the declared size and sha256"


class RangeNotSatisfiable(AppError):
    status_code = 416
    code = "RANGE_NOT_SATISFIABLE"
    default_message = "The requested range is outside the file"


class Readable(Protocol):
    async def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class Spooled:
    path: Path
    size: int
    sha256: str
    head: bytes


def _name(raw: str | None, field: str) -> str:
    try:
        return clean_filename(raw)
    except BadName as exc:
        raise ValidationFailed(
            f"Unacceptable file name: {exc}", details=[{"field": field, "message": str(exc)}]
        ) from exc


async def _spool(
    storage: Storage,
    blocks: AsyncIterator[bytes],
    *,
    limit: int,
    too_large: AppError,
    hashed: bool = True,
) -> Spooled:
    """Write `blocks` to a spool file, counting (and hashing); `too_large` is raised (and
    the file removed) as soon as more than `limit` bytes arrive. Blocks are gathered up to
    `SPOOL_BUFFER` bytes per write, so a body costs few thread hops and little memory."""
    path = storage.spool_dir / f"spool-{uuid.uuid4().hex}"
    digest = hashlib.sha256()
    size = 0
    head = b""
    buffer = bytearray()
    try:
        async with await anyio.open_file(path, "wb") as out:
            async for block in blocks:
                if not block:
                    continue
                size += len(block)
                if size > limit:
                    raise too_large
                if hashed:
                    digest.update(block)
                if len(head) < HEAD:
                    head += block[: HEAD - len(head)]
                buffer += block
                if len(buffer) >= SPOOL_BUFFER:
                    await out.write(bytes(buffer))
                    buffer.clear()
            if buffer:
                await out.write(bytes(buffer))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Spooled(path, size, digest.hexdigest() if hashed else "", head)


async def _file_blocks(source: Readable, block: int = 1024 * 1024) -> AsyncIterator[bytes]:
    while data := await source.read(block):
        yield data


async def _live_task(
    ctx: AppContext, task_id: uuid.UUID, request_session: AsyncSession | None = None
) -> Task:
    """The task, unless it is missing or deleted (404).

    Read through `request_session` when that already holds a connection (an
    `Idempotency-Key` was claimed in it): a request never holds two pooled connections at
    once, since with every connection of the pool taken by such requests, each would wait
    for a second one that only the others could give back. Otherwise a short read-only
    unit of work, so the request's transaction does not stay open while the file arrives.
    """
    if request_session is not None and request_session.in_transaction():
        task = await request_session.get(Task, task_id)
    else:
        async with unit_of_work(ctx.read_sessions) as session:
            task = await session.get(Task, task_id)
    if task is None or task.deleted_at is not None:
        raise NotFound("task", task_id)
    return task


def view(attachment: Attachment) -> AttachmentRead:
    return AttachmentRead(
        id=attachment.id,
        task_id=attachment.task_id,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
        sha256=attachment.sha256,
        uploaded_by=attachment.uploaded_by,
        uploaded_by_type=attachment.uploaded_by_type,
        uploaded_by_name=attachment.uploaded_by_name,
        created_at=attachment.created_at,
        download_url=f"{API_PREFIX}/attachments/{attachment.id}",
    )


def _state(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": attachment.id,
        "task_id": attachment.task_id,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.sha256,
    }


def _record(
    session: AsyncSession, actor: Principal, attachment: Attachment, verb: str, now: datetime
) -> None:
    state = _state(attachment)
    record_change(
        session,
        actor,
        entity_type="attachment",
        entity_id=attachment.id,
        action=f"ATTACHMENT_{verb.upper()}",
        event_type=f"attachment.{verb}",
        payload={**state, "task_id": attachment.task_id, "actor": actor.name},
        now=now,
        previous_state=state if verb == "deleted" else None,
        new_state=state if verb == "created" else None,
        metadata={"task_id": str(attachment.task_id)},
    )


async def _store_row(
    ctx: AppContext, actor: Principal, attachment: Attachment, extra: Upload | None = None
) -> Attachment:
    """Insert the row (audit + outbox in the same unit of work); on failure the stored
    bytes are removed again."""
    try:
        async with unit_of_work(ctx.sessions) as session:
            now = ctx.clock.now()
            attachment.created_at = now
            session.add(attachment)
            if extra is not None:
                upload = await repository.upload(session, extra.id, for_update=True)
                if upload is None or upload.state != "assembling":
                    raise Conflict("The upload changed while it was being completed")
                upload.state = "completed"
                upload.attachment_id = attachment.id
                upload.expires_at = None
                upload.updated_at = now
                await repository.drop_chunks(session, upload.id)
            await session.flush()
            _record(session, actor, attachment, "created", now)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await ctx.storage.delete(attachment.storage_key)
        raise
    return attachment


# --- attachments ----------------------------------------------------------------------------


async def attach(
    session: AsyncSession,
    ctx: AppContext,
    actor: Principal,
    task_id: uuid.UUID,
    filename: str | None,
    source: Readable,
) -> Attachment:
    """A file sent in one request (multipart), at most `attachment_max_bytes`. The row is
    written in the request's unit of work (with its `Idempotency-Key`); if that rolls back,
    the stored bytes are removed again."""
    name = _name(filename, "file")
    task = await _live_task(ctx, task_id, session)
    limit = ctx.settings.attachment_max_bytes
    spooled = await _spool(
        ctx.storage,
        _file_blocks(source),
        limit=limit,
        too_large=PayloadTooLarge(f"The file exceeds {limit} bytes", max_bytes=limit),
    )
    attachment_id = uuid.uuid4()
    key = f"attachments/{attachment_id}"
    try:
        await ctx.storage.put_file(key, spooled.path)
    finally:
        spooled.path.unlink(missing_ok=True)

    async def remove_bytes() -> None:
        with anyio.CancelScope(shield=True):
            await ctx.storage.delete(key)

    on_rollback(session, remove_bytes)
    now = ctx.clock.now()
    attachment = Attachment(
        id=attachment_id,
        task_id=task.id,
        filename=name,
        content_type=detect_type(spooled.head),
        size=spooled.size,
        sha256=spooled.sha256,
        storage_key=key,
        uploaded_by_type=actor.actor_type.value,
        uploaded_by=actor.id,
        uploaded_by_name=actor.name[:255],
        created_at=now,
    )
    session.add(attachment)
    await session.flush()
    _record(session, actor, attachment, "created", now)
    return attachment


async def listing(ctx: AppContext, task_id: uuid.UUID) -> list[Attachment]:
    await _live_task(ctx, task_id)
    async with unit_of_work(ctx.read_sessions) as session:
        return list(await repository.of_task(session, task_id))


async def get(ctx: AppContext, attachment_id: uuid.UUID) -> Attachment:
    async with unit_of_work(ctx.read_sessions) as session:
        attachment = await repository.attachment(session, attachment_id)
    if attachment is None:
        raise NotFound("attachment", attachment_id)
    return attachment


async def delete(ctx: AppContext, actor: Principal, attachment_id: uuid.UUID) -> None:
    async with unit_of_work(ctx.sessions) as session:
        attachment = await repository.attachment(session, attachment_id)
        if attachment is None:
            raise NotFound("attachment", attachment_id)
        if attachment.uploaded_by != actor.id and reach_of(actor, Permission.ADMINISTER) is None:
            raise Forbidden(
                "Only the uploader or an admin may delete an attachment",
                required_roles=["admin"],
                permission=Permission.COMMENT.value,
            )
        now = ctx.clock.now()
        attachment.deleted_at = now
        _record(session, actor, attachment, "deleted", now)


async def content(
    ctx: AppContext, attachment: Attachment, first: int, last: int
) -> AsyncIterator[bytes]:
    """Bytes `first`..`last` of an attachment, streamed from storage block by block."""
    if attachment.size == 0:
        return
    async for block in ctx.storage.read(attachment.storage_key, first, last):
        yield block


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte of a single `Range: bytes=...` request, None to send the
    whole file (no header, a unit other than bytes, several ranges, a malformed value are
    all answered with the whole file, as HTTP allows); 416 when it starts past the end."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not (first_text.isdigit() or last_text.isdigit()):
        return None
    if (first_text and not first_text.isdigit()) or (last_text and not last_text.isdigit()):
        return None
    if not first_text:  # the last N bytes
        length = int(last_text)
        if length == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - length), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        raise _unsatisfiable(size)
    return first, min(last, size - 1)


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"}, size=size)


# --- resumable uploads ------------------------------------------------------------------------


def _owned(actor: Principal, upload: Upload | None, upload_id: uuid.UUID) -> Upload:
    # Somebody else's upload is answered like a missing one.
    if upload is None or upload.created_by != actor.id:
        raise NotFound("upload", upload_id)
    return upload


def upload_view(upload: Upload, chunks: list[UploadChunk]) -> UploadRead:
    received = sorted(c.number for c in chunks)
    have = set(received)
    received_bytes = sum(c.size for c in chunks)
    if upload.state == "completed":
        received, received_bytes = list(range(upload.total_chunks)), upload.size
        have = set(received)
    return UploadRead(
        upload_id=upload.id,
        task_id=upload.task_id,
        filename=upload.filename,
        size=upload.size,
        sha256=upload.sha256,
        chunk_size=upload.chunk_size,
        total_chunks=upload.total_chunks,
        state=upload.state,
        received=received,
        received_bytes=received_bytes,
        missing_chunks=[n for n in range(upload.total_chunks) if n not in have],
        percentage=math.floor(1000 * received_bytes / upload.size) / 10,
        created_at=upload.created_at,
        expires_at=upload.expires_at,
        attachment_id=upload.attachment_id,
        failure=upload.failure,
    )


def _expiry(ctx: AppContext, now: datetime) -> datetime:
    return now + timedelta(hours=ctx.settings.upload_expiry_hours)


async def begin(
    session: AsyncSession, ctx: AppContext, actor: Principal, body: UploadCreate
) -> UploadRead:
    """Declare an upload, in the request's unit of work (with its `Idempotency-Key`)."""
    name = _name(body.filename, "filename")
    limit = ctx.settings.upload_max_chunk_bytes
    if body.chunk_size > limit:
        raise ValidationFailed(
            f"chunk_size exceeds {limit} bytes",
            details=[{"field": "chunk_size", "message": f"at most {limit} bytes"}],
        )
    task = await _live_task(ctx, body.task_id, session)
    upload_id = uuid.uuid4()
    key = f"attachments/{uuid.uuid4()}"
    backend_id = await ctx.storage.begin_upload(key)
    now = ctx.clock.now()
    upload = Upload(
        id=upload_id,
        task_id=task.id,
        filename=name,
        size=body.size,
        sha256=body.sha256.lower(),
        chunk_size=body.chunk_size,
        total_chunks=math.ceil(body.size / body.chunk_size),
        state="open",
        storage_key=key,
        backend_id=backend_id,
        created_by_type=actor.actor_type.value,
        created_by=actor.id,
        created_by_name=actor.name[:255],
        created_at=now,
        updated_at=now,
        expires_at=_expiry(ctx, now),
    )
    session.add(upload)
    await session.flush()
    record_change(
        session,
        actor,
        entity_type="upload",
        entity_id=upload.id,
        action="UPLOAD_STARTED",
        event_type="upload.started",
        payload={"task_id": task.id, "filename": name, "size": body.size},
        now=now,
        new_state={
            "task_id": task.id,
            "filename": name,
            "size": body.size,
            "sha256": upload.sha256,
            "chunk_size": body.chunk_size,
        },
        metadata={"task_id": str(task.id)},
    )
    return upload_view(upload, [])


async def status(ctx: AppContext, actor: Principal, upload_id: uuid.UUID) -> UploadRead:
    async with unit_of_work(ctx.read_sessions) as session:
        upload = _owned(actor, await repository.upload(session, upload_id), upload_id)
        return upload_view(upload, await repository.chunks(session, upload_id))


def expected_chunk_size(upload: Upload, number: int) -> int:
    if number < upload.total_chunks - 1:
        return upload.chunk_size
    return upload.size - upload.chunk_size * (upload.total_chunks - 1)


def _not_open(upload: Upload) -> Conflict:
    return Conflict(f"The upload is {upload.state}; it takes no more chunks", state=upload.state)


async def put_chunk(
    ctx: AppContext,
    actor: Principal,
    upload_id: uuid.UUID,
    number: int,
    declared_length: int | None,
    blocks: AsyncIterator[bytes],
) -> UploadRead:
    """Store chunk `number`; its body must be exactly the chunk's size. Sending a chunk
    again replaces it."""
    async with unit_of_work(ctx.read_sessions) as session:
        upload = _owned(actor, await repository.upload(session, upload_id), upload_id)
    if not 0 <= number < upload.total_chunks:
        raise ValidationFailed(
            f"Chunk number {number} is out of range 0-{upload.total_chunks - 1}",
            details=[{"field": "number", "message": f"0 to {upload.total_chunks - 1}"}],
        )
    if upload.state != "open":
        raise _not_open(upload)
    expected = expected_chunk_size(upload, number)
    wrong_size = ValidationFailed(
        f"Chunk {number} must be exactly {expected} bytes",
        details=[{"field": "body", "message": f"exactly {expected} bytes"}],
        expected_bytes=expected,
    )
    if declared_length is not None and declared_length != expected:
        raise wrong_size
    spooled = await _spool(ctx.storage, blocks, limit=expected, too_large=wrong_size, hashed=False)
    if spooled.size != expected:
        spooled.path.unlink(missing_ok=True)
        raise wrong_size
    try:
        etag = await ctx.storage.put_part(
            upload.storage_key, upload.backend_id, number, spooled.path
        )
    finally:
        spooled.path.unlink(missing_ok=True)
    async with unit_of_work(ctx.sessions) as session:
        locked = _owned(
            actor, await repository.upload(session, upload_id, for_update=True), upload_id
        )
        if locked.state != "open":
            raise _not_open(locked)
        now = ctx.clock.now()
        await repository.save_chunk(
            session,
            UploadChunk(
                upload_id=upload_id, number=number, size=spooled.size, etag=etag, received_at=now
            ),
        )
        locked.updated_at = now
        locked.expires_at = _expiry(ctx, now)
        return upload_view(locked, await repository.chunks(session, upload_id))


async def complete(
    ctx: AppContext, actor: Principal, upload_id: uuid.UUID
) -> tuple[Attachment, bool]:
    """Assemble the chunks into the attachment, verifying size and sha256. Returns the
    attachment and whether this call created it (completing twice answers the same one)."""
    async with unit_of_work(ctx.sessions) as session:
        upload = _owned(
            actor, await repository.upload(session, upload_id, for_update=True), upload_id
        )
        if upload.state == "completed" and upload.attachment_id is not None:
            done = await session.get(Attachment, upload.attachment_id)
            if done is not None and done.deleted_at is None:
                return done, False
        if upload.state != "open":
            raise Conflict(f"The upload is {upload.state}", state=upload.state)
        chunks = await repository.chunks(session, upload_id)
        have = {c.number for c in chunks}
        missing = [n for n in range(upload.total_chunks) if n not in have]
        if missing:
            raise Conflict(
                f"{len(missing)} chunk(s) not received yet",
                missing_chunks=missing[:1000],
            )
        upload.state = "assembling"
        upload.updated_at = ctx.clock.now()
    parts = [Part(c.number, c.etag) for c in chunks]
    try:
        assembled = await ctx.storage.assemble(upload.storage_key, upload.backend_id, parts)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _fail(ctx, upload, "the storage backend could not assemble the chunks")
        raise
    if assembled.size != upload.size or assembled.sha256 != upload.sha256:
        with anyio.CancelScope(shield=True):
            await ctx.storage.delete(upload.storage_key)
            await _fail(ctx, upload, "size or sha256 mismatch")
        raise ChecksumMismatch(
            expected_size=upload.size,
            actual_size=assembled.size,
            expected_sha256=upload.sha256,
            actual_sha256=assembled.sha256,
        )
    attachment = Attachment(
        id=uuid.UUID(upload.storage_key.rsplit("/", 1)[1]),
        task_id=upload.task_id,
        filename=upload.filename,
        content_type=detect_type(assembled.head),
        size=assembled.size,
        sha256=assembled.sha256,
        storage_key=upload.storage_key,
        uploaded_by_type=upload.created_by_type,
        uploaded_by=upload.created_by,
        uploaded_by_name=upload.created_by_name,
    )
    return await _store_row(ctx, actor, attachment, extra=upload), True


async def _fail(ctx: AppContext, upload: Upload, reason: str) -> None:
    """The upload can no longer complete: its data is gone; the collector removes it at
    its expiry."""
    async with unit_of_work(ctx.sessions) as session:
        locked = await repository.upload(session, upload.id, for_update=True)
        if locked is None:
            return
        now = ctx.clock.now()
        locked.state = "failed"
        locked.failure = reason
        locked.updated_at = now
        await repository.drop_chunks(session, upload.id)
