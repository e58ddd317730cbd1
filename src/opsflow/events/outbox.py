"""The transactional outbox: events written in the same transaction as their change.

A relay (built with the notification and WebSocket consumers) publishes unpublished rows
at least once; consumers deduplicate by event id.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.kit.jsonable import to_jsonable
from opsflow.models.outbox import OutboxEvent
from opsflow.observability import tracing


def emit(
    session: AsyncSession,
    *,
    aggregate_type: str,
    aggregate_id: uuid.UUID,
    event_type: str,
    payload: dict[str, Any],
    now: datetime,
    request_id: str | None = None,
) -> OutboxEvent:
    event = OutboxEvent(
        id=uuid.uuid4(),
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        event_type=event_type,
        payload=to_jsonable({**payload, "request_id": request_id}),
        created_at=now,
        available_at=now,
        attempts=0,
        trace_context=tracing.traceparent(),
    )
    session.add(event)
    return event
