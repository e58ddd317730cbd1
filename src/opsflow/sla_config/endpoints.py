"""`/sla-policies` and `/calendars`: CRUD, YAML import/export, simulation."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Depends, Request, Response, status

from opsflow.auth.deps import require
from opsflow.auth.permissions import Permission
from opsflow.auth.principal import Principal
from opsflow.deps import ClockDep, ContextDep, SessionDep
from opsflow.errors import NotFound, ValidationFailed, declares
from opsflow.idempotency.deps import Idempotent
from opsflow.kit.pagination import Page, PageDep, Pagination
from opsflow.models.sla import BusinessCalendarRow, SlaPolicyRow
from opsflow.sla.calendar import ALWAYS_NAME
from opsflow.sla_config import service, simulation
from opsflow.sla_config.schemas import (
    CalendarCreate,
    CalendarRead,
    CalendarUpdate,
    EscalationLevel,
    ImportResult,
    PolicyCreate,
    PolicyRead,
    PolicyUpdate,
    SimulateRequest,
    SimulateResult,
)
from opsflow.sla_config.yaml_format import MAX_DOCUMENT_BYTES

policies_router = APIRouter(prefix="/sla-policies", tags=["sla-policies"])
calendars_router = APIRouter(prefix="/calendars", tags=["calendars"])

Reader = Annotated[Principal, Depends(require(Permission.SLA_READ))]
Writer = Annotated[Principal, Depends(require(Permission.SLA_WRITE))]
YAML_TYPE = "application/yaml"


async def _policy_views(session: SessionDep, rows: list[SlaPolicyRow]) -> list[PolicyRead]:
    names = {c.id: c.name for c in await service.all_calendars(session)}
    return [
        PolicyRead(
            id=row.id,
            name=row.name,
            task_type=row.task_type,
            priority=row.priority,
            customer_tier=row.customer_tier,
            start_minutes=row.start_minutes,
            resolve_minutes=row.resolve_minutes,
            thresholds=list(row.thresholds),
            calendar=names.get(row.calendar_id, ALWAYS_NAME) if row.calendar_id else ALWAYS_NAME,
            calendar_id=row.calendar_id,
            pause_on_blocked=row.pause_on_blocked,
            escalation=[EscalationLevel(level=lv, minutes=m) for lv, m in row.escalation],
            is_active=row.is_active,
            source=row.source,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ]


async def _calendar_views(
    session: SessionDep, rows: list[BusinessCalendarRow]
) -> list[CalendarRead]:
    users = {row.id: await service.policies_using_calendar(session, row.id) for row in rows}
    return [
        CalendarRead(
            id=row.id,
            name=row.name,
            timezone=row.timezone,
            hours=row.hours,
            holidays=list(row.holidays),
            source=row.source,
            policies=[p.name for p in users[row.id]],
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ]


T = TypeVar("T")


def _page(items: list[T], page: PageDep) -> Page[T]:
    return Page(
        items=items[page.offset : page.offset + page.page_size],
        pagination=Pagination.of(page, len(items)),
    )


# --- policies ---------------------------------------------------------------------------------


@policies_router.get("", response_model=Page[PolicyRead])
async def list_policies(session: SessionDep, _: Reader, page: PageDep) -> Page[PolicyRead]:
    return _page(await _policy_views(session, await service.all_policies(session)), page)


@policies_router.post("", status_code=status.HTTP_201_CREATED, response_model=PolicyRead)
async def create_policy(
    body: PolicyCreate,
    session: SessionDep,
    context: ContextDep,
    actor: Writer,
    response: Response,
    _: Idempotent,
) -> PolicyRead:
    service.guard_not_file_managed(context.settings.sla_config_path)
    row = await service.create_policy(session, actor, body, context.clock.now())
    response.headers["Location"] = f"/api/v1/sla-policies/{row.id}"
    return (await _policy_views(session, [row]))[0]


@policies_router.get(
    "/export",
    response_class=Response,
    responses={200: {"content": {YAML_TYPE: {"schema": {"type": "object"}}}}},
)
async def export_policies(session: SessionDep, _: Reader) -> Response:
    """The stored configuration in the `sla_config.yaml` format."""
    return Response(
        await service.export_yaml(session),
        media_type=YAML_TYPE,
        headers={"Content-Disposition": 'attachment; filename="sla_config.yaml"'},
    )


@policies_router.post(
    "/import",
    response_model=ImportResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {YAML_TYPE: {"schema": {"type": "object"}}},
        }
    },
)
async def import_policies(
    request: Request,
    session: SessionDep,
    context: ContextDep,
    actor: Writer,
    _: Idempotent,
    mode: Literal["merge", "replace"] = "merge",
    dry_run: bool = False,
) -> ImportResult:
    """Apply an `sla_config.yaml` (the request body).

    `merge` adds and replaces policies and calendars by name and keeps the others;
    `replace` makes the stored configuration exactly the file. `dry_run` validates and
    lists the changes without applying them.
    """
    if not dry_run:
        service.guard_not_file_managed(context.settings.sla_config_path)
    raw = await request.body()
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ValidationFailed(details=[{"field": "body", "message": "larger than 1 MiB"}])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(details=[{"field": "body", "message": "not UTF-8"}]) from exc
    applied = await service.apply_config(
        session,
        actor,
        service.parse(text),
        context.clock.now(),
        mode=mode,
        source=service.SOURCE_IMPORT,
        dry_run=dry_run,
    )
    return ImportResult.model_validate(
        {
            "applied": bool(applied.changes) and not dry_run,
            "dry_run": dry_run,
            "mode": mode,
            "revision": applied.revision,
            "policies": applied.policies,
            "calendars": applied.calendars,
            "changes": applied.changes,
        }
    )


@policies_router.post("/simulate", response_model=SimulateResult)
@declares(NotFound)
async def simulate(
    body: SimulateRequest, session: SessionDep, clock: ClockDep, _: Reader
) -> SimulateResult:
    """When every threshold and escalation level would fire for a task started at `start`,
    across nights, weekends and holidays of the policy's calendar. Writes nothing."""
    return await simulation.simulate(session, body, clock.now())


@policies_router.get("/{policy_id}", response_model=PolicyRead)
async def get_policy(policy_id: uuid.UUID, session: SessionDep, _: Reader) -> PolicyRead:
    return (await _policy_views(session, [await service.get_policy(session, policy_id)]))[0]


@policies_router.patch("/{policy_id}", response_model=PolicyRead)
async def update_policy(
    policy_id: uuid.UUID,
    body: PolicyUpdate,
    session: SessionDep,
    context: ContextDep,
    actor: Writer,
) -> PolicyRead:
    service.guard_not_file_managed(context.settings.sla_config_path)
    row = await service.update_policy(session, actor, policy_id, body, context.clock.now())
    return (await _policy_views(session, [row]))[0]


@policies_router.delete(
    "/{policy_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
async def delete_policy(
    policy_id: uuid.UUID, session: SessionDep, context: ContextDep, actor: Writer
) -> Response:
    service.guard_not_file_managed(context.settings.sla_config_path)
    await service.delete_policy(session, actor, policy_id, context.clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- calendars --------------------------------------------------------------------------------


@calendars_router.get("", response_model=Page[CalendarRead])
async def list_calendars(session: SessionDep, _: Reader, page: PageDep) -> Page[CalendarRead]:
    return _page(await _calendar_views(session, await service.all_calendars(session)), page)


@calendars_router.post("", status_code=status.HTTP_201_CREATED, response_model=CalendarRead)
async def create_calendar(
    body: CalendarCreate,
    session: SessionDep,
    context: ContextDep,
    actor: Writer,
    response: Response,
    _: Idempotent,
) -> CalendarRead:
    service.guard_not_file_managed(context.settings.sla_config_path)
    row = await service.create_calendar(session, actor, body, context.clock.now())
    response.headers["Location"] = f"/api/v1/calendars/{row.id}"
    return (await _calendar_views(session, [row]))[0]


@calendars_router.get("/{calendar_id}", response_model=CalendarRead)
async def get_calendar(calendar_id: uuid.UUID, session: SessionDep, _: Reader) -> CalendarRead:
    row = await service.get_calendar(session, calendar_id)
    return (await _calendar_views(session, [row]))[0]


@calendars_router.patch("/{calendar_id}", response_model=CalendarRead)
async def update_calendar(
    calendar_id: uuid.UUID,
    body: CalendarUpdate,
    session: SessionDep,
    context: ContextDep,
    actor: Writer,
) -> CalendarRead:
    service.guard_not_file_managed(context.settings.sla_config_path)
    row = await service.update_calendar(session, actor, calendar_id, body, context.clock.now())
    return (await _calendar_views(session, [row]))[0]


@calendars_router.delete(
    "/{calendar_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
async def delete_calendar(
    calendar_id: uuid.UUID, session: SessionDep, context: ContextDep, actor: Writer
) -> Response:
    service.guard_not_file_managed(context.settings.sla_config_path)
    await service.delete_calendar(session, actor, calendar_id, context.clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
