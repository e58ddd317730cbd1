"""The SLA engine: claim due clocks, persist the thresholds they crossed, advance them.

One pass = one transaction: claim a batch of clocks with ``next_fire_at <= now`` (skipping
rows another engine holds), write an SLA event per crossed threshold plus its audit row and
outbox event, move ``next_fire_at`` to the next threshold, commit. The unique constraint on
(clock, event type) makes a second firing impossible, not merely unlikely. The cost of a
pass depends on the clocks that are due, never on how many clocks are open.

After downtime a clock may have crossed several thresholds at once: each is recorded, but
only the most severe is marked to notify, so nobody is paged three times for one task.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from opsflow.audit import writer as audit
from opsflow.auth.principal import Principal
from opsflow.clock import Clock
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.events import outbox
from opsflow.models.enums import ClockStatus
from opsflow.models.outbox import OutboxEvent
from opsflow.models.sla import SlaClock, SlaEvent
from opsflow.models.task import Task
from opsflow.sla import repository
from opsflow.sla.clocks import frozen_at, plan_of, reschedule
from opsflow.tasks.summary import task_summary
from opsflow.workers.contract import PassReport

ENGINE_ACTOR = Principal.system("sla-engine")


class SlaEngine:
    """The SLA engine (`name` ``sla``): one pass fires what is due on a batch of clocks."""

    name = "sla"
    on_commit = False

    def __init__(self, *, batch: int = 500) -> None:
        self.batch = batch

    async def run(self, ctx: AppContext, *, batch: int) -> PassReport:
        """One pass, counted in ``opsflow_sla_engine_passes_total`` and, per event, its
        lateness in ``opsflow_sla_engine_lag_seconds``."""
        try:
            report = await self._pass(ctx.sessions, ctx.clock, batch)
        except Exception:
            ctx.metrics.sla_engine_passes.labels("failed").inc()
            raise
        ctx.metrics.sla_engine_passes.labels("ok").inc()
        for event_type, lag in report.lags:
            ctx.metrics.sla_engine_lag.labels(event_type).observe(lag)
        return report

    async def _pass(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, batch: int
    ) -> PassReport:
        """The batch costs a constant number of statements whatever its size: the claim, the
        task lookup, one multi-row insert each for its SLA events, outbox events and audit
        rows, one batched update of the clocks."""
        fired: list[dict[str, Any]] = []
        async with unit_of_work(sessions) as session:
            now = clock.now()
            due = await repository.claim_due(session, now, batch)
            summaries = await repository.task_summaries(session, {c.task_id for c in due})
            for sla_clock in due:
                fired.extend(_fire(sla_clock, now))
            if fired:
                await repository.insert_events(session, fired)
                await outbox.insert_events(
                    session, [_publish(session, e, summaries.get(e["task_id"]), now) for e in fired]
                )
            await session.flush()
            next_due = await repository.next_due(session)
        # Lateness: from the threshold instant to the event being persisted.
        persisted = clock.now()
        return PassReport(
            self.name,
            worked=bool(due),
            backlog=len(due) >= batch,
            next_due=next_due,
            counts={"clocks": len(due), "events": len(fired)},
            at=now,
            lags=[(e["event_type"], (persisted - e["due_at"]).total_seconds()) for e in fired],
        )


def fire_clock(
    session: AsyncSession, sla_clock: SlaClock, task: Task | None, now: datetime
) -> list[SlaEvent]:
    """One clock fired as a pass fires it, its rows added to `session` as objects (for a
    caller that collects them: the demo generator's in-memory session)."""
    fired = _fire(sla_clock, now)
    summary = task_summary(task) if task else None
    events = []
    for values in fired:
        attributes = dict(values)
        attributes["metadata_"] = attributes.pop("metadata")
        events.append(SlaEvent(**attributes))
    session.add_all(events)
    for values in fired:
        session.add(OutboxEvent(**_publish(session, values, summary, now)))
    return events


def _fire(sla_clock: SlaClock, now: datetime) -> list[dict[str, Any]]:
    """The SLA events (column values) of the thresholds the clock crossed; the clock is
    advanced past them."""
    plan = plan_of(sla_clock)
    # A stopped or paused clock fires only what was due before it stood still.
    frozen = frozen_at(sla_clock)
    crossed = [
        (index, threshold, at)
        for index, (threshold, at) in enumerate(plan.steps)
        if index >= sla_clock.fired_count and at <= now and (frozen is None or at < frozen)
    ]
    events: list[dict[str, Any]] = []
    for position, (index, threshold, at) in enumerate(crossed):
        events.append(
            {
                "id": uuid.uuid4(),
                "task_id": sla_clock.task_id,
                "clock_id": sla_clock.id,
                "event_type": f"{sla_clock.kind}_{threshold.name}",
                "severity": threshold.severity,
                "sla_type": sla_clock.kind,
                "expected_deadline": sla_clock.deadline,
                "due_at": at,
                "triggered_at": now,
                "actual_time": now,
                "delay_minutes": int((now - at).total_seconds() // 60),
                "notify": position == len(crossed) - 1,
                "notification_sent": False,
                "escalation_level": 0,
                "metadata": {"percent": threshold.percent, "catch_up": len(crossed) > 1},
            }
        )
        sla_clock.fired_count = index + 1
        if threshold.name == "BREACH":
            sla_clock.status = ClockStatus.BREACHED
            sla_clock.breached_at = at
    sla_clock.updated_at = now
    reschedule(sla_clock, plan)  # firing moves none of the plan's inputs
    return events


def _publish(
    session: AsyncSession, event: dict[str, Any], summary: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    """Queue the event's audit row; return its outbox event (column values)."""
    event_type: str = event["event_type"]
    kind = event_type.rsplit("_", 1)[1].lower()  # warning | critical | breach
    audit.record(
        session,
        ENGINE_ACTOR,
        entity_type="task",
        entity_id=event["task_id"],
        action=f"SLA_{event_type}",
        now=now,
        metadata={
            "sla_event_id": str(event["id"]),
            "due_at": event["due_at"],
            "delay_minutes": event["delay_minutes"],
            "notify": event["notify"],
        },
    )
    return outbox.event_row(
        aggregate_type="task",
        aggregate_id=event["task_id"],
        event_type=f"sla.{kind}",
        payload={
            "event_id": event["id"],
            "event_type": event_type,
            "severity": event["severity"],
            "sla_type": event["sla_type"],
            "due_at": event["due_at"],
            "expected_deadline": event["expected_deadline"],
            "notify": event["notify"],
            "task": summary or {"id": event["task_id"]},
        },
        now=now,
        request_id=ENGINE_ACTOR.meta.request_id,
    )
