"""Ticket batches applied through the task rules, idempotently.

A ticket is identified by (source, external_id) and versioned by its ``updated_at``:

- no task yet: the ticket creates one (``created``);
- a newer ``updated_at`` applies the ticket as it now is: field changes through the task
  update rules, a new assignee through assignment, the external status through the status
  machine (``updated``; ``unchanged`` when nothing differed);
- the same ``updated_at``: ``unchanged``; an older one: ``stale``. Neither writes anything;
- a ticket without ``updated_at`` is compared by content: the same content is ``unchanged``,
  another content is applied (last write wins).

The whole batch is one transaction, applied set-based (`bulk_apply`): the batch's tasks
looked up with one statement, new tickets inserted with multi-row INSERTs, plain-field
changes made through the task rules in memory and written with one UPDATE per set of
changed columns. Those items are checked whole before they queue anything, so a bad one is
reported ``invalid`` and changes nothing. The items that could fail half-way (a status move,
a new assignee or SLA policy of a known ticket, a ticket seen earlier in the batch) follow
one by one, each in a SAVEPOINT that rolls back alone (`rules.apply_one`), so one bad item
never rejects the others. One commit makes a 1,000-item batch cheap and the answer honest
(a 200 means every listed outcome is stored). Should the set-based pass fail all the same,
it is rolled back to its own savepoint and the batch applied item by item. If the commit
itself fails, nothing is stored and the sender retries the same batch, which is safe
because ingestion is idempotent.
"""

from __future__ import annotations

import uuid
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
from opsflow.models.enums import ActorType, Role, Scope, TaskStatus
from opsflow.models.task import Task
from opsflow.models.team import Team
from opsflow.sla import service as sla_service
from opsflow.tasks import bulk
from opsflow.tasks import service as tasks
from opsflow.teams import repository as teams_repo
from opsflow.tickets import repository
from opsflow.tickets.rules import (
    STATUS_PATHS,
    Batch,
    Invalid,
    References,
    applied,
    apply_one,
    digest,
    fields_only,
    invalid,
    move_status,
    references,
    task_create,
    update,
)
from opsflow.tickets.schemas import (
    MAX_BATCH,
    BatchResult,
    BatchSummary,
    ItemResult,
    Outcome,
    TicketBatch,
    TicketIn,
)
from opsflow.users import repository as users_repo

log = structlog.get_logger("opsflow.tickets")

DEFAULT_USER_SOURCE = "manual"
CLIENT_PREFIX = "client:"  # how API clients are named as actors (auth.service)


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


@dataclass
class _Prepared:
    """What a batch reads before it applies anything: parsed items, references, the tasks
    its tickets already have (locked when they may change)."""

    run: Batch
    parsed: list[TicketIn | ItemResult]
    known: dict[str, Task]


async def _prepare(
    session: AsyncSession, ctx: AppContext, actor: Principal, source: str, batch: TicketBatch
) -> _Prepared:
    parsed: list[TicketIn | ItemResult] = [
        _parse(index, raw) for index, raw in enumerate(batch.tickets)
    ]
    items = [p for p in parsed if isinstance(p, TicketIn)]
    refs = References(
        users=await users_repo.by_logins(session, {i.assigned_to for i in items if i.assigned_to}),
        teams=await _teams(session, {i.team for i in items if i.team}),
    )
    # Every (source, external id) of the batch, looked up with one statement.
    known = await repository.by_external_ids(session, source, {i.external_id for i in items})
    catalog = await sla_service.load_catalog(session)
    changing = {known[i.external_id].id for i in items if _may_change(i, known)}
    preloaded = await tasks.preload(session, changing) if changing else None
    run = Batch(session, ctx, _writer(actor), source, refs, catalog, preloaded)
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
    SAVEPOINT (see `apply_one`)."""
    results: list[ItemResult] = []
    for index, entry in enumerate(prepared.parsed):
        if isinstance(entry, ItemResult):
            results.append(entry)
        else:
            results.append(await apply_one(prepared.run, index, entry, prepared.known))
    return results


def _may_change(item: TicketIn, known: dict[str, Task]) -> bool:
    """Whether the item names a known live task in a version that may differ (see update)."""
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
        error = Invalid(
            "a ticket must be a JSON object",
            details=[{"field": f"tickets[{index}]", "message": "must be an object"}],
        )
        return invalid(index, None, error)
    try:
        return TicketIn.model_validate(raw)
    except ValidationError as exc:
        details = validation_details(exc.errors(include_url=False, include_input=False))
        reason = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return invalid(index, shown[:255] if shown else None, Invalid(reason, details=details))


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
    in order, through `apply_one` (each in its own savepoint)."""
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
                results[index] = invalid(index, entry.external_id, exc)
                continue
            results[index] = _created(index, created)
            if STATUS_PATHS[entry.status].get(TaskStatus(created.status)):
                moves.append((index, entry, created))
        else:
            outcome, reason = await update(run, entry, task)
            changed.append(task)
            results[index] = applied(index, task, outcome, reason)
    await new.write()
    if moves:
        # New tickets in another status than open: created above, moved now (in memory).
        run = replace(run, preloaded=await tasks.preload(run.session, [m[2].id for m in moves]))
        for index, entry, created in moves:
            task = run.preloaded.tasks[created.id] if run.preloaded else None
            assert task is not None
            await move_status(run, task, entry)
            changed.append(task)
            results[index] = applied(index, task, Outcome.CREATED)
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
            results[index] = await apply_one(careful, index, entry, known)
    return [r for r in results if r is not None]


def _quick_change(run: Batch, item: TicketIn, task: Task) -> bool:
    """Whether the item's effect on its known task cannot fail half-way: nothing to write
    (stale, unchanged) or plain fields only (see `fields_only`)."""
    if task.deleted_at is not None:
        return False
    stored = task.external_updated_at
    if item.updated_at is not None and stored is not None and item.updated_at <= stored:
        return True
    return fields_only(run, item, task)


def _create_row(run: Batch, new: bulk.NewTasks, item: TicketIn) -> bulk.NewTask:
    """A new ticket's task, queued as rows; an item whose status needs moves is first
    checked for the permission they take, so that the moves cannot fail."""
    assignee, team = references(run, item)
    data = task_create(item, assignee, team)
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
