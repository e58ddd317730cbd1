"""`/tickets`: batch ingestion, and reading a ticket's task and SLA by its external id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from opsflow.auth import ratelimit
from opsflow.auth.deps import CurrentPrincipal
from opsflow.auth.permissions import Permission, reach_of
from opsflow.auth.principal import Principal
from opsflow.deps import ClockDep, ContextDep, SessionDep
from opsflow.errors import Forbidden, declares
from opsflow.idempotency.deps import Idempotent
from opsflow.sla import service as sla_service
from opsflow.sla.schemas import TaskSla
from opsflow.tasks import views
from opsflow.tasks.schemas import TaskDetail
from opsflow.tickets import service
from opsflow.tickets.schemas import BatchResult, ExternalId, Source, TicketBatch

router = APIRouter(prefix="/tickets", tags=["tickets"])

ExternalIdPath = Annotated[ExternalId, Path(description="the ticket's id in its source system")]
SourceQuery = Annotated[Source | None, Query(description="the ticket's source system")]


@declares(Forbidden)
async def _reader(principal: CurrentPrincipal) -> Principal:
    """Readers of tasks, and the clients that ingest tickets (to check what they sent)."""
    if reach_of(principal, Permission.TASK_READ) or reach_of(principal, Permission.TICKETS_INGEST):
        return principal
    raise Forbidden(permission=Permission.TASK_READ.value)


Reader = Annotated[Principal, Depends(_reader)]


@router.post("", response_model=BatchResult)
@declares(Forbidden)
@ratelimit.exempt  # ingestion: its senders must never be answered 429
async def ingest_tickets(
    body: TicketBatch,
    session: SessionDep,
    context: ContextDep,
    principal: CurrentPrincipal,
    _: Idempotent,
) -> BatchResult:
    """Apply a batch of up to 1,000 tickets; each item's outcome is listed in order.

    One bad item never rejects the others; the answer comes after everything is stored."""
    return await service.ingest(session, context, principal, body)


@router.get("/{external_id}", response_model=TaskDetail)
async def get_ticket(
    external_id: ExternalIdPath,
    session: SessionDep,
    clock: ClockDep,
    reader: Reader,
    response: Response,
    source: SourceQuery = None,
) -> TaskDetail:
    task = await service.find(session, external_id, source)
    response.headers["ETag"] = f'"{task.version}"'
    audit = reach_of(reader, Permission.AUDIT_READ) is not None
    return await views.detail_view(session, task, clock.now(), with_audit_trail=audit)


@router.get("/{external_id}/sla", response_model=TaskSla)
async def get_ticket_sla(
    external_id: ExternalIdPath,
    session: SessionDep,
    clock: ClockDep,
    _: Reader,
    source: SourceQuery = None,
) -> TaskSla:
    task = await service.find(session, external_id, source)
    return await sla_service.clocks_explained(session, task.id, clock.now())
