"""`/webhooks` (admin): outbound webhook subscriptions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from opsflow.auth.deps import require
from opsflow.auth.permissions import Permission
from opsflow.auth.principal import Principal
from opsflow.deps import ClockDep, SessionDep
from opsflow.idempotency.deps import IdempotentWithheld
from opsflow.kit.pagination import Page, PageDep, Pagination
from opsflow.webhooks import service
from opsflow.webhooks.schemas import WebhookCreate, WebhookCreated, WebhookRead, WebhookUpdate

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
Admin = Annotated[Principal, Depends(require(Permission.ADMINISTER))]


@router.get("", response_model=Page[WebhookRead])
async def list_webhooks(session: SessionDep, _: Admin, page: PageDep) -> Page[WebhookRead]:
    rows, total = await service.page_of(session, page)
    return Page(
        items=[WebhookRead.model_validate(r) for r in rows], pagination=Pagination.of(page, total)
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
async def create_webhook(
    body: WebhookCreate,
    session: SessionDep,
    clock: ClockDep,
    actor: Admin,
    response: Response,
    _: IdempotentWithheld,
) -> WebhookCreated:
    """The answer carries the signing secret: the only time it is shown (so an
    `Idempotency-Key` replay does not repeat it, see docs/api.md)."""
    row = await service.create(session, actor, body, clock.now())
    response.headers["Location"] = f"/api/v1/webhooks/{row.id}"
    return WebhookCreated.model_validate(row)


@router.get("/{webhook_id}", response_model=WebhookRead)
async def get_webhook(webhook_id: uuid.UUID, session: SessionDep, _: Admin) -> WebhookRead:
    return WebhookRead.model_validate(await service.get(session, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookRead)
async def update_webhook(
    webhook_id: uuid.UUID, body: WebhookUpdate, session: SessionDep, clock: ClockDep, actor: Admin
) -> WebhookRead:
    row = await service.update(session, actor, webhook_id, body, clock.now())
    return WebhookRead.model_validate(row)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_webhook(
    webhook_id: uuid.UUID, session: SessionDep, clock: ClockDep, actor: Admin
) -> Response:
    await service.delete(session, actor, webhook_id, clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
