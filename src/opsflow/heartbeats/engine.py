"""The heartbeat engine: claim monitors whose next check is due, mark the missed ones down
and the overrun runs over, open their incidents, re-plan.

One pass = one transaction, like the SLA engine: monitors with ``next_check_at <= now`` are
claimed (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so passes side by side take different
monitors, and a signal on the same monitor waits for the pass), acted on and re-planned
before the commit, so each transition happens once. The incident is opened by the function
the composition root hands in (`heartbeats.incidents.open_incident`), which goes through
the task rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.heartbeats import repository
from opsflow.heartbeats.schedule import State
from opsflow.heartbeats.transitions import replan
from opsflow.models.heartbeat import HeartbeatMonitor
from opsflow.workers.contract import PassReport

OpenIncident = Callable[[AsyncSession, AppContext, HeartbeatMonitor, str], Awaitable[bool]]


class HeartbeatEngine:
    """The heartbeat engine (`name` ``heartbeats``)."""

    name = "heartbeats"
    on_commit = False

    def __init__(self, open_incident: OpenIncident, *, batch: int = 200) -> None:
        self.batch = batch
        self._open_incident = open_incident

    async def run(self, ctx: AppContext, *, batch: int) -> PassReport:
        counts = {"monitors": 0, "down": 0, "overrun": 0, "incidents": 0}
        lags: list[tuple[str, float]] = []
        async with unit_of_work(ctx.sessions) as session:
            now = ctx.clock.now()
            due = await repository.claim_due(session, now, batch)
            counts["monitors"] = len(due)
            for monitor in due:
                runs = await repository.runs(session, monitor.id)
                overrun = [r for r in runs if r.deadline_at is not None and r.deadline_at <= now]
                reasons: list[str] = []
                for run in overrun:
                    await session.delete(run)
                    assert run.deadline_at is not None
                    lags.append(("overrun", (now - run.deadline_at).total_seconds()))
                if overrun:
                    counts["overrun"] += len(overrun)
                    monitor.state = State.DOWN
                    reasons.append(f"a run did not finish within {monitor.max_run_seconds} s")
                if monitor.state == State.UP and monitor.next_due_at is not None:
                    down_at = monitor.next_due_at + timedelta(seconds=monitor.grace_seconds)
                    if down_at <= now:
                        monitor.state = State.DOWN
                        counts["down"] += 1
                        lags.append(("down", (now - down_at).total_seconds()))
                        expected = monitor.next_due_at.isoformat()
                        reasons.append(
                            f"no signal since {expected} (grace {monitor.grace_seconds} s)"
                        )
                if reasons and await self._open_incident(session, ctx, monitor, "; ".join(reasons)):
                    counts["incidents"] += 1
                replan(monitor, [r for r in runs if r not in overrun])
                monitor.updated_at = now
            await session.flush()
            next_due = await repository.next_due(session)
        return PassReport.of_claim(
            self.name, due, batch, next_due=next_due, counts=counts, at=now, lags=lags
        )
