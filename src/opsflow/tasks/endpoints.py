from __future__ import annotations

import re
import uuid
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response, status
from pydantic import BaseModel, Field, WithJsonSchema

from opsflow.auth.deps import CurrentPrincipal, require
from opsflow.auth.permissions import Permission, reach_of
from opsflow.auth.principal import Principal
from opsflow.deps import ClockDep, ContextDep, SessionDep
from opsflow.errors import (
    Forbidden,
    InvalidTransition,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
    declares,
)
from opsflow.idempotency.deps import Idempotent
from opsflow.kit.pagination import Page, PageDep, Pagination, SortOrder
from opsflow.kit.validation import Instant, Reason, SearchText, ShortText, Tag, Word
from opsflow.models.enums import CustomerTier, Priority, TaskStatus, TaskType
from opsflow.models.task import Task
from opsflow.sla.status import State as SlaState
from opsflow.tasks import service, views
from opsflow.tasks.reads import SortField, TaskFilters
from opsflow.tasks.schemas import (
    AssignRequest,
    CompleteRequest,
    ReasonRequest,
    SnoozeRequest,
    TaskCreate,
    TaskCreated,
    TaskDetail,
    TaskListItem,
    TaskRead,
    TaskUpdate,
)

router = APIRouter(prefix="/tasks", tags=["tasks"])
# `*`, or the task version as the ETag gives it: 3, "3" or W/"3" (quotes are optional).
IF_MATCH_PATTERN = r'^\s*(\*|(W/)?"*[0-9]{1,12}"*)\s*$'
_IF_MATCH = re.compile(IF_MATCH_PATTERN)

Reader = Annotated[Principal, Depends(require(Permission.TASK_READ))]


def parse_if_match(if_match: str | None) -> int | None:
    """`If-Match: 3`, `"3"` or `W/"3"` → 3. `*` matches any version."""
    if if_match is None:
        return None
    if not _IF_MATCH.fullmatch(if_match):
        raise ValidationFailed(
            details=[{"field": "If-Match", "message": 'must be the task version, e.g. "3"'}]
        )
    raw = if_match.strip().removeprefix("W/").strip('"')
    return None if raw == "*" else int(raw)


@declares(PreconditionFailed)
async def _if_match(
    if_match: Annotated[
        str | None,
        Header(max_length=64),
        WithJsonSchema({"type": "string", "maxLength": 64, "pattern": IF_MATCH_PATTERN}),
    ] = None,
) -> int | None:
    # async: FastAPI runs a plain `def` dependency in its thread pool (a thread hop).
    return parse_if_match(if_match)


IfMatch = Annotated[int | None, Depends(_if_match)]


def _enum_array(enum: type[StrEnum], max_items: int) -> WithJsonSchema:
    """A repeatable enum filter as the document shows it; the server also takes the values
    comma-separated and in any case (`status=assigned,in_progress`)."""
    return WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "string", "enum": [e.value for e in enum]},
            "maxItems": max_items,
        }
    )


def _enum_list(field: str, raw: list[str] | None, enum: type[StrEnum]) -> list[str]:
    """Repeated and/or comma-separated enum values, each checked."""
    values = [v.strip().upper() for item in raw or [] for v in item.split(",") if v.strip()]
    allowed = [e.value for e in enum]
    for value in values:
        if value not in allowed:
            raise ValidationFailed(
                details=[{"field": field, "message": f"Must be one of: {', '.join(allowed)}"}]
            )
    return list(dict.fromkeys(values))


def _etag(response: Response, task: Task) -> None:
    response.headers["ETag"] = f'"{task.version}"'


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TaskCreated)
async def create_task(
    body: TaskCreate,
    session: SessionDep,
    context: ContextDep,
    principal: CurrentPrincipal,
    response: Response,
    _: Idempotent,
) -> TaskCreated:
    task = await service.create_task(session, context, principal, body)
    response.headers["Location"] = f"/api/v1/tasks/{task.id}"
    _etag(response, task)
    return await views.created_view(session, task, context.clock.now())


class TaskQuery(BaseModel):
    """The filters and the order of a page of tasks, validated as one model: FastAPI
    validates each separately declared query parameter on its own, a large share of the
    CPU of a page when there are eighteen of them (the document lists them the same)."""

    status: Annotated[
        list[Word] | None, Field(max_length=6, title="Status"), _enum_array(TaskStatus, 6)
    ] = None
    priority: Annotated[
        list[Word] | None, Field(max_length=4, title="Priority"), _enum_array(Priority, 4)
    ] = None
    task_type: TaskType | None = None
    assigned_to: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    customer_tier: CustomerTier | None = None
    has_breach: bool | None = None
    sla_state: SlaState | None = None
    tags: Annotated[list[Tag] | None, Field(max_length=20)] = None
    q: SearchText | None = None
    external_id: ShortText | None = None
    created_after: Instant | None = None
    created_before: Instant | None = None
    include_deleted: bool = False
    sort: SortField = "created_at"
    order: SortOrder = "desc"


@router.get("", response_model=Page[TaskListItem])
async def list_tasks(
    session: SessionDep,
    clock: ClockDep,
    _: Reader,
    page: PageDep,
    query: Annotated[TaskQuery, Query()],
) -> dict[str, Any]:
    """Filters combine with AND; `status`, `priority` and `tags` may repeat (or be
    comma-separated). Tags match tasks carrying all of them."""
    filters = TaskFilters(
        status=_enum_list("status", query.status, TaskStatus),
        priority=_enum_list("priority", query.priority, Priority),
        task_type=query.task_type.value if query.task_type else None,
        assigned_to=query.assigned_to,
        team_id=query.team_id,
        customer_tier=query.customer_tier.value if query.customer_tier else None,
        has_breach=query.has_breach,
        sla_state=query.sla_state,
        tags=[t.strip() for tag in query.tags or [] for t in tag.split(",") if t.strip()],
        q=query.q,
        external_id=query.external_id,
        created_after=query.created_after,
        created_before=query.created_before,
        include_deleted=query.include_deleted,
    )
    now = clock.now()
    found = await service.search(
        session, filters, page, now=now, sort=query.sort, order=query.order
    )
    # Plain values: the response model validates and serialises the page in one go.
    items = views.list_items(found.rows, now)
    return {"items": items, "pagination": Pagination.of(page, found.total)}


@router.get("/{task_id}", response_model=TaskDetail)
@declares(NotFound)
async def get_task(
    task_id: uuid.UUID,
    session: SessionDep,
    clock: ClockDep,
    reader: Reader,
    response: Response,
) -> dict[str, Any]:
    # Read here rather than by ExistingTask: with all its page shows, in one statement.
    audit = reach_of(reader, Permission.AUDIT_READ) is not None
    page = await service.task_page(session, task_id, with_audit_trail=audit)
    _etag(response, page.task)
    # Plain values: the response model validates and serialises them in one go.
    return await views.page_values(session, page, clock.now())


@declares(Forbidden, InvalidTransition)
async def _command(
    task_id: uuid.UUID,
    session: SessionDep,
    context: ContextDep,
    principal: CurrentPrincipal,
    if_match: IfMatch,
) -> service.TaskCommand:
    return service.TaskCommand(session, context, principal, task_id, if_match, answered=True)


Command = Annotated[service.TaskCommand, Depends(_command)]


async def _answer(cmd: service.TaskCommand, task: Task, response: Response) -> TaskRead:
    _etag(response, task)
    return (await views.read_views(cmd.session, [task], cmd.ctx.clock.now()))[0]


def _reason(body: ReasonRequest | None) -> str | None:
    return body.reason if body else None


@router.patch("/{task_id}", response_model=TaskRead)
async def update_task(body: TaskUpdate, cmd: Command, response: Response) -> TaskRead:
    return await _answer(cmd, await service.update_task(cmd, body), response)


@router.patch("/{task_id}/assign", response_model=TaskRead)
async def assign_task(body: AssignRequest, cmd: Command, response: Response) -> TaskRead:
    task = await service.assign_task(cmd, body.assigned_to, body.additional_assignees)
    return await _answer(cmd, task, response)


@router.patch("/{task_id}/acknowledge", response_model=TaskRead)
async def acknowledge_task(cmd: Command, response: Response) -> TaskRead:
    return await _answer(cmd, await service.acknowledge_task(cmd), response)


@router.patch("/{task_id}/start", response_model=TaskRead)
async def start_task(cmd: Command, response: Response) -> TaskRead:
    return await _answer(cmd, await service.start_task(cmd), response)


@router.patch("/{task_id}/block", response_model=TaskRead)
async def block_task(
    cmd: Command, response: Response, body: ReasonRequest | None = None
) -> TaskRead:
    return await _answer(cmd, await service.block_task(cmd, _reason(body)), response)


@router.patch("/{task_id}/unblock", response_model=TaskRead)
async def unblock_task(
    cmd: Command, response: Response, body: ReasonRequest | None = None
) -> TaskRead:
    return await _answer(cmd, await service.unblock_task(cmd, _reason(body)), response)


@router.patch("/{task_id}/complete", response_model=TaskRead)
async def complete_task(
    cmd: Command, response: Response, body: CompleteRequest | None = None
) -> TaskRead:
    notes = body.resolution_notes if body else None
    return await _answer(cmd, await service.complete_task(cmd, notes), response)


@router.patch("/{task_id}/snooze", response_model=TaskRead)
async def snooze_task(body: SnoozeRequest, cmd: Command, response: Response) -> TaskRead:
    task = await service.snooze_task(cmd, body.until, body.minutes, body.reason)
    return await _answer(cmd, task, response)


@router.patch("/{task_id}/reopen", response_model=TaskRead)
async def reopen_task(
    cmd: Command, response: Response, body: ReasonRequest | None = None
) -> TaskRead:
    return await _answer(cmd, await service.reopen_task(cmd, _reason(body)), response)


@router.patch("/{task_id}/sla/pause", response_model=TaskRead)
async def pause_sla(
    cmd: Command, response: Response, body: ReasonRequest | None = None
) -> TaskRead:
    """Stop the running SLA clocks until resumed; paused time never counts against them."""
    return await _answer(cmd, await service.pause_sla(cmd, _reason(body)), response)


@router.patch("/{task_id}/sla/resume", response_model=TaskRead)
async def resume_sla(
    cmd: Command, response: Response, body: ReasonRequest | None = None
) -> TaskRead:
    return await _answer(cmd, await service.resume_sla(cmd, _reason(body)), response)


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def cancel_task(cmd: Command, reason: Annotated[Reason | None, Query()] = None) -> Response:
    await service.cancel_task(cmd, reason)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
