from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends

from opsflow.auth.deps import require
from opsflow.auth.permissions import Permission
from opsflow.auth.principal import Principal
from opsflow.deps import ClockDep, SessionDep
from opsflow.kit.pagination import Page, PageDep, Pagination
from opsflow.kit.validation import Instant
from opsflow.models.sla import SlaEvent
from opsflow.sla import service as sla_service
from opsflow.sla.repository import EventFilters
from opsflow.sla.schemas import (
    SlaEventRead,
    SlaEventSummary,
    TaskSla,
    TaskSlaEvents,
)
from opsflow.tasks.deps import ExistingTask

router = APIRouter(tags=["sla"])

Reader = Annotated[Principal, Depends(require(Permission.TASK_READ))]
EventType = Literal[
    "START_WARNING",
    "START_CRITICAL",
    "START_BREACH",
    "RESOLVE_WARNING",
    "RESOLVE_CRITICAL",
    "RESOLVE_BREACH",
    "ESCALATION",
]
Severity = Literal["INFO", "WARNING", "CRITICAL"]


def _read(event: SlaEvent) -> SlaEventRead:
    return SlaEventRead(
        id=event.id,
        task_id=event.task_id,
        event_type=event.event_type,
        severity=event.severity,
        sla_type=event.sla_type,
        expected_deadline=event.expected_deadline,
        due_at=event.due_at,
        triggered_at=event.triggered_at,
        actual_time=event.actual_time,
        delay_minutes=event.delay_minutes,
        notify=event.notify,
        notification_sent=event.notification_sent,
        notification_sent_at=event.notification_sent_at,
        escalated_to=event.escalated_to,
        escalation_level=event.escalation_level,
        metadata=event.metadata_ or {},
    )


@router.get("/tasks/{task_id}/sla-events", response_model=TaskSlaEvents)
async def task_sla_events(
    task_id: uuid.UUID, session: SessionDep, _: Reader, _task: ExistingTask
) -> TaskSlaEvents:
    events = await sla_service.events_of(session, [task_id])

    def count(suffix: str) -> int:
        return sum(1 for e in events if e.event_type.endswith(suffix))

    return TaskSlaEvents(
        task_id=task_id,
        events=[_read(e) for e in events],
        summary=SlaEventSummary(
            total_events=len(events),
            warnings=count("_WARNING"),
            critical=count("_CRITICAL"),
            breaches=count("_BREACH"),
            escalations=count("ESCALATION"),
        ),
    )


@router.get("/tasks/{task_id}/sla", response_model=TaskSla)
async def task_sla(
    task_id: uuid.UUID, session: SessionDep, clock: ClockDep, _: Reader, _task: ExistingTask
) -> TaskSla:
    """Each clock explained: working and paused time, every pause with who and why, and
    the instants at which its thresholds fire (or fired)."""
    return await sla_service.clocks_explained(session, task_id, clock.now())


@router.get("/sla-events", response_model=Page[SlaEventRead])
async def list_sla_events(
    session: SessionDep,
    _: Reader,
    page: PageDep,
    event_type: EventType | None = None,
    severity: Severity | None = None,
    task_id: uuid.UUID | None = None,
    start_date: Instant | None = None,
    end_date: Instant | None = None,
) -> Page[SlaEventRead]:
    filters = EventFilters(
        event_type=event_type,
        severity=severity,
        start_date=start_date,
        end_date=end_date,
        task_id=task_id,
    )
    rows, total = await sla_service.search_events(session, filters, page)
    return Page(items=[_read(e) for e in rows], pagination=Pagination.of(page, total))
