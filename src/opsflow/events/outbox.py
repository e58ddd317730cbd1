"""The transactional outbox: events written in the same transaction as their change.

A relay (built with the notification and WebSocket consumers) publishes unpublished rows
at least once; consumers deduplicate by event id. A unit of work that writes events wakes
the relay when it commits (:func:`written`, `events/wake.py`) instead of leaving them to
the relay's next poll.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, NotRequired, TypedDict, Unpack

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow import db
from opsflow.events import wake
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.outbox import OutboxEvent
from opsflow.observability import tracing


class EventFields(TypedDict):
    aggregate_type: str
    aggregate_id: uuid.UUID
    event_type: str
    payload: dict[str, Any]
    now: datetime
    request_id: NotRequired[str | None]


def event_row(**fields: Unpack[EventFields]) -> dict[str, Any]:
    """The column values of one outbox event: what :func:`emit` adds to the session, or
    one row of a batch for :func:`insert_events`."""
    now = fields["now"]
    return {
        "id": uuid.uuid4(),
        "aggregate_type": fields["aggregate_type"],
        "aggregate_id": fields["aggregate_id"],
        "event_type": fields["event_type"],
        "payload": to_jsonable({**fields["payload"], "request_id": fields.get("request_id")}),
        "created_at": now,
        "available_at": now,
        "attempts": 0,
        "trace_context": tracing.traceparent(),
    }


_BUFFER = "outbox_rows"


def emit(session: AsyncSession, **fields: Unpack[EventFields]) -> None:
    """Add one event to this unit of work (kept as a row while a :func:`buffered` block
    is open, an ORM object otherwise)."""
    row = event_row(**fields)
    buffer: list[dict[str, Any]] | None = session.info.get(_BUFFER)
    if buffer is not None:
        buffer.append(row)
    else:
        session.add(OutboxEvent(**row))
        written(session)


@asynccontextmanager
async def buffered(session: AsyncSession) -> AsyncIterator[None]:
    """Within the block, events are kept as rows and inserted together at its end (batch
    callers: no ORM object per event). Nothing is inserted when the block fails."""
    session.info[_BUFFER] = []
    try:
        yield
    except BaseException:
        session.info.pop(_BUFFER, None)
        raise
    await insert_events(session, session.info.pop(_BUFFER, []))


async def insert_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert many events (from :func:`event_row`) in one statement, in this unit of work:
    for a batch of changes, without an ORM object per event."""
    await db.insert_rows(session, OutboxEvent, rows)
    if rows:
        written(session)


def written(session: AsyncSession) -> None:
    """This unit of work wrote outbox rows: when it commits, wake this process's engine
    loops (once per transaction, however many rows). Other processes hear of it from the
    database: on PostgreSQL the outbox table's trigger notifies the outbox channel, which
    PostgreSQL delivers to the listening engine processes only if the transaction commits.
    Every way of writing an outbox row calls this; the wake itself is `events/wake.py`."""
    db.add_pre_commit_hook(session, "outbox.wake", _announce, first=True)


async def _announce(session: AsyncSession) -> None:
    db.after_commit(session, wake.committed)
