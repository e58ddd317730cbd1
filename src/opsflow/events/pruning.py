"""The outbox pruner: keeps the outbox to its retention window.

The outbox is also the WebSocket stream's replay log (a client resumes with `since`, the
stream id of the last event it got), and the window it promises is
`OPSFLOW_OUTBOX_RETENTION_HOURS` (24 h by default). An event is deleted once it was relayed
(every consumer has had it) and both its instant and its relay are older than the window;
never an unrelayed one, and never the newest streamed one (the stream's numbering goes on
from it). A client asking for older events than the oldest kept is told to resync (the
`resync` frame, see realtime/endpoints.py).

A pass deletes at most `batch` rows in one transaction (``SKIP LOCKED`` on PostgreSQL, so
passes side by side take different rows); a full batch reports a backlog, so the drivers
run it again at once. With nothing left to delete it waits `CHECK_EVERY` (on the clock) for
its next look, so an idle installation does not pay a query each round.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.events import repository
from opsflow.workers.contract import PassReport

CHECK_EVERY = timedelta(minutes=5)


class OutboxPruner:
    """The outbox pruner (`name` ``outbox``)."""

    name = "outbox"
    on_commit = False

    def __init__(self, *, batch: int = 5000) -> None:
        self.batch = batch
        self._next_look: datetime | None = None

    async def run(self, ctx: AppContext, *, batch: int) -> PassReport:
        now = ctx.clock.now()
        if self._next_look is not None and now < self._next_look:
            return PassReport(self.name, at=now)
        cutoff = now - timedelta(hours=ctx.settings.outbox_retention_hours)
        async with unit_of_work(ctx.sessions) as session:
            deleted = await repository.prune_relayed(session, cutoff, batch)
        backlog = deleted >= batch
        self._next_look = None if backlog else now + CHECK_EVERY
        return PassReport(
            self.name,
            worked=bool(deleted),
            backlog=backlog,
            counts={"deleted": deleted},
            at=now,
        )
