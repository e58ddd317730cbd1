"""`/tasks/{id}/attachments`, `/attachments/{id}` and the resumable `/uploads`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, File, Header, Path, Request, Response, UploadFile, status
from fastapi.responses import StreamingResponse

from opsflow.attachments import service
from opsflow.attachments import timeline as _timeline  # noqa: F401  (registers its source)
from opsflow.attachments.content import content_disposition, served_type
from opsflow.attachments.schemas import AttachmentList, AttachmentRead, UploadCreate, UploadRead
from opsflow.auth.deps import require
from opsflow.auth.permissions import Permission
from opsflow.auth.principal import Principal
from opsflow.deps import ContextDep, SessionDep
from opsflow.errors import NotFound, PayloadTooLarge, declares
from opsflow.idempotency.deps import Idempotent

router = APIRouter(tags=["attachments"])

Reader = Annotated[Principal, Depends(require(Permission.TASK_READ))]
Writer = Annotated[Principal, Depends(require(Permission.COMMENT))]


@declares(PayloadTooLarge)
async def _multipart_limit() -> None:
    """The file part may exceed `OPSFLOW_ATTACHMENT_MAX_BYTES` (413)."""


@router.post(
    "/tasks/{task_id}/attachments",
    status_code=status.HTTP_201_CREATED,
    response_model=AttachmentRead,
    dependencies=[Depends(_multipart_limit)],
)
async def add_attachment(
    task_id: uuid.UUID,
    file: Annotated[UploadFile, File(description="the file (multipart/form-data)")],
    session: SessionDep,
    context: ContextDep,
    actor: Writer,
    _key: Idempotent,
) -> AttachmentRead:
    """Attach a file sent in one request (at most `OPSFLOW_ATTACHMENT_MAX_BYTES`, 10 MiB
    by default; bigger files go through `/uploads`). Honours `Idempotency-Key`."""
    attachment = await service.attach(session, context, actor, task_id, file.filename, file)
    return service.view(attachment)


@router.get("/tasks/{task_id}/attachments", response_model=AttachmentList)
async def list_attachments(task_id: uuid.UUID, context: ContextDep, _: Reader) -> AttachmentList:
    rows = await service.listing(context, task_id)
    return AttachmentList(items=[service.view(row) for row in rows])


@declares(service.RangeNotSatisfiable)
async def _range_errors() -> None:
    """A `Range` starting past the end of the file is answered 416."""


BINARY = {"type": "string", "format": "binary"}


@router.get(
    "/attachments/{attachment_id}",
    response_class=StreamingResponse,
    dependencies=[Depends(_range_errors)],
    responses={
        # Served with its detected type, active types (HTML, SVG...) as octet-stream.
        200: {"description": "the file", "content": {"*/*": {"schema": BINARY}}},
        206: {"description": "the requested range", "content": {"*/*": {"schema": BINARY}}},
    },
)
async def download_attachment(
    attachment_id: uuid.UUID,
    context: ContextDep,
    _: Reader,
    range_: Annotated[str | None, Header(alias="Range", max_length=200)] = None,
) -> StreamingResponse:
    """The file, always as a download (`Content-Disposition: attachment`, `nosniff`; HTML,
    SVG and other active types go out as `application/octet-stream`). `Range: bytes=a-b`
    answers 206 with those bytes."""
    attachment = await service.get(context, attachment_id)
    size = attachment.size
    chosen = service.byte_range(range_, size)
    first, last = chosen if chosen is not None else (0, size - 1)
    headers = {
        "Content-Disposition": content_disposition(attachment.filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Accept-Ranges": "bytes",
        "ETag": f'"{attachment.sha256}"',
        "Cache-Control": "private, no-store",
        "Content-Length": str(max(0, last - first + 1)),
    }
    if chosen is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return StreamingResponse(
        service.content(context, attachment, first, last),
        status_code=status.HTTP_206_PARTIAL_CONTENT if chosen else status.HTTP_200_OK,
        media_type=served_type(attachment.content_type),
        headers=headers,
    )


@router.delete("/attachments/{attachment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_attachment(
    attachment_id: uuid.UUID, context: ContextDep, actor: Writer
) -> Response:
    """Delete an attachment (its uploader, or an admin)."""
    await service.delete(context, actor, attachment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- resumable uploads ------------------------------------------------------------------------


@declares(NotFound)
async def _task_may_be_missing() -> None:
    """The task named in the body may not exist (404)."""


@router.post(
    "/uploads",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadRead,
    dependencies=[Depends(_task_may_be_missing)],
)
async def begin_upload(
    body: UploadCreate, session: SessionDep, context: ContextDep, actor: Writer, _key: Idempotent
) -> UploadRead:
    """Declare a file of up to 2 GiB to send in chunks; answers its `upload_id`,
    `total_chunks` and `expires_at` (24 h after the latest chunk). Honours
    `Idempotency-Key`."""
    return await service.begin(session, context, actor, body)


@router.get("/uploads/{upload_id}", response_model=UploadRead)
async def upload_status(upload_id: uuid.UUID, context: ContextDep, actor: Writer) -> UploadRead:
    """What was received: `received`, `missing_chunks`, `percentage`."""
    return await service.status(context, actor, upload_id)


@router.put(
    "/uploads/{upload_id}/chunks/{number}",
    response_model=UploadRead,
    dependencies=[Depends(_multipart_limit)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def put_chunk(
    upload_id: uuid.UUID,
    number: Annotated[int, Path(ge=0, le=1_000_000, description="0-based chunk number")],
    request: Request,
    context: ContextDep,
    actor: Writer,
) -> UploadRead:
    """The bytes of chunk `number`, exactly `chunk_size` long (the last one: the rest of
    the file). Sending a chunk again replaces it."""
    length = request.headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    return await service.put_chunk(context, actor, upload_id, number, declared, request.stream())


@declares(service.ChecksumMismatch)
async def _checksum_errors() -> None:
    """The assembled file may not match its declared size and sha256 (422)."""


@router.post(
    "/uploads/{upload_id}/complete",
    response_model=AttachmentRead,
    dependencies=[Depends(_checksum_errors)],
)
async def complete_upload(
    upload_id: uuid.UUID, context: ContextDep, actor: Writer
) -> AttachmentRead:
    """Assemble the chunks (all must be there) and verify size and sha256: 200 with the
    attachment, 422 `CHECKSUM_MISMATCH` when they differ (nothing is attached). Idempotent
    by itself: completing a completed upload answers the same attachment."""
    attachment, _created = await service.complete(context, actor, upload_id)
    return service.view(attachment)
