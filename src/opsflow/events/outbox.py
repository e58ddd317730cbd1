"""The transactional outbox: events written in the same transaction as their change.

A relay (built with the notification and WebSocket consumers) publishes unpublished rows
at least once; consumers deduplicate by event id.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.db import insert_rows
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.outbox import OutboxEvent
from opsflow.observability import tracing


def values(
    *,
    aggregate_type: str,
    aggregate_id: uuid.UUID,
    event_type: str,
    payload: dict[str, Any],
    now: datetime,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The column values (by attribute name) of one outbox row, for a caller inserting many
    at once (`add_many`)."""
    return {
        "id": uuid.uuid4(),
        "aggregate_type": aggregate_type,
        "aggregate_id": aggregate_id,
        "event_type": event_type,
        "payload": to_jsonable({**payload, "request_id": request_id}),
        "created_at": now,
        "available_at": now,
        "attempts": 0,
        "trace_context": tracing.traceparent(),
    }


_BUFFER = "outbox_rows"


def emit(
    session: AsyncSession,
    *,
    aggregate_type: str,
    aggregate_id: uuid.UUID,
    event_type: str,
    payload: dict[str, Any],
    now: datetime,
    request_id: str | None = None,
) -> None:
    row = values(
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        event_type=event_type,
        payload=payload,
        now=now,
        request_id=request_id,
    )
    buffer: list[dict[str, Any]] | None = session.info.get(_BUFFER)
    if buffer is not None:
        buffer.append(row)
    else:
        session.add(OutboxEvent(**row))


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
    await add_many(session, session.info.pop(_BUFFER, []))


async def add_many(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert outbox rows built by `values` (multi-row INSERT statements)."""
    if rows:
        await insert_rows(session, OutboxEvent, rows)
