"""The escalation engine: claim due steps, fire each once — one transaction per batch.

Same shape as the SLA engine (`sla/engine.py`): the partial index on pending `fire_at` is
the only query key, ``FOR UPDATE SKIP LOCKED`` splits the due steps between engines, and a
step leaves PENDING in the transaction that fires it, so it cannot fire twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from opsflow.clock import Clock
from opsflow.db import unit_of_work
from opsflow.escalation import repository
from opsflow.escalation.firing import ENGINE_ACTOR, fire
from opsflow.models.enums import EscalationStatus
from opsflow.sla.repository import tasks_by_id


@dataclass
class EscalationPassResult:
    steps: int = 0
    fired: int = 0
    next_due: datetime | None = None


async def run_once(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, *, batch: int = 200
) -> EscalationPassResult:
    result = EscalationPassResult()
    async with unit_of_work(sessions) as session:
        now = clock.now()
        due = await repository.claim_due(session, now, batch)
        tasks = await tasks_by_id(session, {step.task_id for step in due})
        for step in due:
            task = tasks.get(step.task_id)
            if task is None:
                continue
            await fire(session, step, task, now, ENGINE_ACTOR)
            result.fired += step.status == EscalationStatus.FIRED
        result.steps = len(due)
        await session.flush()
        result.next_due = await repository.next_due(session)
    return result
