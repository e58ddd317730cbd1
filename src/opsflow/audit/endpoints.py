from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from opsflow.audit import service
from opsflow.audit.repository import AuditFilters
from opsflow.audit.schemas import AuditLogRead, ChainVerification
from opsflow.auth.deps import require
from opsflow.auth.permissions import Permission
from opsflow.auth.principal import Principal
from opsflow.deps import ClockDep, ContextDep, SessionDep
from opsflow.kit.pagination import Page, PageDep, Pagination
from opsflow.kit.validation import Instant, Word

router = APIRouter(prefix="/audit-logs", tags=["audit"])

Auditor = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]


async def _filters(
    entity_type: Annotated[Word | None, Query()] = None,
    entity_id: uuid.UUID | None = None,
    action: Annotated[Word | None, Query()] = None,
    actor_id: uuid.UUID | None = None,
    start_date: Instant | None = None,
    end_date: Instant | None = None,
) -> AuditFilters:
    return AuditFilters(
        entity_type=entity_type,
        entity_id=entity_id,
        action=action,
        actor_id=actor_id,
        start_date=start_date,
        end_date=end_date,
    )


Filters = Annotated[AuditFilters, Depends(_filters)]


@router.get("", response_model=Page[AuditLogRead])
async def list_audit_logs(
    session: SessionDep, _: Auditor, page: PageDep, filters: Filters
) -> Page[AuditLogRead]:
    rows, total = await service.search(session, filters, page)
    return Page(items=[service.to_read(r) for r in rows], pagination=Pagination.of(page, total))


@router.get("/export", response_class=StreamingResponse)
async def export_audit_logs(
    context: ContextDep,
    clock: ClockDep,
    _: Auditor,
    filters: Filters,
    format: Literal["csv", "json"] = "csv",
) -> StreamingResponse:
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
    return StreamingResponse(
        await service.start_export(context.read_sessions, filters, format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="audit-logs-{stamp}.{format}"'},
    )


@router.get("/verify", response_model=ChainVerification)
async def verify_chain(session: SessionDep, clock: ClockDep, _: Auditor) -> ChainVerification:
    return await service.verify(session, clock.now())
