"""The outbox relay's realtime consumer: each committed task event to the bus, once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.db import after_commit
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.outbox import OutboxEvent
from opsflow.realtime.bus import BUS
from opsflow.realtime.hub import STREAMED_PREFIXES


def frame_of(event: OutboxEvent) -> dict[str, Any] | None:
    """The frame a client receives for an outbox event, or None for events not streamed."""
    if event.aggregate_type != "task" or not event.event_type.startswith(STREAMED_PREFIXES):
        return None
    payload = dict(event.payload or {})
    task = payload.pop("task", None) or {"id": str(event.aggregate_id)}
    payload.pop("request_id", None)
    return to_jsonable(  # type: ignore[no-any-return]
        {
            "id": str(event.id),
            "type": event.event_type,
            "occurred_at": event.created_at,
            "task": task,
            "data": payload,
        }
    )


async def consume(session: AsyncSession, event: OutboxEvent, now: datetime) -> None:
    """Publish the event's frame once the relay's transaction has committed (a rolled-back
    pass publishes nothing; its events come back in a later pass)."""
    frame = frame_of(event)
    if frame is not None:
        after_commit(session, lambda: BUS.publish(frame))
