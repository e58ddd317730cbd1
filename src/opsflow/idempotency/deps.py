from __future__ import annotations

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
        body=await request.body(),
    )
    request.state.idempotency_record_id = record_id
    return record_id


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
