from __future__ import annotations

import hashlib
import uuid
from typing import Annotated

from fastapi import Depends, Header, Request
from pydantic import WithJsonSchema

from opsflow.auth.deps import CurrentPrincipal
from opsflow.deps import ContextDep, SessionDep
from opsflow.errors import declares
from opsflow.idempotency import service


@declares(service.KeyInUse, service.KeyReused)
async def idempotency_guard(
    request: Request,
    session: SessionDep,
    context: ContextDep,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=255),
        WithJsonSchema({"type": "string", "pattern": service.KEY_PATTERN.pattern}),
    ] = None,
) -> uuid.UUID | None:
    """Declare on a POST endpoint to honour `Idempotency-Key` for it."""
    if idempotency_key is None:
        return None
    record_id = await service.begin(
        session,
        context,
        principal,
        idempotency_key,
        method=request.method,
        path=request.url.path,
        body=await _content(request),
    )
    request.state.idempotency_record_id = record_id
    return record_id


async def _content(request: Request) -> bytes:
    """What the fingerprint covers: the raw body; for a body already parsed as a form
    (multipart), its fields and each file's name and bytes (the multipart boundary differs
    from one retry to the next)."""
    try:
        return await request.body()
    except RuntimeError:  # the stream was consumed by the form parser
        pass
    form = await request.form()
    digest = hashlib.sha256()
    for name, value in form.multi_items():
        digest.update(name.encode() + b"\x00")
        if isinstance(value, str):
            digest.update(value.encode())
        else:
            digest.update((value.filename or "").encode() + b"\x00")
            await value.seek(0)
            while block := await value.read(1024 * 1024):
                digest.update(block)
            await value.seek(0)
        digest.update(b"\x00")
    return b"form:" + digest.hexdigest().encode()


Idempotent = Annotated[uuid.UUID | None, Depends(idempotency_guard)]


@declares(service.KeyInUse, service.KeyReused, service.AnswerWithheld)
async def idempotency_guard_withheld(
    request: Request,
    record_id: Annotated[uuid.UUID | None, Depends(idempotency_guard)],
) -> uuid.UUID | None:
    """`Idempotency-Key` for a POST whose answer carries a credential shown once: the answer
    is not kept (a replay answers 409 with the resource's Location)."""
    request.state.idempotency_withhold_body = True
    return record_id


IdempotentWithheld = Annotated[uuid.UUID | None, Depends(idempotency_guard_withheld)]
