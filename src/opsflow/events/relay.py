"""The outbox relay: hands every outbox event to its consumers, at least once.

One pass claims a batch of unpublished events (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)
and, for each event inside a savepoint, calls every consumer with the same session; then it
marks the event published. A consumer's effects are rows in the same transaction as the
mark, and each consumer is idempotent by event id (escalation runs are keyed by it), so an
event redelivered after a crash has its effect once. A consumer that raises rolls back only
that event's savepoint: the event stays unpublished with its error and comes back after an
exponential backoff, while the rest of the batch goes on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from opsflow.clock import Clock
from opsflow.db import unit_of_work
from opsflow.models.outbox import OutboxEvent
from opsflow.observability.logging import get_logger

Consumer = Callable[[AsyncSession, OutboxEvent, datetime], Awaitable[None]]
MAX_BACKOFF = timedelta(minutes=10)
log = get_logger("opsflow.relay")


def consumers() -> list[Consumer]:
    """Every consumer of the outbox, in the order they see an event."""
    from opsflow.escalation.service import consume as escalation
    from opsflow.notifications.service import consume as notifications
    from opsflow.webhooks.service import consume as webhooks

    return [escalation, notifications, webhooks]


@dataclass
class RelayPassResult:
    events: int = 0
    failed: int = 0
    next_due: datetime | None = None


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 20)), MAX_BACKOFF)


async def run_once(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    batch: int = 500,
    handlers: Sequence[Consumer] | None = None,
) -> RelayPassResult:
    handlers = consumers() if handlers is None else handlers
    result = RelayPassResult()
    async with unit_of_work(sessions) as session:
        now = clock.now()
        query = (
            select(OutboxEvent)
            .where(OutboxEvent.published_at.is_(None), OutboxEvent.available_at <= now)
            .order_by(OutboxEvent.created_at, OutboxEvent.id)
            .limit(batch)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        events = list(await session.scalars(query))
        for event in events:
            try:
                async with session.begin_nested():
                    for handler in handlers:
                        await handler(session, event, now)
            except Exception as exc:  # one event's failure must not hold the others
                result.failed += 1
                event.attempts += 1
                event.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                event.available_at = now + backoff(event.attempts)
                log.warning(
                    "outbox_consumer_failed",
                    event_id=str(event.id),
                    event_type=event.event_type,
                    attempts=event.attempts,
                    error=event.last_error,
                )
                continue
            event.published_at = now
            event.attempts += 1
        result.events = len(events)
        await session.flush()
        result.next_due = await session.scalar(
            select(func.min(OutboxEvent.available_at)).where(OutboxEvent.published_at.is_(None))
        )
    return result
