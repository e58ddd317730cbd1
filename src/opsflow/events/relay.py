"""The outbox relay: hands every outbox event to its consumers, at least once.

One pass claims a batch of unpublished events (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)
and, for each event inside a savepoint, calls every consumer with the same session; then it
marks the event published. A consumer's effects are rows in the same transaction as the
mark, and each consumer is idempotent by event id (escalation runs are keyed by it), so an
event redelivered after a crash has its effect once. A consumer that raises rolls back only
that event's savepoint: the event stays unpublished with its error and comes back after an
exponential backoff, while the rest of the batch goes on.

Before the consumers run, the relay's preparers see the whole batch (the tasks of its
events are loaded in one statement), and the pass shares its reads of configuration
between events (`db.share_reads`): the consumers' queries are per event, the pass's are
per batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.context import AppContext
from opsflow.db import share_reads, unit_of_work
from opsflow.events import repository
from opsflow.models.outbox import OutboxEvent
from opsflow.observability import tracing
from opsflow.observability.logging import get_logger
from opsflow.workers.contract import PassReport

Consumer = Callable[[AsyncSession, OutboxEvent, datetime], Awaitable[None]]
Preparer = Callable[[AsyncSession, Sequence[OutboxEvent]], Awaitable[None]]
MAX_BACKOFF = timedelta(minutes=10)
log = get_logger("opsflow.relay")


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 20)), MAX_BACKOFF)


class RelayEngine:
    """The outbox relay (`name` ``relay``) with its consumers, in the order they see an event.

    The consumers are wired where the application is assembled (`opsflow.composition`), so
    the relay knows none of the domains that consume events.
    """

    name = "relay"
    on_commit = True

    def __init__(
        self,
        consumers: Sequence[Consumer],
        *,
        batch: int = 500,
        preparers: Sequence[Preparer] = (),
    ) -> None:
        self.consumers = tuple(consumers)
        self.preparers = tuple(preparers)
        self.batch = batch

    async def run(self, ctx: AppContext, *, batch: int) -> PassReport:
        failed = 0
        async with unit_of_work(ctx.sessions) as session:
            now = ctx.clock.now()
            events = await repository.claim_unpublished(session, now, batch)
            share_reads(session)
            for prepare in self.preparers:
                await prepare(session, events)
            for event in events:
                try:
                    with tracing.span(
                        "opsflow.relay",
                        event.trace_context,
                        consumer=True,
                        attributes={"opsflow.event_type": event.event_type},
                    ):
                        async with session.begin_nested():
                            for consumer in self.consumers:
                                await consumer(session, event, now)
                except Exception as exc:  # one event's failure must not hold the others
                    failed += 1
                    # What a consumer set on the event (its stream number) went with the
                    # savepoint, and the event was expired: read it back before holding it.
                    await session.refresh(event)
                    _hold(event, exc, now)
                    # Its savepoint's rollback may have undone some of what the pass
                    # shared (a lock taken in it, a number given): read it all again.
                    share_reads(session)
                    continue
                event.published_at = now
                event.attempts += 1
            await session.flush()
            next_due = await repository.next_available(session)
        return PassReport(
            self.name,
            worked=bool(events),
            backlog=len(events) >= batch,
            next_due=next_due,
            counts={"events": len(events), "failed": failed},
            at=now,
        )


def _hold(event: OutboxEvent, exc: Exception, now: datetime) -> None:
    """The event stays unpublished with its error, available again after the backoff."""
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
