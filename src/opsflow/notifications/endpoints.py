"""`/notifications`: list, one, retry a dead letter."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from opsflow.auth.deps import require
from opsflow.auth.permissions import Permission, Reach, require_reach
from opsflow.auth.principal import Principal
from opsflow.deps import ClockDep, SessionDep
from opsflow.idempotency.deps import Idempotent
from opsflow.kit.pagination import Page, PageDep, Pagination
from opsflow.kit.validation import Word
from opsflow.models.enums import Channel, NotificationStatus
from opsflow.notifications import repository, service
from opsflow.notifications.schemas import (
    NotificationRead,
    TemplateRead,
    TemplateWrite,
    WindowCreate,
    WindowRead,
    WindowUpdate,
)

router = APIRouter(prefix="/notifications", tags=["notifications"])

Reader = Annotated[Principal, Depends(require(Permission.NOTIFICATIONS_READ))]
Retrier = Annotated[Principal, Depends(require(Permission.NOTIFICATIONS_RETRY))]


@router.get("", response_model=Page[NotificationRead])
async def list_notifications(
    session: SessionDep,
    actor: Reader,
    page: PageDep,
    task_id: uuid.UUID | None = None,
    status: NotificationStatus | None = None,
    notification_type: Word | None = None,
    channel: Channel | None = None,
) -> Page[NotificationRead]:
    """Admins and managers see every notification; developers and support their own."""
    own = require_reach(actor, Permission.NOTIFICATIONS_READ) is not Reach.ALL
    filters = repository.Filters(
        task_id=task_id,
        status=status,
        notification_type=notification_type,
        channel=channel,
        recipient_id=actor.user_id if own else None,
    )
    if own and actor.user_id is None:
        return Page(items=[], pagination=Pagination.of(page, 0))
    rows, total = await service.search(session, filters, page)
    return Page(
        items=[NotificationRead.model_validate(r) for r in rows],
        pagination=Pagination.of(page, total),
    )


@router.get("/{notification_id}", response_model=NotificationRead)
async def get_notification(
    notification_id: uuid.UUID, session: SessionDep, actor: Reader
) -> NotificationRead:
    return NotificationRead.model_validate(
        await service.get_visible(session, actor, notification_id)
    )


@router.post("/{notification_id}/retry", response_model=NotificationRead)
async def retry_notification(
    notification_id: uuid.UUID, session: SessionDep, clock: ClockDep, actor: Retrier
) -> NotificationRead:
    """A DEAD or FAILED notification goes back to PENDING with fresh attempts, due now."""
    return NotificationRead.model_validate(
        await service.retry(session, actor, notification_id, clock.now())
    )


templates_router = APIRouter(prefix="/notification-templates", tags=["notifications"])
Admin = Annotated[Principal, Depends(require(Permission.ADMINISTER))]
TemplateName = Annotated[str, Path(max_length=100, pattern=r"^[a-z_]+(\.[a-z_]+)+$")]


@templates_router.get("", response_model=list[TemplateRead])
async def list_templates(session: SessionDep, _: Admin) -> list[TemplateRead]:
    """Every template part (`<event>.<channel>.<part>`), edited or built in."""
    return await service.list_templates(session)


@templates_router.get("/{name}", response_model=TemplateRead)
async def get_template(name: TemplateName, session: SessionDep, _: Admin) -> TemplateRead:
    return await service.get_template(session, name)


@templates_router.put("/{name}", response_model=TemplateRead)
async def put_template(
    name: TemplateName, body: TemplateWrite, session: SessionDep, clock: ClockDep, actor: Admin
) -> TemplateRead:
    """Save a template part (sandboxed Jinja2, checked against a sample context first);
    `{"source": null}` goes back to the built-in one."""
    return await service.put_template(session, actor, name, body.source, clock.now())


windows_router = APIRouter(prefix="/maintenance-windows", tags=["notifications"])
WindowReader = Annotated[Principal, Depends(require(Permission.SLA_READ))]
WindowWriter = Annotated[Principal, Depends(require(Permission.SLA_WRITE))]


@windows_router.get("", response_model=Page[WindowRead])
async def list_windows(session: SessionDep, _: WindowReader, page: PageDep) -> Page[WindowRead]:
    rows, total = await service.all_windows(session, page)
    return Page(
        items=[WindowRead.model_validate(r) for r in rows], pagination=Pagination.of(page, total)
    )


@windows_router.post("", status_code=status.HTTP_201_CREATED, response_model=WindowRead)
async def create_window(
    body: WindowCreate,
    session: SessionDep,
    clock: ClockDep,
    actor: WindowWriter,
    response: Response,
    _: Idempotent,
) -> WindowRead:
    """While open, notifications about matching tasks are held; `on_end` releases or drops
    them when it closes."""
    row = await service.create_window(session, actor, body, clock.now())
    response.headers["Location"] = f"/api/v1/maintenance-windows/{row.id}"
    return WindowRead.model_validate(row)


@windows_router.get("/{window_id}", response_model=WindowRead)
async def get_window(window_id: uuid.UUID, session: SessionDep, _: WindowReader) -> WindowRead:
    return WindowRead.model_validate(await service.get_window(session, window_id))


@windows_router.patch("/{window_id}", response_model=WindowRead)
async def update_window(
    window_id: uuid.UUID,
    body: WindowUpdate,
    session: SessionDep,
    clock: ClockDep,
    actor: WindowWriter,
) -> WindowRead:
    row = await service.update_window(session, actor, window_id, body, clock.now())
    return WindowRead.model_validate(row)


@windows_router.delete(
    "/{window_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
async def delete_window(
    window_id: uuid.UUID, session: SessionDep, clock: ClockDep, actor: WindowWriter
) -> Response:
    await service.delete_window(session, actor, window_id, clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
