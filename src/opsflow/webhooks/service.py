"""Outbound webhook subscriptions: CRUD (admin, audited) and the relay consumer that queues
one WEBHOOK notification per matching subscription and event — delivered, retried and
dead-lettered like every notification, signed with the subscription's secret.

Comment events (`comment.*`) reach the subscriptions that name them, public comments only:
an internal comment never leaves OpsFlow."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.principal import Principal
from opsflow.events.entities import Entity
from opsflow.kit.jsonable import to_jsonable
from opsflow.kit.pagination import PageParams
from opsflow.kit.validation import patch_fields
from opsflow.models.enums import Channel, NotificationStatus
from opsflow.models.notification import Notification, WebhookSubscription
from opsflow.models.outbox import OutboxEvent
from opsflow.notifications.backoff import MAX_ATTEMPTS
from opsflow.notifications.templates import webhook_body
from opsflow.observability import tracing
from opsflow.webhooks import repository
from opsflow.webhooks.schemas import WebhookCreate, WebhookUpdate

ENTITY = "webhook"
DEFAULT_EVENTS = ("task.*", "sla.*", "escalation.*")


def wants(subscription: WebhookSubscription, event_type: str) -> bool:
    patterns = subscription.event_types or list(DEFAULT_EVENTS)
    for pattern in patterns:
        if pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


SENT_PREFIXES = ("task.", "sla.", "escalation.", "comment.")


async def consume(session: AsyncSession, event: OutboxEvent, now: datetime) -> None:
    if not event.event_type.startswith(SENT_PREFIXES):
        return
    if (event.payload or {}).get("internal") is True:
        return
    subscriptions = [s for s in await repository.active(session) if wants(s, event.event_type)]
    if not subscriptions:
        return
    keys = {s.id: f"{event.id}:webhook:{s.id}" for s in subscriptions}
    existing = await repository.planned_keys(session, keys.values())
    body = webhook_body(
        event.event_type, event.payload or {}, event_id=str(event.id), occurred_at=event.created_at
    )
    for subscription in subscriptions:
        if keys[subscription.id] in existing:
            continue
        session.add(
            Notification(
                id=uuid.uuid4(),
                task_id=_task_id(event),
                source_event_id=event.id,
                webhook_id=subscription.id,
                notification_type=event.event_type,
                channel=Channel.WEBHOOK.value,
                recipient=subscription.name,
                address=subscription.url,
                body="",
                payload=to_jsonable(body),
                status=NotificationStatus.PENDING,
                attempts=0,
                max_attempts=MAX_ATTEMPTS,
                scheduled_at=now,
                attempt_log=[],
                dedup_key=keys[subscription.id],
                trace_context=tracing.traceparent(),
                created_at=now,
                updated_at=now,
            )
        )
    await session.flush()


# --- CRUD ---------------------------------------------------------------------------------


def _state(row: WebhookSubscription) -> dict[str, Any]:
    """What the audit log keeps (never the secret)."""
    return {
        "name": row.name,
        "url": row.url,
        "event_types": list(row.event_types),
        "is_active": row.is_active,
    }


WEBHOOK = Entity(
    ENTITY, WebhookSubscription, _state, title="A webhook", named=repository.name_taken
)


async def page_of(session: AsyncSession, page: PageParams) -> tuple[list[WebhookSubscription], int]:
    """Subscriptions by name, one page."""
    return await repository.page_of(session, page)


async def get(session: AsyncSession, webhook_id: uuid.UUID) -> WebhookSubscription:
    return await WEBHOOK.get(session, webhook_id)


async def create(
    session: AsyncSession, actor: Principal, data: WebhookCreate, now: datetime
) -> WebhookSubscription:
    await WEBHOOK.check_name(session, data.name)
    row = WebhookSubscription(
        id=uuid.uuid4(),
        name=data.name,
        url=data.url,
        secret=data.secret or f"whsec_{secrets.token_urlsafe(32)}",
        event_types=list(dict.fromkeys(data.event_types)),
        is_active=data.is_active,
        created_by=actor.user_id,
        created_at=now,
        updated_at=now,
    )
    return await WEBHOOK.create(session, actor, row, now)


async def update(
    session: AsyncSession,
    actor: Principal,
    webhook_id: uuid.UUID,
    data: WebhookUpdate,
    now: datetime,
) -> WebhookSubscription:
    row = await get(session, webhook_id)
    fields = patch_fields(data)
    if "name" in fields:
        await WEBHOOK.check_name(session, fields["name"], current=row.name)
    before = _state(row)
    rotated = "secret" in fields and fields["secret"] != row.secret
    for key, value in fields.items():
        setattr(row, key, list(dict.fromkeys(value)) if key == "event_types" else value)
    WEBHOOK.updated(
        session, actor, row, before, now, also_changed=rotated, note={"secret_rotated": rotated}
    )
    return row


async def delete(
    session: AsyncSession, actor: Principal, webhook_id: uuid.UUID, now: datetime
) -> None:
    """Queued deliveries of a deleted subscription end FAILED (nothing left to sign with)."""
    await WEBHOOK.delete(session, actor, webhook_id, now)


def _task_id(event: OutboxEvent) -> uuid.UUID | None:
    if event.aggregate_type == "task":
        return event.aggregate_id
    value = (event.payload or {}).get("task_id")
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None
