"""SLA clocks of a task, changed in the same unit of work as the task change that moves them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.kit.jsonable import to_jsonable
from opsflow.models.sla import SlaClock
from opsflow.models.task import Task
from opsflow.sla import repository
from opsflow.sla.calendar import BusinessCalendar, explain
from opsflow.sla.clocks import DEFAULT_THRESHOLDS, parse_instant, schedule

START, RESOLVE = "START", "RESOLVE"
ACTIVE, PAUSED, MET, BREACHED, CANCELLED = "ACTIVE", "PAUSED", "MET", "BREACHED", "CANCELLED"


def reschedule(clock: SlaClock) -> None:
    """Recompute the deadline and the next instant to wake up for."""
    plan = schedule(clock.started_at, clock.target_minutes, clock.thresholds, clock.pauses)
    clock.deadline = plan[-1][1]
    running = clock.status == ACTIVE or (clock.status == BREACHED and clock.stopped_at is None)
    if running and clock.fired_count < len(plan):
        clock.next_fire_at = plan[clock.fired_count][1]
    else:
        clock.next_fire_at = None


def create_clocks(session: AsyncSession, task: Task, now: datetime) -> dict[str, SlaClock]:
    clocks = {}
    for kind, minutes in ((START, task.start_sla_minutes), (RESOLVE, task.resolve_sla_minutes)):
        clock = SlaClock(
            id=uuid.uuid4(),
            task_id=task.id,
            kind=kind,
            status=ACTIVE,
            target_minutes=minutes,
            started_at=task.created_at,
            deadline=task.created_at,
            thresholds=list(DEFAULT_THRESHOLDS),
            pauses=[],
            paused_seconds=0.0,
            fired_count=0,
            created_at=now,
            updated_at=now,
        )
        reschedule(clock)
        session.add(clock)
        clocks[kind] = clock
    _mirror(task, clocks)
    return clocks


def _mirror(task: Task, clocks: dict[str, SlaClock]) -> None:
    """Tasks carry their clocks' deadlines for listing, filtering and sorting."""
    if START in clocks:
        task.start_deadline = clocks[START].deadline
    if RESOLVE in clocks:
        task.resolve_deadline = clocks[RESOLVE].deadline


def _running(clock: SlaClock) -> bool:
    return clock.stopped_at is None and clock.status in (ACTIVE, BREACHED)


def _pause(clock: SlaClock, at: datetime, actor: str, reason: str | None) -> None:
    if not _running(clock) or clock.paused_at is not None:
        return
    clock.paused_at = at
    clock.pauses = [
        *clock.pauses,
        to_jsonable({"from": at, "to": None, "actor": actor, "reason": reason}),
    ]
    if clock.status == ACTIVE:
        clock.status = PAUSED
    clock.next_fire_at = None
    clock.updated_at = at


def _resume(clock: SlaClock, at: datetime) -> None:
    if clock.paused_at is None:
        return
    pauses = list(clock.pauses)
    if pauses and pauses[-1].get("to") is None:
        pauses[-1] = {**pauses[-1], "to": to_jsonable(at)}
    clock.pauses = pauses
    clock.paused_seconds += (at - clock.paused_at).total_seconds()
    clock.paused_at = None
    if clock.status == PAUSED:
        clock.status = ACTIVE
    clock.updated_at = at
    reschedule(clock)


def _stop(clock: SlaClock, now: datetime, *, cancelled: bool = False) -> None:
    if clock.stopped_at is not None or clock.status in (MET, CANCELLED):
        return
    if clock.paused_at is not None:
        # A paused clock that stops ends its pause at the stop instant.
        _resume(clock, max(now, clock.paused_at))
    clock.stopped_at = now
    if clock.status != BREACHED:
        clock.status = CANCELLED if cancelled else MET
    clock.next_fire_at = None
    clock.updated_at = now


async def on_task_changed(
    session: AsyncSession, task: Task, now: datetime, actor: str = "system"
) -> None:
    """Bring the task's clocks in line with the task as it now stands.

    Called by the task service after every change, in the same transaction: a response
    stops START, completion stops RESOLVE, cancellation stops both, a reopen resumes
    RESOLVE (the time spent completed counts as a pause), new targets reschedule, and
    `task.sla_paused_at` pauses or resumes the running clocks.
    """
    clocks = await repository.clocks_of(session, task.id, for_update=True)
    if not clocks:
        clocks = create_clocks(session, task, now)
        await session.flush()
    start, resolve = clocks.get(START), clocks.get(RESOLVE)
    for clock, target in ((start, task.start_sla_minutes), (resolve, task.resolve_sla_minutes)):
        if clock is not None and clock.target_minutes != target:
            clock.target_minutes = target
            clock.updated_at = now
            reschedule(clock)
    responded = task.acknowledged_at or task.started_at
    if task.cancelled_at is not None:
        for clock in (start, resolve):
            if clock is not None:
                _stop(clock, now, cancelled=True)
    else:
        if start is not None and responded is not None:
            _stop(start, min(t for t in (task.acknowledged_at, task.started_at) if t))
        if resolve is not None:
            if task.completed_at is not None:
                _stop(resolve, task.completed_at)
            elif resolve.stopped_at is not None:
                _resume_after_reopen(resolve, now)
    for clock in (start, resolve):
        if clock is None:
            continue
        if task.sla_paused_at is not None:
            _pause(clock, task.sla_paused_at, actor, task.sla_pause_reason)
        else:
            _resume(clock, now)
    _mirror(task, clocks)


def _resume_after_reopen(clock: SlaClock, now: datetime) -> None:
    stopped = clock.stopped_at
    assert stopped is not None
    clock.pauses = [
        *clock.pauses,
        to_jsonable({"from": stopped, "to": now, "actor": "system", "reason": "completed"}),
    ]
    clock.paused_seconds += (now - stopped).total_seconds()
    clock.stopped_at = None
    if clock.status == MET:
        clock.status = ACTIVE
    clock.updated_at = now
    reschedule(clock)


def detail(clock: SlaClock, now: datetime) -> dict[str, object]:
    """Everything `GET /tasks/{id}/sla` says about one clock, computed at `now`."""
    until = clock.stopped_at or clock.paused_at or now
    intervals = [
        (parse_instant(p["from"]), parse_instant(p["to"]) if p.get("to") else None)
        for p in clock.pauses
    ]
    explanation = explain(
        BusinessCalendar.always(), clock.started_at, max(until, clock.started_at), intervals
    )
    paused = clock.paused_at is not None
    plan = schedule(clock.started_at, clock.target_minutes, clock.thresholds, clock.pauses)
    return {
        "kind": clock.kind,
        "status": clock.status,
        "calendar": "24x7",
        "target_minutes": clock.target_minutes,
        "started_at": clock.started_at,
        # While paused the deadline is unknown: it moves with the pause.
        "deadline": None if paused else clock.deadline,
        "stopped_at": clock.stopped_at,
        "paused_at": clock.paused_at,
        "breached_at": clock.breached_at,
        "remaining_seconds": int((clock.deadline - until).total_seconds()),
        "next_fire_at": clock.next_fire_at,
        "pauses": [
            {
                "started_at": start,
                "ended_at": end,
                "actor": p.get("actor"),
                "reason": p.get("reason"),
            }
            for (start, end), p in zip(intervals, clock.pauses, strict=True)
        ],
        "thresholds": [
            {
                "name": f"{clock.kind}_{threshold.name}",
                "percent": threshold.percent,
                "due_at": None if paused and index >= clock.fired_count else at,
                "fired": index < clock.fired_count,
            }
            for index, (threshold, at) in enumerate(plan)
        ],
        "explanation": explanation,
    }
