"""Task rules: who may do what to which task, the status machine, SLA targets, audit + outbox.

Every mutation goes through :func:`_mutate`: load the row (locked on PostgreSQL), check
the caller's reach on it, check `If-Match`, apply the transition, then write the audit row
and the outbox event in the same unit of work.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from opsflow.auth.permissions import Permission, check_row, require_reach
from opsflow.auth.principal import Principal
from opsflow.context import AppContext
from opsflow.db import after_commit
from opsflow.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from opsflow.escalation import repository as escalation_repository
from opsflow.escalation import service as escalation_service
from opsflow.events.changes import record_change
from opsflow.kit.changes import field_changes
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.enums import TaskStatus, TaskType
from opsflow.models.escalation import EscalationEvent
from opsflow.models.sla import SlaClock
from opsflow.models.task import Task
from opsflow.models.team import Team
from opsflow.models.user import User
from opsflow.sla import repository as sla_repository
from opsflow.sla import service as sla_service
from opsflow.tasks import lifecycle, reads, repository
from opsflow.tasks.lifecycle import Action
from opsflow.tasks.schemas import (
    TaskCreate,
    TaskUpdate,
)
from opsflow.tasks.values import (
    ACTION_NAMES,
    SELECTOR_FIELDS,
    SOURCE_REQUEST,
    ExternalRef,
    change_payload,
    event_type_of,
    new_task_values,
    task_state,
)
from opsflow.tasks.values import targets as _targets
from opsflow.users import repository as users_repo

__all__ = [
    "SELECTOR_FIELDS",
    "SOURCE_REQUEST",
    "ExternalRef",
    "task_state",
]


def _record(
    session: AsyncSession,
    actor: Principal,
    task: Task,
    action: str,
    now: datetime,
    *,
    event_payload: dict[str, Any] | None = None,
    **audit_fields: Any,
) -> None:
    record_change(
        session,
        actor,
        entity_type="task",
        entity_id=task.id,
        action=action,
        event_type=event_type_of(action),
        payload=change_payload(actor, task, event_payload),
        now=now,
        **audit_fields,
    )


async def _active_user(session: AsyncSession, user_id: uuid.UUID, field: str) -> User:
    user = await users_repo.get(session, user_id)
    if user is None or not user.is_active:
        raise ValidationFailed(details=[{"field": field, "message": f"no active user {user_id}"}])
    return user


async def _check_team(session: AsyncSession, team_id: uuid.UUID) -> None:
    team = await session.get(Team, team_id)
    if team is None or not team.is_active:
        raise ValidationFailed(
            details=[{"field": "team_id", "message": f"no active team {team_id}"}]
        )


async def create_task(
    session: AsyncSession,
    ctx: AppContext,
    actor: Principal,
    data: TaskCreate,
    external: ExternalRef | None = None,
    catalog: sla_service.PolicyCatalog | None = None,
    *,
    deferred_clocks: list[SlaClock] | None = None,
) -> Task:
    """Create a task. Batch callers pass the policy `catalog` they loaded once, and may write
    many tasks with one flush: given `deferred_clocks`, nothing is flushed and the new clocks
    are appended there, to be added after the tasks are flushed."""
    permission = (
        Permission.INCIDENT_DECLARE
        if data.task_type is TaskType.INCIDENT
        else Permission.TASK_CREATE
    )
    require_reach(actor, permission)
    now = ctx.clock.now()
    assignee = (
        await _active_user(session, data.assigned_to, "assigned_to") if data.assigned_to else None
    )
    extra = [u for u in dict.fromkeys(data.additional_assignees) if u != data.assigned_to]
    for index, user_id in enumerate(extra):
        await _active_user(session, user_id, f"additional_assignees[{index}]")
    team_id = data.team_id
    if team_id is not None:
        await _check_team(session, team_id)
    else:
        team_id = assignee.team_id if assignee else actor.team_id

    if catalog is None:
        catalog = await ctx.sla_policies.get(session)
    policy = catalog.resolve(data.task_type.value, data.priority.value, data.customer_tier.value)
    task = Task(**new_task_values(actor, data, external, policy, assignee, team_id, now))
    # The clocks set the task's deadlines before its INSERT. Tasks are written before their
    # clocks: the unit of work does not order unrelated tables by their foreign keys.
    clocks = sla_service.new_clocks(task, now, policy)
    session.add(task)
    if deferred_clocks is None:
        await session.flush()
        session.add_all(clocks)
        await session.flush()
        sla_repository.remember_clocks(session, task.id, clocks)
    else:
        deferred_clocks.extend(clocks)
    if extra:
        await repository.set_additional_assignees(session, task.id, extra, now)
    else:
        repository.remember_no_assignees(session, task.id)
    _record(session, actor, task, "TASK_CREATED", now, new_state=task_state(task, extra))
    return task


async def get_task(session: AsyncSession, task_id: uuid.UUID, *, for_update: bool = False) -> Task:
    task = await repository.get(session, task_id, for_update=for_update)
    if task is None:
        raise NotFound("task", task_id)
    return task


async def task_page(
    session: AsyncSession, task_id: uuid.UUID, *, with_audit_trail: bool
) -> reads.TaskPage:
    """The task and what its page shows, or 404."""
    page = await reads.task_page(session, task_id, with_audit_trail=with_audit_trail)
    if page is None:
        raise NotFound("task", task_id)
    return page


async def escalate(
    session: AsyncSession, task_id: uuid.UUID, actor: Principal, now: datetime, reason: str | None
) -> EscalationEvent:
    """Fire the task's next escalation level now, for a caller who may update the task (a
    team lead: a task of their team; a developer: a task assigned to them)."""
    task = await get_task(session, task_id, for_update=True)
    assignees = [task.assigned_to] if task.assigned_to else []
    check_row(actor, Permission.TASK_UPDATE, team_id=task.team_id, assignee_ids=assignees)
    return await escalation_service.escalate_now(session, task, actor, now, reason)


def _check_version(task: Task, if_match: int | None) -> None:
    if if_match is not None and if_match != task.version:
        raise PreconditionFailed(
            f"Task is at version {task.version}, not {if_match}",
            current_version=task.version,
        )


@dataclass
class Preloaded:
    """What a change reads about a task, read and locked for many tasks at once by a caller
    that changes them in one transaction (ticket batches): one query per kind instead of
    one per task. Each task's entry serves its first change only (`take`), later changes of
    the same task read afresh what the first one may have changed."""

    tasks: dict[uuid.UUID, Task]
    extra_assignees: dict[uuid.UUID, list[uuid.UUID]]
    clocks: dict[uuid.UUID, dict[str, SlaClock]]
    pending_steps: dict[uuid.UUID, list[EscalationEvent]]

    def take(
        self, task_id: uuid.UUID
    ) -> tuple[Task, list[uuid.UUID], dict[str, SlaClock], list[EscalationEvent]] | None:
        task = self.tasks.pop(task_id, None)
        if task is None:
            return None
        return (
            task,
            self.extra_assignees.pop(task_id, []),
            self.clocks.pop(task_id, {}),
            self.pending_steps.pop(task_id, []),
        )

    def put_back(
        self,
        task: Task,
        extra: list[uuid.UUID],
        clocks: dict[str, SlaClock] | None,
        pending: list[EscalationEvent] | None,
    ) -> None:
        """Keep a task's entry for its next deferred change (nothing was flushed, so a read
        would give the same objects), unless the change may have added rows the entry does
        not hold: clocks created for a task without any, steps planned on acknowledgement."""
        if clocks and pending is not None and task.acknowledged_at is None:
            self.tasks[task.id] = task
            self.extra_assignees[task.id] = extra
            self.clocks[task.id] = clocks
            self.pending_steps[task.id] = [p for p in pending if p.status == "PENDING"]


async def preload(session: AsyncSession, task_ids: Collection[uuid.UUID]) -> Preloaded:
    """Lock these tasks (in id order, so concurrent batches queue instead of deadlocking),
    their clocks and pending escalation steps, and read their additional assignees."""
    ids = sorted(set(task_ids))
    tasks = await repository.lock_many(session, ids)
    return Preloaded(
        tasks=tasks,
        extra_assignees=await repository.additional_assignees(session, ids),
        clocks=await sla_repository.clocks_for_tasks(session, ids, for_update=True),
        pending_steps=await escalation_repository.pending_of_tasks(session, ids),
    )


@dataclass(frozen=True)
class TaskCommand:
    """Who acts on which task, within which unit of work, expecting which version."""

    session: AsyncSession
    ctx: AppContext
    actor: Principal
    task_id: uuid.UUID
    if_match: int | None = None
    preloaded: Preloaded | None = None
    # The SLA policies, when the caller loaded them for many commands.
    catalog: sla_service.PolicyCatalog | None = None
    # A batch caller that writes many changed tasks at once (tasks.bulk.write_changed): the
    # change steps the version in memory instead of flushing the task's UPDATE. Only for
    # tasks locked in this transaction (preloaded), so the version cannot move meanwhile.
    deferred: bool = False
    # The caller answers with the task as read_views shows it (an API request): its people
    # are read with what the change reads, instead of by the answer in one more statement.
    answered: bool = False


async def _mutate(
    cmd: TaskCommand,
    action: Action,
    permission: Permission,
    apply: Callable[[Task, datetime], sla_service.ResolvedPolicy | None],
    *,
    extra_assignees: list[uuid.UUID] | None = None,
    reason: str | None = None,
) -> Task:
    session, actor = cmd.session, cmd.actor
    given = cmd.preloaded.take(cmd.task_id) if cmd.preloaded is not None else None
    clocks: dict[str, SlaClock] | None = None
    pending: list[EscalationEvent] | None = None
    if given is not None:
        task, current_extra, clocks, pending = given
    else:
        locked = await repository.lock_with_clocks(session, cmd.task_id)
        if locked is not None:
            task, clocks = locked
        else:
            task = await get_task(session, cmd.task_id, for_update=True)
        if cmd.answered:
            # The people the answer shows, read with the additional assignees in one go.
            extras, _ = await repository.people(session, [task])
        else:
            extras = await repository.additional_assignees(session, [task.id])
        current_extra = extras.get(task.id, [])
    assignees = [task.assigned_to, *current_extra] if task.assigned_to else current_extra
    check_row(actor, permission, team_id=task.team_id, assignee_ids=assignees)
    _check_version(task, cmd.if_match)
    new_status = lifecycle.next_status(TaskStatus(task.status), action)
    now = cmd.ctx.clock.now()
    before = task_state(task, current_extra)
    policy = apply(task, now)
    await sla_service.on_task_changed(session, task, now, actor.name, policy, clocks)
    await escalation_service.on_task_changed(session, task, now, pending)
    if new_status is TaskStatus.ASSIGNED and task.assigned_to is None:
        # ASSIGNED needs an assignee: an API client acknowledging leaves the task CREATED.
        new_status = TaskStatus.CREATED
    task.status = new_status.value
    if extra_assignees is not None:
        await repository.set_additional_assignees(session, task.id, extra_assignees, now)
        current_extra = extra_assignees
    after = task_state(task, current_extra)
    changes = field_changes(before, after)
    if not changes:
        return task
    task.updated_at = now
    # Force the UPDATE (and so the version bump) even when only the assignee rows changed
    # within the same clock instant.
    flag_modified(task, "updated_at")
    if cmd.deferred:
        task.version = task.version + 1  # the UPDATE that follows writes this version
        if cmd.preloaded is not None and given is not None:
            cmd.preloaded.put_back(task, current_extra, clocks, pending)
    else:
        await session.flush()
    record_action(session, actor, task, action, now, (before, after), changes, reason)
    return task


def record_action(
    session: AsyncSession,
    actor: Principal,
    task: Task,
    action: Action,
    now: datetime,
    states: tuple[dict[str, Any], dict[str, Any]],
    changes: dict[str, Any],
    reason: str | None,
) -> None:
    """The audit row and outbox event of one action on a task (its states before and after)."""
    before, after = states
    _record(
        session,
        actor,
        task,
        ACTION_NAMES[action],
        now,
        event_payload={"changes": changes, **({"reason": reason} if reason is not None else {})},
        changes=changes,
        previous_state={"status": before["status"]},
        new_state={"status": after["status"]},
        metadata={"reason": reason} if reason else None,
    )


def _set_targets(task: Task, start_minutes: int, resolve_minutes: int) -> None:
    # The clocks reschedule from these (sla.service.on_task_changed), pauses included.
    task.start_sla_minutes = start_minutes
    task.resolve_sla_minutes = resolve_minutes


_PLAIN_FIELDS = (
    "title",
    "description",
    "task_type",
    "priority",
    "team_id",
    "service",
    "customer_tier",
)


async def update_task(cmd: TaskCommand, data: TaskUpdate) -> Task:
    fields = data.model_dump(exclude_unset=True)
    if fields.get("team_id") is not None:
        await _check_team(cmd.session, fields["team_id"])
    catalog = None
    if SELECTOR_FIELDS & fields.keys():
        catalog = cmd.catalog or await cmd.ctx.sla_policies.get(cmd.session)

    def apply(task: Task, _now: datetime) -> sla_service.ResolvedPolicy | None:
        selector = (task.task_type, task.priority, task.customer_tier)
        for name in _PLAIN_FIELDS:
            if name in fields:
                value = fields[name]
                setattr(task, name, value.value if hasattr(value, "value") else value)
        if "tags" in fields:
            task.tags = list(dict.fromkeys(fields["tags"]))
        if "metadata" in fields:
            task.metadata_ = to_jsonable(fields["metadata"])
        if "start_sla_minutes" in fields:
            task.start_sla_source = SOURCE_REQUEST
        if "resolve_sla_minutes" in fields:
            task.resolve_sla_source = SOURCE_REQUEST
        given_start = fields.get("start_sla_minutes", task.start_sla_minutes)
        given_resolve = fields.get("resolve_sla_minutes", task.resolve_sla_minutes)
        # A new priority, tier or type may match another policy: its targets replace the
        # defaulted ones, its thresholds and calendar the clocks' (on_task_changed).
        policy = None
        defaults: sla_service.ResolvedPolicy | tuple[int, int]
        if catalog is not None and selector != (task.task_type, task.priority, task.customer_tier):
            policy = catalog.resolve(task.task_type, task.priority, task.customer_tier)
            task.sla_policy_id, task.sla_policy_name = policy.policy_id, policy.policy_name
            for kind in ("start", "resolve"):
                if getattr(task, f"{kind}_sla_source") != SOURCE_REQUEST:
                    setattr(task, f"{kind}_sla_source", policy.source)
            defaults = policy
        else:
            defaults = (task.start_sla_minutes, task.resolve_sla_minutes)
        start, resolve = _targets(
            defaults,
            given_start if task.start_sla_source == SOURCE_REQUEST else None,
            given_resolve if task.resolve_sla_source == SOURCE_REQUEST else None,
        )
        _set_targets(task, start, resolve)
        return policy

    return await _mutate(cmd, Action.UPDATE, Permission.TASK_UPDATE, apply)


async def assign_task(
    cmd: TaskCommand, assigned_to: uuid.UUID, additional: list[uuid.UUID] | None
) -> Task:
    await _active_user(cmd.session, assigned_to, "assigned_to")
    extra = None
    if additional is not None:
        extra = [u for u in dict.fromkeys(additional) if u != assigned_to]
        for index, user_id in enumerate(extra):
            await _active_user(cmd.session, user_id, f"additional_assignees[{index}]")

    def apply(task: Task, now: datetime) -> None:
        if task.assigned_to != assigned_to:
            task.assigned_to = assigned_to
            task.assigned_at = now

    return await _mutate(cmd, Action.ASSIGN, Permission.TASK_UPDATE, apply, extra_assignees=extra)


def _take_if_unassigned(actor: Principal, task: Task, now: datetime) -> None:
    if task.assigned_to is None and actor.user_id is not None:
        task.assigned_to = actor.user_id
        task.assigned_at = now


async def acknowledge_task(cmd: TaskCommand) -> Task:
    def apply(task: Task, now: datetime) -> None:
        if task.acknowledged_at is not None:
            raise Conflict(
                "Task is already acknowledged", acknowledged_at=to_jsonable(task.acknowledged_at)
            )
        _take_if_unassigned(cmd.actor, task, now)
        task.acknowledged_at = now
        task.acknowledged_by = cmd.actor.user_id

    return await _mutate(cmd, Action.ACKNOWLEDGE, Permission.TASK_PROGRESS, apply)


async def start_task(cmd: TaskCommand) -> Task:
    def apply(task: Task, now: datetime) -> None:
        _take_if_unassigned(cmd.actor, task, now)
        task.started_at = now
        task.snoozed_until = None

    return await _mutate(cmd, Action.START, Permission.TASK_PROGRESS, apply)


async def block_task(cmd: TaskCommand, reason: str | None) -> Task:
    def apply(task: Task, now: datetime) -> None:
        task.blocked_at = now
        task.blocked_reason = reason

    return await _mutate(cmd, Action.BLOCK, Permission.TASK_PROGRESS, apply, reason=reason)


async def unblock_task(cmd: TaskCommand, reason: str | None) -> Task:
    def apply(task: Task, _now: datetime) -> None:
        task.blocked_at = None
        task.blocked_reason = None

    return await _mutate(cmd, Action.UNBLOCK, Permission.TASK_PROGRESS, apply, reason=reason)


async def complete_task(cmd: TaskCommand, resolution_notes: str | None) -> Task:
    def apply(task: Task, now: datetime) -> None:
        histogram = cmd.ctx.metrics.task_completion.labels(task.task_type, task.priority)
        took = (now - task.created_at).total_seconds()
        after_commit(cmd.session, lambda: histogram.observe(took))
        task.completed_at = now
        task.blocked_at = None
        task.blocked_reason = None
        task.snoozed_until = None
        task.sla_paused_at = None
        task.sla_pause_reason = None
        if resolution_notes is not None:
            task.resolution_notes = resolution_notes

    return await _mutate(cmd, Action.COMPLETE, Permission.TASK_PROGRESS, apply)


async def reopen_task(cmd: TaskCommand, reason: str | None) -> Task:
    """Reopen a completed task. An alert's incident reopened while a newer incident of the
    same alert is open gives the alert up (its dedup key goes, noted in its metadata):
    the alert's events keep applying to the open incident, one per key."""
    current = await get_task(cmd.session, cmd.task_id)
    owner = None
    if current.dedup_key is not None and current.completed_at is not None:
        owner = await repository.open_with_dedup_key(
            cmd.session, current.source, current.dedup_key, current.id
        )

    def apply(task: Task, _now: datetime) -> None:
        # The RESOLVE clock continues with the time it had used: the time spent completed
        # counts as a pause (sla.service.on_task_changed).
        task.completed_at = None
        if owner is not None and task.dedup_key is not None:
            released = {"dedup_key": task.dedup_key, "open_incident": str(owner.id)}
            task.metadata_ = {**(task.metadata_ or {}), "alert_released": released}
            task.dedup_key = None

    return await _mutate(cmd, Action.REOPEN, Permission.TASK_PROGRESS, apply, reason=reason)


async def snooze_task(
    cmd: TaskCommand, until: datetime | None, minutes: int | None, reason: str | None
) -> Task:
    now = cmd.ctx.clock.now()
    target = until if until is not None else now + timedelta(minutes=minutes or 0)
    if target <= now:
        raise ValidationFailed(details=[{"field": "until", "message": "must be in the future"}])
    if target > now + timedelta(days=7):
        raise ValidationFailed(details=[{"field": "until", "message": "at most 7 days ahead"}])

    def apply(task: Task, _now: datetime) -> None:
        task.snoozed_until = target

    return await _mutate(cmd, Action.SNOOZE, Permission.TASK_SNOOZE, apply, reason=reason)


async def pause_sla(cmd: TaskCommand, reason: str | None) -> Task:
    def apply(task: Task, now: datetime) -> None:
        if task.sla_paused_at is not None:
            raise Conflict(
                "The SLA clocks are already paused", paused_at=to_jsonable(task.sla_paused_at)
            )
        if task.completed_at is not None:
            raise Conflict("A completed task has no running SLA clock")
        task.sla_paused_at = now
        task.sla_pause_reason = reason

    return await _mutate(cmd, Action.PAUSE_SLA, Permission.TASK_SNOOZE, apply, reason=reason)


async def resume_sla(cmd: TaskCommand, reason: str | None) -> Task:
    def apply(task: Task, _now: datetime) -> None:
        if task.sla_paused_at is None:
            raise Conflict("The SLA clocks are not paused")
        task.sla_paused_at = None
        task.sla_pause_reason = None

    return await _mutate(cmd, Action.RESUME_SLA, Permission.TASK_SNOOZE, apply, reason=reason)


async def cancel_task(cmd: TaskCommand, reason: str | None) -> Task:
    def apply(task: Task, now: datetime) -> None:
        task.cancelled_at = now
        task.deleted_at = now
        task.snoozed_until = None
        task.sla_paused_at = None
        task.sla_pause_reason = None

    return await _mutate(cmd, Action.CANCEL, Permission.TASK_CANCEL, apply, reason=reason)


# Reads with no rule beyond their query: the repository's functions, as this service's API
# (endpoints call services only).
search = reads.search
