"""Ticket batches applied through the task rules, idempotently.

A ticket is identified by (source, external_id) and versioned by its ``updated_at``:

- no task yet: the ticket creates one (``created``);
- a newer ``updated_at`` applies the ticket as it now is: field changes through the task
  update rules, a new assignee through assignment, the external status through the status
  machine (``updated``; ``unchanged`` when nothing differed);
- the same ``updated_at``: ``unchanged``; an older one: ``stale``. Neither writes anything;
- a ticket without ``updated_at`` is compared by content: the same content is ``unchanged``,
  another content is applied (last write wins).

The whole batch is one transaction with a SAVEPOINT per item that could fail half-way
(new tickets that stay open and changes of plain fields only check everything before they
write, and skip it). One commit makes a 1,000-item
batch cheap and the answer honest (a 200 means every listed outcome is stored); the
savepoints let an item that fails half-way (say, a transition the status machine refuses)
roll back alone, so one bad item never rejects the others. If the commit itself fails,
nothing is stored and the sender retries the same batch, which is safe because ingestion
is idempotent.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.permissions import Permission, check_row, require_reach
from opsflow.auth.principal import Principal
from opsflow.context import AppContext
from opsflow.db import attempt
from opsflow.errors import (
    AppError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    validation_details,
)
from opsflow.events import outbox
from opsflow.models.enums import ActorType, Priority, Role, Scope, TaskStatus
from opsflow.models.task import Task
from opsflow.models.team import Team
from opsflow.models.user import User
from opsflow.sla import service as sla_service
from opsflow.tasks import bulk
from opsflow.tasks import service as tasks
from opsflow.tasks.lifecycle import Action
from opsflow.tasks.schemas import TaskCreate, TaskUpdate
from opsflow.teams import repository as teams_repo
from opsflow.tickets import repository
from opsflow.tickets.schemas import (
    MAX_BATCH,
    BatchResult,
    BatchSummary,
    ItemResult,
    Outcome,
    TicketBatch,
    TicketIn,
    TicketStatus,
)
from opsflow.users import repository as users_repo

log = structlog.get_logger("opsflow.tickets")

DEFAULT_USER_SOURCE = "manual"
CLIENT_PREFIX = "client:"  # how API clients are named as actors (auth.service)

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


def batch_source(actor: Principal, requested: str | None) -> str:
    """Where a batch's tickets come from: an API client is its own source; an admin may name
    one; other users ingest as ``manual``."""
    if actor.actor_type is ActorType.API:
        own = actor.name.removeprefix(CLIENT_PREFIX)[:64]
        if requested is not None and requested != own:
            raise Forbidden("An API client ingests under its own name as source")
        return own
    if requested is not None:
        if actor.role is not Role.ADMIN:
            raise Forbidden("Only admins may name the source of a batch")
        return requested
    return DEFAULT_USER_SOURCE


def _writer(actor: Principal) -> Principal:
    """Who the task changes are recorded as. An API client holding ``tickets:ingest`` writes
    the tasks of its own tickets; the audit names the client."""
    if actor.actor_type is ActorType.API:
        return replace(actor, scopes=actor.scopes | {Scope.TASKS_WRITE})
    return actor


def digest(item: TicketIn) -> str:
    content = item.model_dump(mode="json", exclude={"updated_at"}, exclude_none=True)
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _References:
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


class _Invalid(AppError):
    """An item that cannot be applied; it is reported, the batch goes on."""

    status_code = 400
    code = "VALIDATION_ERROR"


def _invalid(index: int, external_id: str | None, error: AppError) -> ItemResult:
    return ItemResult(
        index=index,
        external_id=external_id,
        outcome=Outcome.INVALID,
        reason=error.message,
        details=error.details or [],
    )


def _applied(index: int, task: Task, outcome: Outcome, reason: str | None = None) -> ItemResult:
    return ItemResult(
        index=index,
        external_id=task.external_id,
        outcome=outcome,
        task_id=task.id,
        status=TaskStatus(task.status),
        reason=reason,
    )


@dataclass(frozen=True)
class _Batch:
    session: AsyncSession
    ctx: AppContext
    writer: Principal
    source: str
    refs: _References
    catalog: sla_service.PolicyCatalog
    # The tasks the batch may change, locked with what a change reads, all at once.
    preloaded: tasks.Preloaded | None = None
    # Set-based: the task commands step versions in memory, written by bulk.write_changed.
    deferred: bool = False


@dataclass
class _Prepared:
    """What a batch reads before it applies anything: parsed items, references, the tasks
    its tickets already have (locked when they may change)."""

    run: _Batch
    parsed: list[TicketIn | ItemResult]
    known: dict[str, Task]


async def _prepare(
    session: AsyncSession, ctx: AppContext, actor: Principal, source: str, batch: TicketBatch
) -> _Prepared:
    parsed: list[TicketIn | ItemResult] = [
        _parse(index, raw) for index, raw in enumerate(batch.tickets)
    ]
    items = [p for p in parsed if isinstance(p, TicketIn)]
    refs = _References(
        users=await users_repo.by_logins(session, {i.assigned_to for i in items if i.assigned_to}),
        teams=await _teams(session, {i.team for i in items if i.team}),
    )
    # Every (source, external id) of the batch, looked up with one statement.
    known = await repository.by_external_ids(session, source, {i.external_id for i in items})
    catalog = await sla_service.load_catalog(session)
    changing = {known[i.external_id].id for i in items if _may_change(i, known)}
    preloaded = await tasks.preload(session, changing) if changing else None
    run = _Batch(session, ctx, _writer(actor), source, refs, catalog, preloaded)
    return _Prepared(run, parsed, known)


async def ingest(
    session: AsyncSession, ctx: AppContext, actor: Principal, batch: TicketBatch
) -> BatchResult:
    require_reach(actor, Permission.TICKETS_INGEST)
    if len(batch.tickets) > MAX_BATCH:
        raise PayloadTooLarge(
            f"A batch holds at most {MAX_BATCH} tickets (got {len(batch.tickets)})",
            max_items=MAX_BATCH,
        )
    source = batch_source(actor, batch.source)
    prepared = await _prepare(session, ctx, actor, source, batch)
    outcome = await attempt(
        session, lambda: _buffered(prepared), expected=(AppError, ValidationError)
    )
    if isinstance(outcome, Exception):
        # Something the set-based pass did not foresee: its writes are rolled back and the
        # batch is applied item by item, each alone in a savepoint.
        log.warning("ticket_batch_item_by_item", error=str(outcome)[:300])
        prepared = await _prepare(session, ctx, actor, source, batch)
        results = await _item_by_item(prepared)
    else:
        assert not isinstance(outcome, BaseException)
        results = outcome
    summary = BatchSummary()
    for result in results:
        setattr(summary, result.outcome.value, getattr(summary, result.outcome.value) + 1)
    return BatchResult(source=source, received=len(results), summary=summary, results=results)


async def _buffered(prepared: _Prepared) -> list[ItemResult]:
    async with outbox.buffered(prepared.run.session):
        return await bulk_apply(prepared)


async def _item_by_item(prepared: _Prepared) -> list[ItemResult]:
    """Every item through the task rules in order, each that may fail half-way alone in a
    SAVEPOINT (see `_one`)."""
    results: list[ItemResult] = []
    for index, entry in enumerate(prepared.parsed):
        if isinstance(entry, ItemResult):
            results.append(entry)
        else:
            results.append(await _one(prepared.run, index, entry, prepared.known))
    return results


def _may_change(item: TicketIn, known: dict[str, Task]) -> bool:
    """Whether the item names a known live task in a version that may differ (see _update)."""
    task = known.get(item.external_id)
    if task is None or task.deleted_at is not None:
        return False
    stored = task.external_updated_at
    return item.updated_at is None or stored is None or item.updated_at > stored


async def _teams(session: AsyncSession, names: set[str]) -> dict[str, Team]:
    teams = await teams_repo.by_names(session, names)
    for name in names:
        try:
            team_id = uuid.UUID(name.strip())
        except ValueError:
            continue
        team = await teams_repo.get(session, team_id)
        if team is not None:
            teams[team.name.lower()] = team
    return teams


def _parse(index: int, raw: Any) -> TicketIn | ItemResult:
    external_id = raw.get("external_id") if isinstance(raw, dict) else None
    shown = external_id if isinstance(external_id, str) and "\x00" not in external_id else None
    if not isinstance(raw, dict):
        error = _Invalid(
            "a ticket must be a JSON object",
            details=[{"field": f"tickets[{index}]", "message": "must be an object"}],
        )
        return _invalid(index, None, error)
    try:
        return TicketIn.model_validate(raw)
    except ValidationError as exc:
        details = validation_details(exc.errors(include_url=False, include_input=False))
        reason = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return _invalid(index, shown[:255] if shown else None, _Invalid(reason, details=details))


async def _one(run: _Batch, index: int, item: TicketIn, known: dict[str, Task]) -> ItemResult:
    task = known.get(item.external_id)
    if task is not None and _fields_only(run, item, task):
        try:
            outcome, reason = await _update(run, item, task)
        except AppError as exc:
            return _invalid(index, item.external_id, exc)
        return _applied(index, task, outcome, reason)

    async def apply() -> tuple[Task, Outcome, str | None]:
        if task is None:
            created = await _create(run, item)
            known[item.external_id] = created
            return created, Outcome.CREATED, None
        return (task, *await _update(run, item, task))

    result = await attempt(run.session, apply, expected=(AppError,))
    if isinstance(result, AppError):
        # Invalid references, a refused transition, a conflict: this item only (its
        # savepoint rolled back).
        return _invalid(index, item.external_id, result)
    assert not isinstance(result, Exception)
    applied, outcome, reason = result
    return _applied(index, applied, outcome, reason)


def _fields_only(run: _Batch, item: TicketIn, task: Task) -> bool:
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
    return not tasks.SELECTOR_FIELDS & _changed_fields(item, task, team).keys()


def _references(run: _Batch, item: TicketIn) -> tuple[User | None, Team | None]:
    assignee = run.refs.user(item.assigned_to) if item.assigned_to else None
    if item.assigned_to and assignee is None:
        raise _Invalid(
            f"no active user {item.assigned_to!r}",
            details=[
                {"field": "assigned_to", "message": "no active user with this username or e-mail"}
            ],
        )
    team = run.refs.team(item.team) if item.team else None
    if item.team and team is None:
        raise _Invalid(
            f"no active team {item.team!r}",
            details=[{"field": "team", "message": "no active team with this name or id"}],
        )
    return assignee, team


def _task_create(item: TicketIn, assignee: User | None, team: Team | None) -> TaskCreate:
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


async def _create(run: _Batch, item: TicketIn) -> Task:
    assignee, team = _references(run, item)
    data = _task_create(item, assignee, team)
    origin = tasks.ExternalRef(run.source, item.external_id, item.updated_at, digest(item))
    task = await tasks.create_task(
        run.session,
        run.ctx,
        run.writer,
        data,
        origin,
        run.catalog,
    )
    await _move_status(run, task, item)
    return task


async def _update(run: _Batch, item: TicketIn, task: Task) -> tuple[Outcome, str | None]:
    if task.deleted_at is not None:
        raise _Invalid("the task of this ticket was cancelled in OpsFlow")
    stored = task.external_updated_at
    if item.updated_at is not None and stored is not None:
        if item.updated_at < stored:
            return Outcome.STALE, f"older than the applied version ({stored.isoformat()})"
        if item.updated_at == stored:
            return Outcome.UNCHANGED, None
    content = digest(item)
    if item.updated_at is None and content == task.external_digest:
        return Outcome.UNCHANGED, None
    assignee, team = _references(run, item)
    version = task.version
    cmd = _command(run, task)
    fields = _changed_fields(item, task, team)
    new_assignee = assignee is not None and assignee.id != task.assigned_to
    moves = STATUS_PATHS[item.status].get(TaskStatus(task.status))
    # Bookkeeping of the applied version (not a change of the task: no audit row). When the
    # fields are the only change, it rides in the same UPDATE; otherwise it follows.
    together = bool(fields) and not new_assignee and not moves
    if together:
        applied = task.external_digest
        task.external_updated_at = item.updated_at or stored
        task.external_digest = content
        try:
            await tasks.update_task(cmd, TaskUpdate(**fields))
        except AppError:
            # Refused before it wrote anything (see _fields_only): nor is the version applied.
            task.external_updated_at, task.external_digest = stored, applied
            raise
    elif fields:
        await tasks.update_task(cmd, TaskUpdate(**fields))
    if assignee is not None and new_assignee:
        await tasks.assign_task(cmd, assignee.id, None)
    await _move_status(run, task, item)
    if not run.deferred:
        await run.session.flush()
    changed = task.version != version
    if not together:
        task.external_updated_at = item.updated_at or stored
        task.external_digest = content
    if not changed:
        return Outcome.UNCHANGED, "nothing differed from the task"
    return Outcome.UPDATED, None


def _command(run: _Batch, task: Task) -> tasks.TaskCommand:
    return tasks.TaskCommand(
        run.session,
        run.ctx,
        run.writer,
        task.id,
        preloaded=run.preloaded,
        catalog=run.catalog,
        deferred=run.deferred,
    )


def _changed_fields(item: TicketIn, task: Task, team: Team | None) -> dict[str, Any]:
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


async def _move_status(run: _Batch, task: Task, item: TicketIn) -> None:
    cmd = _command(run, task)
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


async def find(session: AsyncSession, external_id: str, source: str | None) -> Task:
    """The live task of a ticket; without `source`, the external id must be unambiguous."""
    found = await repository.with_external_id(session, external_id, source)
    if not found:
        raise NotFound("ticket", external_id)
    if len(found) > 1:
        raise Conflict(
            "Several sources have a ticket with this id; name one with ?source=",
            sources=sorted(t.source or "" for t in found),
        )
    return found[0]


# --- the set-based pass ---------------------------------------------------------------------


async def bulk_apply(prepared: _Prepared) -> list[ItemResult]:
    """The batch with few statements: new tickets as multi-row INSERTs (tasks, clocks,
    events; audit rows chained at commit), changes to known tickets through the task rules
    in memory and written with one UPDATE per set of changed columns.

    Only what cannot fail half-way is applied here: each item is checked whole before it
    queues anything (an item refused is reported ``invalid`` and changes nothing). The
    other items — a second version of a ticket already in the batch, a change that moves
    a task's status, assigns it or gives it another SLA policy, a cancelled task — follow,
    in order, through `_one` (each in its own savepoint)."""
    run = replace(prepared.run, deferred=True)
    known = prepared.known
    new = bulk.NewTasks(run.session, run.catalog, run.ctx.clock.now())
    results: list[ItemResult | None] = [None] * len(prepared.parsed)
    moves: list[tuple[int, TicketIn, bulk.NewTask]] = []
    changed: list[Task] = []
    later: list[int] = []
    seen: set[str] = set()
    for index, entry in enumerate(prepared.parsed):
        if isinstance(entry, ItemResult):
            results[index] = entry
            continue
        first = entry.external_id not in seen
        seen.add(entry.external_id)
        task = known.get(entry.external_id)
        if not first or (task is not None and not _quick_change(run, entry, task)):
            later.append(index)
        elif task is None:
            try:
                created = _create_row(run, new, entry)
            except AppError as exc:
                results[index] = _invalid(index, entry.external_id, exc)
                continue
            results[index] = _created(index, created)
            if STATUS_PATHS[entry.status].get(TaskStatus(created.status)):
                moves.append((index, entry, created))
        else:
            outcome, reason = await _update(run, entry, task)
            changed.append(task)
            results[index] = _applied(index, task, outcome, reason)
    await new.write()
    if moves:
        # New tickets in another status than open: created above, moved now (in memory).
        run = replace(run, preloaded=await tasks.preload(run.session, [m[2].id for m in moves]))
        for index, entry, created in moves:
            task = run.preloaded.tasks[created.id] if run.preloaded else None
            assert task is not None
            await _move_status(run, task, entry)
            changed.append(task)
            results[index] = _applied(index, task, Outcome.CREATED)
    await bulk.write_changed(run.session, changed)
    if later:
        # Tickets created above that come again are read as the tasks they now are.
        again = {
            e.external_id for i in later if isinstance(e := prepared.parsed[i], TicketIn)
        } - known.keys()
        known.update(await repository.by_external_ids(run.session, run.source, again))
        careful = prepared.run
        for index in later:
            entry = prepared.parsed[index]
            assert isinstance(entry, TicketIn)
            results[index] = await _one(careful, index, entry, known)
    return [r for r in results if r is not None]


def _quick_change(run: _Batch, item: TicketIn, task: Task) -> bool:
    """Whether the item's effect on its known task cannot fail half-way: nothing to write
    (stale, unchanged) or plain fields only (see `_fields_only`)."""
    if task.deleted_at is not None:
        return False
    stored = task.external_updated_at
    if item.updated_at is not None and stored is not None and item.updated_at <= stored:
        return True
    return _fields_only(run, item, task)


def _create_row(run: _Batch, new: bulk.NewTasks, item: TicketIn) -> bulk.NewTask:
    """A new ticket's task, queued as rows; an item whose status needs moves is first
    checked for the permission they take, so that the moves cannot fail."""
    assignee, team = _references(run, item)
    data = _task_create(item, assignee, team)
    team_id = team.id if team else (assignee.team_id if assignee else run.writer.team_id)
    if STATUS_PATHS[item.status].get(TaskStatus.ASSIGNED if assignee else TaskStatus.CREATED):
        check_row(
            run.writer,
            Permission.TASK_PROGRESS,
            team_id=team_id,
            assignee_ids=[assignee.id] if assignee else [],
        )
    origin = tasks.ExternalRef(run.source, item.external_id, item.updated_at, digest(item))
    return new.add(run.writer, data, origin, assignee, team_id)


def _created(index: int, created: bulk.NewTask) -> ItemResult:
    return ItemResult(
        index=index,
        external_id=created.external_id,
        outcome=Outcome.CREATED,
        task_id=created.id,
        status=TaskStatus(created.status),
    )
