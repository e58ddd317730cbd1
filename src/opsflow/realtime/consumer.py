"""The outbox relay's realtime consumer: each committed task event to the bus, once.

Each streamed event gets the next `stream_seq`, the `id` clients see and resume from. The
number is taken under a lock held until the relay's transaction commits (a PostgreSQL
transaction-scoped advisory lock; on SQLite the write lock every transaction holds), so
numbers become visible in order and without gaps: a client that replays from the outbox
and then follows the live stream misses nothing and sees nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.db import after_commit, shared
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.outbox import OutboxEvent
from opsflow.realtime.bus import BUS
from opsflow.realtime.hub import COMMENT_PREFIX, INBOX_READ, STREAMED_PREFIXES

STREAM_LOCK_KEY = 0x0F5F_57E0


def is_streamed(event: OutboxEvent) -> bool:
    """Task, SLA and escalation events of tasks; comment changes; a user's `inbox.read`."""
    kind = event.event_type
    if event.aggregate_type == "task":
        return kind.startswith(STREAMED_PREFIXES)
    if event.aggregate_type == "comment":
        return kind.startswith(COMMENT_PREFIX)
    return event.aggregate_type == "user" and kind == INBOX_READ


def frame_of(event: OutboxEvent) -> dict[str, Any]:
    """The frame a client receives for a streamed outbox event."""
    payload = dict(event.payload or {})
    task = payload.pop("task", None) or {"id": str(payload.get("task_id", event.aggregate_id))}
    for private in ("request_id", "notify"):  # whom a mention notifies is not broadcast
        payload.pop(private, None)
    return to_jsonable(  # type: ignore[no-any-return]
        {
            "id": event.stream_seq,
            "type": event.event_type,
            "occurred_at": event.created_at,
            "task": task,
            "data": payload,
        }
    )


async def consume(session: AsyncSession, event: OutboxEvent, now: datetime) -> None:
    """Number the event, then publish its frame once the relay's transaction has committed
    (a rolled-back pass publishes nothing; its events come back in a later pass)."""
    if not is_streamed(event) or event.stream_seq is not None:
        return
    # In a relay pass the lock, once taken, is held until the pass commits: the pass
    # numbers its next events on from its last one without asking again.
    numbering = shared(session, "realtime.stream_seq")
    last = None if numbering is None else numbering.get("last")
    if last is None:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": STREAM_LOCK_KEY}
            )
        last = await session.scalar(select(func.max(OutboxEvent.stream_seq))) or 0
    event.stream_seq = last + 1
    await session.flush()
    if numbering is not None:
        numbering["last"] = event.stream_seq
    frame = frame_of(event)
    after_commit(session, lambda: BUS.publish(frame))


async def since(session: AsyncSession, after: int, limit: int) -> list[dict[str, Any]]:
    """Frames of streamed events numbered after `after`, in order, at most `limit`."""
    rows = await session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.stream_seq > after)
        .order_by(OutboxEvent.stream_seq)
        .limit(limit)
    )
    return [frame_of(row) for row in rows]


async def last_id(session: AsyncSession) -> int:
    """The id of the newest streamed event (0 when none)."""
    return int(await session.scalar(select(func.max(OutboxEvent.stream_seq))) or 0)


async def oldest_id(session: AsyncSession) -> int | None:
    """The id of the oldest streamed event the outbox still holds (None when none)."""
    value = await session.scalar(select(func.min(OutboxEvent.stream_seq)))
    return None if value is None else int(value)
