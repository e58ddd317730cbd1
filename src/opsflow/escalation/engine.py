"""The escalation engine: claim due steps, fire each once — one transaction per batch.

Same shape as the SLA engine (`sla/engine.py`): the partial index on pending `fire_at` is
the only query key, ``FOR UPDATE SKIP LOCKED`` splits the due steps between engines, and a
step leaves PENDING in the transaction that fires it, so it cannot fire twice.
"""

from __future__ import annotations

from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.escalation import repository
from opsflow.escalation.firing import ENGINE_ACTOR, fire
from opsflow.models.enums import EscalationStatus
from opsflow.observability import tracing
from opsflow.sla.repository import tasks_by_id
from opsflow.workers.contract import PassReport


class EscalationEngine:
    """The escalation engine (`name` ``escalation``): fires due steps."""

    name = "escalation"
    on_commit = True

    def __init__(self, *, batch: int = 200) -> None:
        self.batch = batch

    async def run(self, ctx: AppContext, *, batch: int) -> PassReport:
        fired = 0
        async with unit_of_work(ctx.sessions) as session:
            now = ctx.clock.now()
            due = await repository.claim_due(session, now, batch)
            tasks = await tasks_by_id(session, {step.task_id for step in due})
            for step in due:
                task = tasks.get(step.task_id)
                if task is None:
                    continue
                with tracing.span(
                    "opsflow.escalation.fire",
                    step.trace_context,
                    attributes={"opsflow.policy": step.policy_name, "opsflow.level": step.level},
                ):
                    await fire(session, step, task, now, ENGINE_ACTOR)
                fired += step.status == EscalationStatus.FIRED
            await session.flush()
            next_due = await repository.next_due(session)
        return PassReport(
            self.name,
            worked=bool(due),
            backlog=len(due) >= batch,
            next_due=next_due,
            counts={"steps": len(due), "fired": fired},
            at=now,
        )
