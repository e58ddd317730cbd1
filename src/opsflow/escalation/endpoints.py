"""`/escalation-policies`, `/escalation-events`, `/tasks/{id}/escalations`,
`POST /tasks/{id}/escalate`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from opsflow.auth.deps import require
from opsflow.auth.permissions import Permission
from opsflow.auth.principal import Principal
from opsflow.deps import ClockDep, SessionDep
from opsflow.escalation import repository, service
from opsflow.escalation.schemas import (
    EscalateRequest,
    EscalationEventRead,
    PolicyCreate,
    PolicyRead,
    PolicyUpdate,
    TaskEscalations,
)
from opsflow.idempotency.deps import Idempotent
from opsflow.kit.pagination import Page, PageDep, Pagination
from opsflow.kit.validation import Level
from opsflow.models.enums import EscalationStatus
from opsflow.tasks import service as tasks_service
from opsflow.tasks.deps import ExistingTask

router = APIRouter(tags=["escalation"])

PolicyReader = Annotated[Principal, Depends(require(Permission.SLA_READ))]
PolicyWriter = Annotated[Principal, Depends(require(Permission.SLA_WRITE))]
TaskReader = Annotated[Principal, Depends(require(Permission.TASK_READ))]
Escalator = Annotated[Principal, Depends(require(Permission.TASK_UPDATE))]


@router.get("/escalation-policies", response_model=Page[PolicyRead])
async def list_policies(session: SessionDep, _: PolicyReader, page: PageDep) -> Page[PolicyRead]:
    rows, total = await service.all_policies(session, page)
    return Page(
        items=[PolicyRead.model_validate(r) for r in rows], pagination=Pagination.of(page, total)
    )


@router.post("/escalation-policies", status_code=status.HTTP_201_CREATED, response_model=PolicyRead)
async def create_policy(
    body: PolicyCreate,
    session: SessionDep,
    clock: ClockDep,
    actor: PolicyWriter,
    response: Response,
    _: Idempotent,
) -> PolicyRead:
    row = await service.create_policy(session, actor, body, clock.now())
    response.headers["Location"] = f"/api/v1/escalation-policies/{row.id}"
    return PolicyRead.model_validate(row)


@router.get("/escalation-policies/{policy_id}", response_model=PolicyRead)
async def get_policy(policy_id: uuid.UUID, session: SessionDep, _: PolicyReader) -> PolicyRead:
    return PolicyRead.model_validate(await service.get_policy(session, policy_id))


@router.patch("/escalation-policies/{policy_id}", response_model=PolicyRead)
async def update_policy(
    policy_id: uuid.UUID,
    body: PolicyUpdate,
    session: SessionDep,
    clock: ClockDep,
    actor: PolicyWriter,
) -> PolicyRead:
    policy = await service.update_policy(session, actor, policy_id, body, clock.now())
    return PolicyRead.model_validate(policy)


@router.delete(
    "/escalation-policies/{policy_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
async def delete_policy(
    policy_id: uuid.UUID, session: SessionDep, clock: ClockDep, actor: PolicyWriter
) -> Response:
    await service.delete_policy(session, actor, policy_id, clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/escalation-events", response_model=Page[EscalationEventRead])
async def list_events(
    session: SessionDep,
    _: TaskReader,
    page: PageDep,
    task_id: uuid.UUID | None = None,
    status: EscalationStatus | None = None,
    level: Annotated[Level | None, Query(description="escalation level")] = None,
    policy_id: uuid.UUID | None = None,
) -> Page[EscalationEventRead]:
    filters = repository.EventFilters(
        task_id=task_id, status=status, level=level, policy_id=policy_id
    )
    rows, total = await service.search_events(session, filters, page)
    return Page(
        items=[EscalationEventRead.model_validate(r) for r in rows],
        pagination=Pagination.of(page, total),
    )


@router.get("/tasks/{task_id}/escalations", response_model=TaskEscalations)
async def task_escalations(
    task_id: uuid.UUID, session: SessionDep, _: TaskReader, _task: ExistingTask
) -> TaskEscalations:
    """Fired steps, and the planned ones with the instants they will fire at."""
    rows = [EscalationEventRead.model_validate(r) for r in await service.of_task(session, task_id)]
    return TaskEscalations(
        task_id=task_id,
        fired=[r for r in rows if r.status == EscalationStatus.FIRED],
        planned=[r for r in rows if r.status == EscalationStatus.PENDING],
        other=[
            r for r in rows if r.status in (EscalationStatus.CANCELLED, EscalationStatus.SKIPPED)
        ],
    )


@router.post("/tasks/{task_id}/escalate", response_model=EscalationEventRead)
async def escalate(
    task_id: uuid.UUID,
    session: SessionDep,
    clock: ClockDep,
    actor: Escalator,
    _: Idempotent,
    body: EscalateRequest | None = None,
) -> EscalationEventRead:
    """Fire the next escalation level now."""
    step = await tasks_service.escalate(
        session, task_id, actor, clock.now(), body.reason if body else None
    )
    return EscalationEventRead.model_validate(step)
