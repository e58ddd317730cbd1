"""Escalation: policies, runs planned as rows, steps fired once, stopped by a response.

A *run* is what one trigger plans: every step of a matching policy (repeated `repeat` times)
as an `escalation_events` row with its `fire_at`. Triggers arrive through the outbox relay
(`consume`): `task.created` for `created` policies, `sla.warning` / `sla.breach` (the one
the engine marked `notify`) for `warning` / `breach` policies. The run id is derived from
the outbox event and the policy, so a redelivered event plans nothing twice.

Steps are cumulative: step i fires `delay_minutes` after step i-1 (the first after the
trigger). A repeat starts the sequence again `repeat_interval_minutes` after the last step
(default: the last step's own delay, at least 5 minutes).

A run stops in the same transaction as the task change that ends it (`on_task_changed`):
acknowledging or starting stops runs of the response (START clock, `created` trigger),
completing or cancelling stops every run; snoozing postpones pending steps so that the
first is due when the snooze ends. A task that matches no policy uses its team's default
policy (``teams.escalation_policy_id``) for that policy's trigger. With no policy at all, a
START breach escalates to the team lead (an admin when the team has none) 5 minutes later if
the task has still not been answered.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.principal import Principal
from opsflow.errors import Conflict
from opsflow.escalation import repository
from opsflow.escalation.firing import (
    DEFAULT_POLICY_NAME,
    SLA_LEVELS_PREFIX,
    cancel,
    fire,
    resolve_targets,
)
from opsflow.escalation.schemas import PolicyCreate, PolicyUpdate
from opsflow.events.entities import Entity
from opsflow.kit.jsonable import to_jsonable
from opsflow.kit.validation import patch_fields
from opsflow.models.enums import EscalationStatus
from opsflow.models.escalation import EscalationEvent, EscalationPolicy
from opsflow.models.outbox import OutboxEvent
from opsflow.models.task import Task
from opsflow.observability import tracing
from opsflow.sla.calendar import add_working_time
from opsflow.sla.clocks import calendar_of
from opsflow.tasks import conditions
from opsflow.tasks.lifecycle import OPEN

ENTITY = "escalation_policy"
DEFAULT_DELAY_MINUTES = 5
MIN_REPEAT_INTERVAL = 5
# With no policy handling a START breach: the team lead, 5 minutes later.
DEFAULT_STEPS: list[dict[str, Any]] = [
    {
        "delay_minutes": DEFAULT_DELAY_MINUTES,
        "targets": ["team_lead"],
        "channels": ["email"],
        "message": "Response SLA breached and the task is still not started.",
    }
]
_RUN_NAMESPACE = uuid.UUID("6f1d7a52-2b7e-4c4e-9a51-0e5c2f0a7d11")


# --- matching and planning (pure) ---------------------------------------------------------


def matches(policy: EscalationPolicy, task: Task, team_name: str | None) -> bool:
    return conditions.matches(policy.conditions or {}, task, team_name)


@dataclass(frozen=True)
class PlannedStep:
    cycle: int
    step_index: int
    level: int
    fire_at: datetime
    step: dict[str, Any]


def plan(
    steps: list[dict[str, Any]], repeat: int, repeat_interval: int | None, start: datetime
) -> list[PlannedStep]:
    planned: list[PlannedStep] = []
    cursor = start
    last_delay = int(steps[-1].get("delay_minutes", 0)) if steps else 0
    gap = repeat_interval or max(last_delay, MIN_REPEAT_INTERVAL)
    for cycle in range(repeat + 1):
        if cycle:
            cursor += timedelta(minutes=gap)
        for index, step in enumerate(steps):
            if index or not cycle:
                cursor += timedelta(minutes=int(step.get("delay_minutes", 0)))
            planned.append(PlannedStep(cycle, index, index + 1, cursor, step))
    return planned


def _run_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(_RUN_NAMESPACE, ":".join(str(p) for p in parts))


def _stops_on_response(event: EscalationEvent) -> bool:
    return event.sla_type == "START" or event.trigger in ("created", "manual")


# --- planning runs ------------------------------------------------------------------------


async def _schedule(
    session: AsyncSession,
    task: Task,
    *,
    run_id: uuid.UUID,
    policy: EscalationPolicy | None,
    steps: list[dict[str, Any]],
    trigger: str,
    sla_type: str | None,
    start: datetime,
    now: datetime,
    repeat: int = 0,
    repeat_interval: int | None = None,
    planned: list[PlannedStep] | None = None,
    policy_name: str | None = None,
) -> list[EscalationEvent]:
    if await repository.run_exists(session, run_id):
        return []  # the same trigger again (a redelivered outbox event): planned already
    if planned is None:
        planned = plan(steps, repeat, repeat_interval, start)
    rows = step_rows(
        task,
        run_id=run_id,
        policy=policy,
        planned=planned,
        trigger=trigger,
        sla_type=sla_type,
        now=now,
        policy_name=policy_name,
    )
    session.add_all(rows)
    await session.flush()
    return rows


def step_rows(
    task: Task,
    *,
    run_id: uuid.UUID,
    policy: EscalationPolicy | None,
    planned: list[PlannedStep],
    trigger: str,
    sla_type: str | None,
    now: datetime,
    policy_name: str | None = None,
) -> list[EscalationEvent]:
    """The pending rows of a run planned at `now` (pure)."""
    return [
        EscalationEvent(
            id=uuid.uuid4(),
            task_id=task.id,
            policy_id=policy.id if policy else None,
            policy_name=policy.name if policy else policy_name or DEFAULT_POLICY_NAME,
            run_id=run_id,
            trigger=trigger,
            sla_type=sla_type,
            cycle=item.cycle,
            step_index=item.step_index,
            level=item.level,
            status=EscalationStatus.PENDING,
            fire_at=item.fire_at,
            targets=list(item.step.get("targets", [])),
            recipients=[],
            channels=list(item.step.get("channels", ["email"])),
            message=item.step.get("message"),
            trace_context=tracing.traceparent(),
            created_at=now,
            updated_at=now,
        )
        for item in planned
    ]


@dataclass(frozen=True)
class Trigger:
    """An outbox event that may start escalation runs, with what planning needs."""

    name: str  # created | warning | breach
    task: Task
    sla_type: str | None
    start: datetime


_TRIGGERS = {"task.created": "created", "sla.warning": "warning", "sla.breach": "breach"}


async def trigger_of(session: AsyncSession, event: OutboxEvent) -> Trigger | None:
    """The trigger an event is, or None when it starts nothing (not a trigger, a catch-up
    event that is not the most severe, a closed task, a START event of an answered task)."""
    name = _TRIGGERS.get(event.event_type)
    if name is None:
        return None
    payload = event.payload or {}
    if name != "created" and not payload.get("notify", True):
        return None
    task = await session.get(Task, event.aggregate_id)
    if task is None or task.status not in OPEN:
        return None
    sla_type = payload.get("sla_type") if name != "created" else None
    if sla_type == "START" and (task.acknowledged_at or task.started_at):
        return None
    start = _instant(payload.get("due_at")) or event.created_at
    return Trigger(name, task, sla_type, start)


async def policies_for(
    session: AsyncSession, task: Task, trigger: str | None = None
) -> list[EscalationPolicy]:
    """The active policies whose conditions match the task (for one trigger, or any). When
    none does, the task's team's default policy (``teams.escalation_policy_id``), if it is
    active and serves that trigger: naming it as the team's default is its condition."""
    team = await repository.team(session, task.team_id)
    matched = [
        p
        for p in await repository.active_policies(session, trigger)
        if matches(p, task, team.name if team else None)
    ]
    if matched or team is None or team.escalation_policy_id is None:
        return matched
    default = await repository.get_policy(session, team.escalation_policy_id)
    if default is None or not default.is_active:
        return []
    return [default] if trigger is None or default.trigger == trigger else []


async def consume(session: AsyncSession, event: OutboxEvent, now: datetime) -> None:
    """The relay's escalation consumer: plan the runs an event triggers."""
    trigger = await trigger_of(session, event)
    if trigger is None:
        return
    task, sla_type, start = trigger.task, trigger.sla_type, trigger.start
    matched = await policies_for(session, task, trigger.name)
    for policy in matched:
        await _schedule(
            session,
            task,
            run_id=_run_id(event.id, policy.id),
            policy=policy,
            steps=list(policy.steps),
            trigger=trigger.name,
            sla_type=sla_type,
            start=start,
            now=now,
            repeat=policy.repeat,
            repeat_interval=policy.repeat_interval_minutes,
        )
    if trigger.name == "created":
        await _plan_sla_levels(session, event, task, start, now)
    if not matched and trigger.name == "breach" and sla_type == "START":
        await _schedule(
            session,
            task,
            run_id=_run_id(event.id, "default"),
            policy=None,
            steps=DEFAULT_STEPS,
            trigger=trigger.name,
            sla_type=sla_type,
            start=start,
            now=now,
        )


def level_targets(level: int) -> list[str]:
    """Whom a level of the SLA configuration reaches: level 1 the team lead, level 2 a
    manager, level 3 and above the administrators (the highest role there is)."""
    return ["team_lead"] if level == 1 else ["manager"] if level == 2 else ["role:admin"]


async def _plan_sla_levels(
    session: AsyncSession, event: OutboxEvent, task: Task, start: datetime, now: datetime
) -> None:
    """The escalation levels of the task's SLA policy (``escalation: {LEVEL_1: 10, ...}`` of
    an ``sla_config.yaml``): level n is due that many working minutes (of the task's calendar)
    after creation, and fires once unless a response or the close came first (a run of the
    `created` trigger). It reaches `level_targets(n)`, by e-mail, with the level's label from
    ``escalation_levels`` as its message."""
    found = await repository.sla_levels(session, task)
    if found is None:
        return
    calendar = calendar_of(found.calendar_name, found.calendar_spec)
    planned = []
    for index, (level, minutes) in enumerate(found.levels):
        try:
            at = add_working_time(calendar, start, minutes * 60)
        except ValueError:
            continue  # never reached in this calendar
        label = found.labels.get(level)
        step = {
            "targets": level_targets(level),
            "channels": ["email"],
            "message": f"Level {level} of SLA policy {found.policy_name}"
            + (f": {label}." if label else "."),
        }
        planned.append(PlannedStep(0, index, level, at, step))
    await _schedule(
        session,
        task,
        run_id=_run_id(event.id, "sla-levels"),
        policy=None,
        policy_name=SLA_LEVELS_PREFIX + found.policy_name,
        steps=[],
        trigger="created",
        sla_type=None,
        start=start,
        now=now,
        planned=planned,
    )


async def immediate_pages(session: AsyncSession, event: OutboxEvent) -> set[tuple[uuid.UUID, str]]:
    """Who the escalation runs this event starts page at its own instant, on which channel
    (``(user id, "email")``...): the steps due at once (no delay before them). The built-in
    notification of the same event leaves these out, so one event reaches one person on one
    channel once."""
    trigger = await trigger_of(session, event)
    if trigger is None:
        return set()
    pages: set[tuple[uuid.UUID, str]] = set()
    for policy in await policies_for(session, trigger.task, trigger.name):
        for item in plan(list(policy.steps), 0, None, trigger.start):
            if item.fire_at > trigger.start:
                break
            targets = list(item.step.get("targets", []))
            for user in await resolve_targets(session, trigger.task, targets):
                pages.update((user.id, c) for c in item.step.get("channels", ["email"]))
    return pages


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- stopping, postponing -----------------------------------------------------------------


async def on_task_changed(
    session: AsyncSession,
    task: Task,
    now: datetime,
    pending: list[EscalationEvent] | None = None,
) -> None:
    """Bring the task's pending steps in line with the task, in the change's transaction.

    `pending`: the task's pending steps when the caller already read and locked them in
    this transaction."""
    if pending is None:
        pending = await repository.pending_of_task(session, task.id)
    settle_pending(task, pending, now)
    closed = task.completed_at is not None or task.cancelled_at is not None
    if not closed and task.acknowledged_at is not None:
        await _plan_ack_timeouts(session, task, now)


def settle_pending(task: Task, pending: list[EscalationEvent], now: datetime) -> None:
    """The pending steps after a task change (pure): a close cancels them, a response those
    that stop on one, a snooze postpones the others to its end."""
    closed = task.completed_at is not None or task.cancelled_at is not None
    responded = task.acknowledged_at is not None or task.started_at is not None
    remaining = []
    for step in pending:
        if closed:
            cancel(step, "completed" if task.completed_at else "cancelled", now)
        elif responded and _stops_on_response(step):
            cancel(step, "acknowledged" if task.acknowledged_at else "started", now)
        else:
            remaining.append(step)
    if remaining and task.snoozed_until is not None and task.snoozed_until > now:
        shift = task.snoozed_until - min(step.fire_at for step in remaining)
        if shift > timedelta(0):
            for step in remaining:
                step.fire_at += shift
                step.updated_at = now


async def _plan_ack_timeouts(session: AsyncSession, task: Task, now: datetime) -> None:
    """An acknowledged task not resolved within a policy's ack_timeout re-notifies."""
    acknowledged = task.acknowledged_at
    assert acknowledged is not None
    for policy in await policies_for(session, task):
        if policy.ack_timeout_minutes is None or not policy.steps:
            continue
        first = dict(policy.steps[0])
        await _schedule(
            session,
            task,
            run_id=_run_id(task.id, policy.id, "ack", acknowledged.isoformat()),
            policy=policy,
            steps=[{**first, "delay_minutes": policy.ack_timeout_minutes}],
            trigger="ack_timeout",
            sla_type=None,
            start=acknowledged,
            now=now,
        )


async def escalate_now(
    session: AsyncSession, task: Task, actor: Principal, now: datetime, reason: str | None
) -> EscalationEvent:
    """`POST /tasks/{id}/escalate`: the next pending level fires now; with no run under way,
    the first level of the matching policy (or the default) does."""
    if task.status not in OPEN:
        raise Conflict("Only an open task can be escalated", status=task.status)
    pending = await repository.pending_of_task(session, task.id)
    if pending:
        step = pending[0]
    else:
        policies = await policies_for(session, task)
        policy = policies[0] if policies else None
        steps = (
            list(policy.steps) if policy else [{"targets": ["team_lead"], "channels": ["email"]}]
        )
        level = 1 + sum(
            1
            for e in await repository.of_task(session, task.id)
            if e.status == EscalationStatus.FIRED
        )
        rows = await _schedule(
            session,
            task,
            run_id=uuid.uuid4(),
            policy=policy,
            steps=[{**steps[min(level, len(steps)) - 1], "delay_minutes": 0}],
            trigger="manual",
            sla_type=None,
            start=now,
            now=now,
        )
        step = rows[0]
        step.level = level
    step.fire_at = now
    if reason:
        step.reason = reason
    await fire(session, step, task, now, actor)
    return step


# --- policies -----------------------------------------------------------------------------


def _dump(data: PolicyCreate | PolicyUpdate) -> dict[str, Any]:
    fields = data.model_dump(exclude_unset=True, mode="json")
    if data.conditions is not None and "conditions" in fields:
        fields["conditions"] = data.conditions.given()
    return fields


def policy_state(policy: EscalationPolicy) -> dict[str, Any]:
    return to_jsonable(  # type: ignore[no-any-return]
        {
            "name": policy.name,
            "description": policy.description,
            "conditions": policy.conditions,
            "trigger": policy.trigger,
            "steps": policy.steps,
            "repeat": policy.repeat,
            "repeat_interval_minutes": policy.repeat_interval_minutes,
            "ack_timeout_minutes": policy.ack_timeout_minutes,
            "skip_if_empty": policy.skip_if_empty,
            "is_active": policy.is_active,
        }
    )


POLICIES = Entity(
    ENTITY,
    EscalationPolicy,
    policy_state,
    title="An escalation policy",
    named=repository.policy_named,
)


async def get_policy(session: AsyncSession, policy_id: uuid.UUID) -> EscalationPolicy:
    return await POLICIES.get(session, policy_id)


async def create_policy(
    session: AsyncSession, actor: Principal, data: PolicyCreate, now: datetime
) -> EscalationPolicy:
    await POLICIES.check_name(session, data.name)
    policy = EscalationPolicy(id=uuid.uuid4(), created_at=now, updated_at=now, **_dump(data))
    return await POLICIES.create(session, actor, policy, now)


async def update_policy(
    session: AsyncSession, actor: Principal, policy_id: uuid.UUID, data: PolicyUpdate, now: datetime
) -> EscalationPolicy:
    policy = await get_policy(session, policy_id)
    patch_fields(data, nullable={"description", "repeat_interval_minutes", "ack_timeout_minutes"})
    fields = _dump(data)
    if fields.get("name"):
        await POLICIES.check_name(session, fields["name"], current=policy.name)
    before = policy_state(policy)
    for key, value in fields.items():
        setattr(policy, key, value)
    POLICIES.updated(session, actor, policy, before, now)
    return policy


async def delete_policy(
    session: AsyncSession, actor: Principal, policy_id: uuid.UUID, now: datetime
) -> None:
    """Pending steps of its runs stay planned (they name the policy they came from)."""
    await POLICIES.delete(session, actor, policy_id, now)


# Reads with no rule beyond their query: the repository's functions, as this service's API
# (endpoints call services only).
all_policies = repository.all_policies
of_task = repository.of_task
search_events = repository.search_events
