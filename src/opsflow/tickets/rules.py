"""The task rules as a ticket meets them: the external status mapped onto the status
machine, references, what a newer version changes, one ticket applied alone."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.principal import Principal
from opsflow.context import AppContext
from opsflow.db import attempt
from opsflow.errors import (
    AppError,
)
from opsflow.models.enums import Priority, TaskStatus
from opsflow.models.task import Task
from opsflow.models.team import Team
from opsflow.models.user import User
from opsflow.sla import service as sla_service
from opsflow.tasks import service as tasks
from opsflow.tasks.lifecycle import Action
from opsflow.tasks.schemas import TaskCreate, TaskUpdate
from opsflow.tickets.schemas import (
    ItemResult,
    Outcome,
    TicketIn,
    TicketStatus,
)

S = TaskStatus


_TO_OPEN = {S.COMPLETED: [Action.REOPEN], S.BLOCKED: [Action.UNBLOCK]}


_TO_IN_PROGRESS = {
    S.CREATED: [Action.START],
    S.ASSIGNED: [Action.START],
    S.BLOCKED: [Action.UNBLOCK],
    S.COMPLETED: [Action.REOPEN],
}


_TO_BLOCKED = {
    S.CREATED: [Action.START, Action.BLOCK],
    S.ASSIGNED: [Action.START, Action.BLOCK],
    S.IN_PROGRESS: [Action.BLOCK],
    S.COMPLETED: [Action.REOPEN, Action.BLOCK],
}


_TO_COMPLETED = {
    S.CREATED: [Action.START, Action.COMPLETE],
    S.ASSIGNED: [Action.START, Action.COMPLETE],
    S.IN_PROGRESS: [Action.COMPLETE],
    S.BLOCKED: [Action.COMPLETE],
}


# The actions that bring a task from its status to the one an external status means.
# `open` after work started leaves the task IN_PROGRESS (the machine has no way back);
# `pending`/`on_hold` block the task, so a policy with pause_on_blocked pauses its SLA.
STATUS_PATHS: dict[TicketStatus, dict[TaskStatus, list[Action]]] = {
    TicketStatus.OPEN: _TO_OPEN,
    TicketStatus.IN_PROGRESS: _TO_IN_PROGRESS,
    TicketStatus.PENDING: _TO_BLOCKED,
    TicketStatus.ON_HOLD: _TO_BLOCKED,
    TicketStatus.RESOLVED: _TO_COMPLETED,
    TicketStatus.CLOSED: _TO_COMPLETED,
}


_UPDATABLE = ("title", "description", "task_type", "priority", "customer_tier", "service")


def digest(item: TicketIn) -> str:
    content = item.model_dump(mode="json", exclude={"updated_at"}, exclude_none=True)
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class References:
    users: dict[str, User]
    teams: dict[str, Team]

    def user(self, login: str) -> User | None:
        user = self.users.get(login.strip().lower())
        return user if user is not None and user.is_active else None

    def team(self, name: str) -> Team | None:
        team = self.teams.get(name.strip().lower())
        if team is None:
            try:
                wanted = uuid.UUID(name.strip())
            except ValueError:
                return None
            team = next((t for t in self.teams.values() if t.id == wanted), None)
        return team if team is not None and team.is_active else None


class Invalid(AppError):
    """An item that cannot be applied; it is reported, the batch goes on."""

    status_code = 400
    code = "VALIDATION_ERROR"


def invalid(index: int, external_id: str | None, error: AppError) -> ItemResult:
    return ItemResult(
        index=index,
        external_id=external_id,
        outcome=Outcome.INVALID,
        reason=error.message,
        details=error.details or [],
    )


def applied(index: int, task: Task, outcome: Outcome, reason: str | None = None) -> ItemResult:
    return ItemResult(
        index=index,
        external_id=task.external_id,
        outcome=outcome,
        task_id=task.id,
        status=TaskStatus(task.status),
        reason=reason,
    )


@dataclass(frozen=True)
class Batch:
    session: AsyncSession
    ctx: AppContext
    writer: Principal
    source: str
    refs: References
    catalog: sla_service.PolicyCatalog
    # The tasks the batch may change, locked with what a change reads, all at once.
    preloaded: tasks.Preloaded | None = None
    # Set-based: the task commands step versions in memory, written by bulk.write_changed.
    deferred: bool = False


async def apply_one(run: Batch, index: int, item: TicketIn, known: dict[str, Task]) -> ItemResult:
    task = known.get(item.external_id)
    if task is not None and fields_only(run, item, task):
        try:
            outcome, reason = await update(run, item, task)
        except AppError as exc:
            return invalid(index, item.external_id, exc)
        return applied(index, task, outcome, reason)

    async def apply() -> tuple[Task, Outcome, str | None]:
        if task is None:
            created = await create(run, item)
            known[item.external_id] = created
            return created, Outcome.CREATED, None
        return (task, *await update(run, item, task))

    result = await attempt(run.session, apply, expected=(AppError,))
    if isinstance(result, AppError):
        # Invalid references, a refused transition, a conflict: this item only (its
        # savepoint rolled back).
        return invalid(index, item.external_id, result)
    assert not isinstance(result, Exception)
    done, outcome, reason = result
    return applied(index, done, outcome, reason)


def fields_only(run: Batch, item: TicketIn, task: Task) -> bool:
    """Whether applying the item changes at most the task's plain fields: no status move, no
    new assignee, no new SLA policy. Such a change is one task update whose every check
    (references, permission, status) comes before it writes anything, so it needs no
    savepoint: it either fails untouched or applies whole."""
    if task.deleted_at is not None or STATUS_PATHS[item.status].get(TaskStatus(task.status)):
        return False
    if item.assigned_to is not None:
        assignee = run.refs.user(item.assigned_to)
        if assignee is None or assignee.id != task.assigned_to:
            return False
    team = run.refs.team(item.team) if item.team else None
    return not tasks.SELECTOR_FIELDS & changed_fields(item, task, team).keys()


def references(run: Batch, item: TicketIn) -> tuple[User | None, Team | None]:
    assignee = run.refs.user(item.assigned_to) if item.assigned_to else None
    if item.assigned_to and assignee is None:
        raise Invalid(
            f"no active user {item.assigned_to!r}",
            details=[
                {"field": "assigned_to", "message": "no active user with this username or e-mail"}
            ],
        )
    team = run.refs.team(item.team) if item.team else None
    if item.team and team is None:
        raise Invalid(
            f"no active team {item.team!r}",
            details=[{"field": "team", "message": "no active team with this name or id"}],
        )
    return assignee, team


def task_create(item: TicketIn, assignee: User | None, team: Team | None) -> TaskCreate:
    return TaskCreate(
        title=item.title,
        description=item.description,
        task_type=item.task_type,
        priority=item.priority or Priority.MEDIUM,
        assigned_to=assignee.id if assignee else None,
        team_id=team.id if team else None,
        service=item.service,
        customer_tier=item.customer_tier or "STANDARD",
        tags=item.tags or [],
        metadata=item.metadata or {},
    )


async def create(run: Batch, item: TicketIn) -> Task:
    assignee, team = references(run, item)
    data = task_create(item, assignee, team)
    origin = tasks.ExternalRef(run.source, item.external_id, item.updated_at, digest(item))
    task = await tasks.create_task(
        run.session,
        run.ctx,
        run.writer,
        data,
        origin,
        run.catalog,
    )
    await move_status(run, task, item)
    return task


async def update(run: Batch, item: TicketIn, task: Task) -> tuple[Outcome, str | None]:
    if task.deleted_at is not None:
        raise Invalid("the task of this ticket was cancelled in OpsFlow")
    stored = task.external_updated_at
    if item.updated_at is not None and stored is not None:
        if item.updated_at < stored:
            return Outcome.STALE, f"older than the applied version ({stored.isoformat()})"
        if item.updated_at == stored:
            return Outcome.UNCHANGED, None
    content = digest(item)
    if item.updated_at is None and content == task.external_digest:
        return Outcome.UNCHANGED, None
    assignee, team = references(run, item)
    version = task.version
    cmd = command(run, task)
    fields = changed_fields(item, task, team)
    new_assignee = assignee is not None and assignee.id != task.assigned_to
    moves = STATUS_PATHS[item.status].get(TaskStatus(task.status))
    # Bookkeeping of the applied version (not a change of the task: no audit row). When the
    # fields are the only change, it rides in the same UPDATE; otherwise it follows.
    together = bool(fields) and not new_assignee and not moves
    if together:
        applied_digest = task.external_digest
        task.external_updated_at = item.updated_at or stored
        task.external_digest = content
        try:
            await tasks.update_task(cmd, TaskUpdate(**fields))
        except AppError:
            # Refused before it wrote anything (see fields_only): nor is the version applied.
            task.external_updated_at, task.external_digest = stored, applied_digest
            raise
    elif fields:
        await tasks.update_task(cmd, TaskUpdate(**fields))
    if assignee is not None and new_assignee:
        await tasks.assign_task(cmd, assignee.id, None)
    await move_status(run, task, item)
    if not run.deferred:
        await run.session.flush()
    changed = task.version != version
    if not together:
        task.external_updated_at = item.updated_at or stored
        task.external_digest = content
    if not changed:
        return Outcome.UNCHANGED, "nothing differed from the task"
    return Outcome.UPDATED, None


def command(run: Batch, task: Task) -> tasks.TaskCommand:
    return tasks.TaskCommand(
        run.session,
        run.ctx,
        run.writer,
        task.id,
        preloaded=run.preloaded,
        catalog=run.catalog,
        deferred=run.deferred,
    )


def changed_fields(item: TicketIn, task: Task, team: Team | None) -> dict[str, Any]:
    given = item.model_dump(include=set(_UPDATABLE), exclude_none=True)
    fields = {
        name: value
        for name, value in given.items()
        if str(getattr(value, "value", value)) != str(getattr(task, name))
    }
    if item.description is not None and item.description == task.description:
        fields.pop("description", None)
    if team is not None and team.id != task.team_id:
        fields["team_id"] = team.id
    if item.tags is not None and list(dict.fromkeys(item.tags)) != task.tags:
        fields["tags"] = item.tags
    if item.metadata is not None and item.metadata != task.metadata_:
        fields["metadata"] = item.metadata
    return fields


async def move_status(run: Batch, task: Task, item: TicketIn) -> None:
    cmd = command(run, task)
    reason = f"{item.status.value} in {run.source}"
    steps: dict[Action, Callable[[], Awaitable[Task]]] = {
        Action.START: lambda: tasks.start_task(cmd),
        Action.BLOCK: lambda: tasks.block_task(cmd, reason),
        Action.UNBLOCK: lambda: tasks.unblock_task(cmd, reason),
        Action.COMPLETE: lambda: tasks.complete_task(cmd, None),
        Action.REOPEN: lambda: tasks.reopen_task(cmd, reason),
    }
    for action in STATUS_PATHS[item.status].get(TaskStatus(task.status), []):
        await steps[action]()
