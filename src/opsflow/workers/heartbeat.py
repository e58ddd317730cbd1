"""Engine heartbeats: each process that runs engine rounds says so, for `/health`.

A driver (the loop in ``opsflow serve``, ``opsflow engine``, a Celery worker process) owns one
:class:`Heartbeat` and hands it to every round. After a round the heartbeat writes the
process's ``engine_heartbeats`` row — host, pid, driver, the passes it runs, its interval,
rounds run, started and last seen — but at most every `BEAT_EVERY_SECONDS`, so a process
running rounds back to back costs one small write every few seconds, not one per round. A
clean stop deletes the row; a process that dies leaves it behind, and `/health` reports it
stale once it has not been seen for `STALE_AFTER_INTERVALS` times the longer of its beat
period and its interval. Rows not seen for `RETENTION` are deleted by the next process that
starts beating.

A failed write is logged and tried again `BEAT_EVERY_SECONDS` later: a heartbeat never fails
a round.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.models.engine import EngineHeartbeat
from opsflow.observability.logging import get_logger
from opsflow.workers import repository

BEAT_EVERY_SECONDS = 5.0
STALE_AFTER_INTERVALS = 6
RETENTION = timedelta(hours=1)

log = get_logger("opsflow.engine.heartbeat")


def stale_after(interval_seconds: float) -> timedelta:
    """How long a process may go unseen before it is reported stale."""
    return timedelta(seconds=STALE_AFTER_INTERVALS * max(BEAT_EVERY_SECONDS, interval_seconds))


class Heartbeat:
    def __init__(
        self,
        *,
        driver: str,
        passes: Sequence[str],
        interval: float,
        every: float = BEAT_EVERY_SECONDS,
    ) -> None:
        self.id = uuid.uuid4()
        self.driver = driver
        self.passes = ",".join(passes)
        self.interval = interval
        self.every = every
        self.rounds = 0
        self.started_at: datetime | None = None
        self._tried_at: datetime | None = None  # the last write, or attempt to write
        self._written_at: datetime | None = None  # the last write that committed

    async def beat(self, ctx: AppContext) -> None:
        """Count a round; write the row if the last write is `every` seconds old."""
        self.rounds += 1
        now = ctx.clock.now()
        if self.started_at is None:
            self.started_at = now
        if self._tried_at is not None:
            elapsed = (now - self._tried_at).total_seconds()
            if 0 <= elapsed < self.every:
                return
        self._tried_at = now
        first = self._written_at is None
        try:
            async with unit_of_work(ctx.sessions) as session:
                await repository.save_heartbeat(
                    session,
                    EngineHeartbeat(
                        id=self.id,
                        host=socket.gethostname()[:255],
                        pid=os.getpid(),
                        driver=self.driver,
                        passes=self.passes[:500],
                        interval_seconds=self.interval,
                        rounds=self.rounds,
                        started_at=self.started_at,
                        last_seen=now,
                    ),
                )
                if first:
                    await repository.delete_unseen_since(session, now - RETENTION)
        except Exception:  # the database is down or busy: tried again in `every` seconds
            log.warning("heartbeat_not_recorded", exc_info=True)
            return
        self._written_at = now

    async def stop(self, ctx: AppContext) -> None:
        """Remove the row: the process stops cleanly, it is not stale."""
        if self._written_at is None:
            return
        try:
            async with unit_of_work(ctx.sessions) as session:
                await repository.delete_heartbeat(session, self.id)
        except Exception:
            log.warning("heartbeat_not_removed", exc_info=True)
        self._written_at = None
