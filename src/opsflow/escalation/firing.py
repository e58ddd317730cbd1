"""Firing a planned escalation step: resolve its people, record it, or cancel or skip it.

Shared by the escalation engine (due steps) and the service (``POST /tasks/{id}/escalate``).
A step leaves PENDING in the transaction that fires it, so it cannot fire twice. Firing
writes an ESCALATION SLA event, an audit row and the outbox event `escalation.fired` that
the notification rules turn into messages.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.principal import Principal
from opsflow.escalation import repository
from opsflow.events.changes import record_change
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.enums import EscalationStatus
from opsflow.models.escalation import EscalationEvent
from opsflow.models.sla import SlaEvent
from opsflow.models.task import Task
from opsflow.models.user import User
from opsflow.tasks.lifecycle import OPEN
from opsflow.tasks.summary import task_summary

# The steps planned when no policy handles a START breach carry this name.
DEFAULT_POLICY_NAME = "default: team lead after START breach"
# The escalation levels of an SLA policy are planned under "sla policy: <its name>".
SLA_LEVELS_PREFIX = "sla policy: "
ENGINE_ACTOR = Principal.system("escalation-engine")


def cancel(step: EscalationEvent, reason: str, now: datetime) -> None:
    step.status = EscalationStatus.CANCELLED
    step.reason = reason
    step.updated_at = now


async def resolve_targets(session: AsyncSession, task: Task, targets: list[str]) -> list[User]:
    """The active users the targets name for this task, each once, in target order."""
    found: dict[uuid.UUID, User] = {}
    team = await repository.team(session, task.team_id)
    for target in targets:
        users: list[User] = []
        if target == "assignee":
            ids = [task.assigned_to] if task.assigned_to else []
            ids += await repository.additional_assignees(session, task.id)
            users = await repository.active_users(session, ids=ids) if ids else []
        elif target == "team" and team is not None:
            users = await repository.active_users(session, team_id=team.id)
        elif target == "team_lead" and team is not None and team.lead_id is not None:
            users = await repository.active_users(session, ids=[team.lead_id])
        elif target == "manager":
            users = (
                await repository.active_users(session, team_id=task.team_id, role="manager")
                if task.team_id
                else []
            )
            users = users or await repository.active_users(session, role="manager")
        elif target.startswith("role:"):
            role = target[5:]
            users = await repository.active_users(session, team_id=task.team_id, role=role)
            users = users or await repository.active_users(session, role=role)
        elif target.startswith("user:"):
            users = await repository.active_users(session, ids=[uuid.UUID(target[5:])])
        for user in users:
            found.setdefault(user.id, user)
    return list(found.values())


async def fire(
    session: AsyncSession, step: EscalationEvent, task: Task, now: datetime, actor: Principal
) -> None:
    """Fire one pending step: resolve its people, record it (ESCALATION SLA event, audit,
    outbox `escalation.fired` for the notification rules)."""
    if task.status not in OPEN:
        cancel(step, "task closed", now)
        return
    users = await resolve_targets(session, task, list(step.targets))
    built_in = step.policy_name == DEFAULT_POLICY_NAME or step.policy_name.startswith(
        SLA_LEVELS_PREFIX
    )
    if not users and built_in:
        # A built-in run (the default, an SLA policy's levels) that reaches nobody (a team
        # without a lead, no manager) reaches the administrators instead.
        users = await resolve_targets(session, task, ["role:admin"])
    policy = await repository.get_policy(session, step.policy_id) if step.policy_id else None
    if not users and policy is not None and policy.skip_if_empty:
        _reached(step, users, now)
        step.status = EscalationStatus.SKIPPED
        step.reason = "no recipients"
        await _pull_forward(session, step, now)
        return
    record_fired(session, step, task, users, now, actor)


def _reached(step: EscalationEvent, users: list[User], now: datetime) -> None:
    step.fired_at = now
    step.updated_at = now
    step.recipients = [
        {"id": str(u.id), "username": u.username, "email": u.email, "role": u.role} for u in users
    ]


def record_fired(
    session: AsyncSession,
    step: EscalationEvent,
    task: Task,
    users: list[User],
    now: datetime,
    actor: Principal,
) -> SlaEvent:
    """A step fired to these people: the step's row, its ESCALATION SLA event, the audit row
    and the `escalation.fired` outbox event (no reads: the caller resolved the people)."""
    _reached(step, users, now)
    step.status = EscalationStatus.FIRED
    deadline = task.start_deadline if step.sla_type == "START" else task.resolve_deadline
    sla_event = SlaEvent(
        id=uuid.uuid4(),
        task_id=task.id,
        clock_id=None,
        event_type="ESCALATION",
        severity="CRITICAL" if step.trigger == "breach" else "WARNING",
        sla_type=step.sla_type or "RESOLVE",
        expected_deadline=deadline,
        due_at=step.fire_at,
        triggered_at=now,
        actual_time=now,
        delay_minutes=int(max((now - step.fire_at).total_seconds(), 0) // 60),
        notify=True,
        escalated_to=users[0].id if users else None,
        escalation_level=step.level,
        metadata_=to_jsonable(
            {
                "escalation_event_id": step.id,
                "policy": step.policy_name,
                "trigger": step.trigger,
                "recipients": step.recipients,
                "channels": step.channels,
            }
        ),
    )
    session.add(sla_event)
    record_change(
        session,
        actor,
        entity_type="task",
        entity_id=task.id,
        action="ESCALATION_FIRED",
        event_type="escalation.fired",
        payload={
            "escalation_event_id": step.id,
            "sla_event_id": sla_event.id,
            "policy": step.policy_name,
            "trigger": step.trigger,
            "sla_type": step.sla_type,
            "level": step.level,
            "cycle": step.cycle,
            "recipients": step.recipients,
            "channels": step.channels,
            "message": step.message,
            "task": task_summary(task),
        },
        now=now,
        metadata={
            "escalation_event_id": str(step.id),
            "level": step.level,
            "recipients": [r["username"] for r in step.recipients],
        },
    )
    return sla_event


async def _pull_forward(session: AsyncSession, skipped: EscalationEvent, now: datetime) -> None:
    """skip_if_empty: the run moves on at once instead of waiting out the next delay."""
    later = [
        s
        for s in await repository.pending_of_task(session, skipped.task_id)
        if s.run_id == skipped.run_id
        and s.id != skipped.id
        and s.status == EscalationStatus.PENDING
    ]
    if not later:
        return
    shift = min(s.fire_at for s in later) - now
    if shift > timedelta(0):
        for s in later:
            s.fire_at -= shift
            s.updated_at = now
