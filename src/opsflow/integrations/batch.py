"""Applying the alert events of many requests in one unit of work (the intake's group commit).

The dedup keys of the whole batch are locked first (PostgreSQL advisory locks, in sorted
order: two batches sharing keys, in this process or another, cannot deadlock) and their
open incidents read with one query. Then, in order:

- a plain re-send (a firing alert again, no worse severity) is applied in memory and the
  batch's re-sends are written with one UPDATE of `metadata`;
- the first trigger of a key that never had an incident opens one, queued as rows: the
  batch's new incidents, their clocks, events and audit rows are inserted with multi-row
  INSERTs (`tasks.bulk.NewTasks`);
- any other event takes the full lifecycle rules (`ingest.apply_event`). Set-based
  (``deferred``, the first try of a batch), the incidents such events touch are locked and
  read with their clocks and escalation steps at once, the rules change them in memory and
  they are written with one UPDATE per set of changed columns (`tasks.bulk.write_changed`,
  and their re-planned clocks with `tasks.bulk.write_changed_clocks`);
  an event the rules refuse then fails the batch, which the intake rolls back to its
  savepoint and applies again request by request in the same transaction (the key locks
  kept), not deferred: each such event in its own SAVEPOINT, recorded as ``failed`` alone.

Every event writes one `integration_events` row (what came in and what came of it), all of
a batch with one INSERT.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from opsflow.auth.principal import RequestMeta
from opsflow.context import AppContext
from opsflow.db import attempt
from opsflow.events import outbox
from opsflow.integrations import repository, service
from opsflow.integrations.ingest import (
    ITEM_ERRORS,
    SEVERITIES,
    Outcome,
    Run,
    alert_of,
    apply_event,
    bounded,
    details,
    new_incident,
    principal,
)
from opsflow.integrations.parsers import TRIGGER, AlertEvent
from opsflow.integrations.schemas import SEVERITY_RANK, Severity
from opsflow.models.integration import Integration
from opsflow.models.task import Task
from opsflow.sla import service as sla_service
from opsflow.tasks import bulk
from opsflow.tasks import service as tasks

PRUNE_EVERY = timedelta(hours=1)

Ref = tuple[str, str]  # (source, dedup key)


@dataclass(frozen=True)
class Item:
    """One request's events for one integration, as received at `received_at`."""

    integration: Integration
    events: list[AlertEvent]
    received_at: datetime
    meta: RequestMeta = field(default_factory=RequestMeta)


def _lock_id(source: str, key: str) -> int:
    digest = hashlib.sha256(f"{source}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def apply(
    session: AsyncSession,
    ctx: AppContext,
    integration: Integration,
    events: list[AlertEvent],
    meta: RequestMeta | None = None,
) -> list[Outcome]:
    """The events of one request, in the caller's unit of work."""
    item = Item(integration, events, ctx.clock.now(), meta or RequestMeta())
    return (await apply_batch(session, ctx, [item]))[0]


@dataclass
class _State:
    """What a batch knows of its keys while it applies them."""

    open_now: dict[Ref, Task]
    known: set[Ref]  # keys that had an incident before, open or not
    # Keys that took the full rules: their incident read for the batch is no longer the
    # one to use, except `live` (set-based: the incident the rules left open, in memory).
    slowed: set[Ref] = field(default_factory=set)
    live: dict[Ref, Task] = field(default_factory=dict)
    resent: dict[uuid.UUID, Task] = field(default_factory=dict)
    changed: list[Task] = field(default_factory=list)


async def apply_batch(
    session: AsyncSession, ctx: AppContext, items: list[Item], *, deferred: bool = False
) -> list[list[Outcome]]:
    """The events of many requests in one unit of work, in order; each request's outcomes.

    `deferred`: the set-based first try (see the module's docstring); an error of one event
    then propagates and fails the batch."""
    await prune(session, ctx, items)
    await lock_keys(session, items)
    return await apply_locked(session, ctx, items, deferred=deferred)


def _refs(items: list[Item]) -> set[Ref]:
    return {(service.source_of(i.integration), e.dedup_key) for i in items for e in i.events}


async def lock_keys(session: AsyncSession, items: list[Item]) -> None:
    """Lock the dedup keys of these requests until the transaction ends (PostgreSQL
    advisory locks, in sorted order; SQLite serialises writers itself). Taken before any
    savepoint: rolling a savepoint back must not release them."""
    if session.get_bind().dialect.name == "postgresql":
        await repository.lock_all(session, sorted({_lock_id(s, k) for s, k in _refs(items)}))


async def apply_locked(
    session: AsyncSession, ctx: AppContext, items: list[Item], *, deferred: bool = False
) -> list[list[Outcome]]:
    """`apply_batch` once the integrations are pruned and the keys locked (`prune`,
    `lock_keys`)."""
    refs = _refs(items)
    open_now = await repository.open_incidents(session, refs)
    state = _State(open_now, await repository.keys_with_incidents(session, refs - open_now.keys()))
    catalog: list[sla_service.PolicyCatalog] = []
    preloaded = None
    if deferred:
        ruled = _ruled(items, open_now)
        preloaded = await tasks.preload(session, ruled) if ruled else None
        if preloaded is not None or any(e.action != TRIGGER for i in items for e in i.events):
            catalog.append(await sla_service.load_catalog(session))
    new: bulk.NewTasks | None = None
    log: list[dict[str, Any]] = []
    results: list[list[Outcome]] = []
    async with outbox.buffered(session):
        for item in items:
            integration = item.integration
            run = Run(
                session,
                ctx,
                integration,
                principal(integration, item.meta),
                service.source_of(integration),
                item.received_at,
                catalog,
                preloaded,
                deferred,
            )
            outcomes = []
            for event in item.events:
                ref = (run.source, event.dedup_key)
                fresh = ref not in state.slowed
                task = _plain_resend(run, event, open_now.get(ref)) if fresh else None
                new_id: uuid.UUID | None = None
                if task is not None:
                    outcome = "updated"
                    state.resent[task.id] = task
                elif (
                    fresh
                    and event.action == TRIGGER
                    and ref not in open_now
                    and ref not in state.known
                ):
                    # The first incident of a key: checked whole before anything is queued.
                    state.slowed.add(ref)
                    if new is None:
                        new = bulk.NewTasks(session, await run.catalog(), ctx.clock.now())
                    outcome, new_id = _open_first(run, new, event)
                else:
                    if not deferred:
                        # Alone in a savepoint: what the batch applied in memory is written
                        # first. Set-based, the re-sends stay queued: they change only
                        # `metadata`, which no query of the rules filters on, and the rules
                        # change the very Task objects they were applied to.
                        await _write_resent(session, state.resent)
                    if new is not None:
                        await new.write()
                    outcome, task = await _full_rules(run, event, ref, state)
                task_id = new_id or (task.id if task is not None else None)
                log.append(
                    {
                        "id": uuid.uuid4(),
                        "integration_id": integration.id,
                        "received_at": item.received_at,
                        "dedup_key": event.dedup_key,
                        "action": event.action,
                        "outcome": outcome,
                        "task_id": task_id,
                        "summary": event.summary[:1024] or None,
                    }
                )
                outcomes.append(Outcome(event.dedup_key, event.action, outcome, task_id))
            results.append(outcomes)
        await _write_resent(session, state.resent)
        if new is not None:
            await new.write()
        await bulk.write_changed(session, state.changed)
        await bulk.write_changed_clocks(session)
        await session.flush()
    await repository.add_events(session, log)
    return results


def _ruled(items: list[Item], open_now: dict[Ref, Task]) -> list[uuid.UUID]:
    """The open incidents some event of the batch takes the full rules on (any event that
    is not a plain re-send of a firing alert): locked and read at once."""
    ids: list[uuid.UUID] = []
    for item in items:
        source = service.source_of(item.integration)
        for event in item.events:
            task = open_now.get((source, event.dedup_key))
            if task is not None and not _is_plain(event, alert_of(task)):
                ids.append(task.id)
    return ids


def _open_first(run: Run, new: bulk.NewTasks, event: AlertEvent) -> tuple[str, uuid.UUID | None]:
    try:
        data, origin = new_incident(run, event, None, [])
        # Its metadata is built as plain JSON for this incident (`new_incident`).
        created = new.add(run.actor, data, origin, None, data.team_id, plain_metadata=True)
    except ITEM_ERRORS:
        return "failed", None
    return "created", created.id


async def _full_rules(
    run: Run, event: AlertEvent, ref: Ref, state: _State
) -> tuple[str, Task | None]:
    """An event through the full lifecycle rules: set-based (in memory, on the incident
    the batch read or left open) or alone in a SAVEPOINT."""
    fresh = ref not in state.slowed
    state.slowed.add(ref)
    if run.deferred:
        current: tuple[Task | None] | None = None
        if fresh:
            current = (state.open_now.get(ref),)
        elif ref in state.live:
            current = (state.live[ref],)
        outcome, task = await apply_event(run, event, current)
        state.live.pop(ref, None)
        if task is not None:
            state.changed.append(task)
            if task.completed_at is None and task.deleted_at is None:
                state.live[ref] = task
        return outcome, task
    known = (state.open_now.get(ref),) if fresh else None
    result = await attempt(
        run.session, lambda: apply_event(run, event, known), expected=ITEM_ERRORS
    )
    return ("failed", None) if isinstance(result, Exception) else result


async def _write_resent(session: AsyncSession, resent: dict[uuid.UUID, Task]) -> None:
    """Write the re-sends applied in memory: one UPDATE of `metadata` per batch."""
    if resent:
        await repository.set_metadata(session, {t.id: t.metadata_ for t in resent.values()})
        resent.clear()


async def prune(session: AsyncSession, ctx: AppContext, items: list[Item]) -> None:
    """Drop the event log rows of these requests' integrations past the retention (each at
    most once an hour). Before the key locks: a prune locks its integration's row, and every
    batch takes that row lock (if it prunes) before its key locks, so two batches cannot
    wait on each other."""
    now = max(i.received_at for i in items)
    pruned = False
    for integration in {i.integration.id: i.integration for i in items}.values():
        last = integration.last_pruned_at
        if last is not None and now - last < PRUNE_EVERY:
            continue
        cutoff = now - timedelta(days=ctx.settings.integration_event_retention_days)
        await repository.prune_events(session, integration.id, cutoff)
        integration.last_pruned_at = now
        pruned = True
    if pruned:
        await session.flush()


def _is_plain(event: AlertEvent, before: dict[str, Any]) -> bool:
    """A re-send of a firing alert that changes nothing but the count, the latest payload
    and `last_seen` (its severity no worse, the incident not flapping)."""
    old = before.get("severity")
    return (
        event.action == TRIGGER
        and old in SEVERITIES
        and SEVERITY_RANK[event.severity] <= SEVERITY_RANK[Severity(old)]
        and before.get("state") == "firing"
        and not before.get("flapping")
    )


def _plain_resend(run: Run, event: AlertEvent, task: Task | None) -> Task | None:
    """A plain re-send applied in memory to the incident read for the batch, neither audited
    nor announced (it changes nothing a person acts on), the task's version and `updated_at`
    untouched. None when the event needs the full rules."""
    if task is None or sa_inspect(task).expired_attributes:
        return None
    before = alert_of(task)
    if not _is_plain(event, before):
        return None
    alert = {**before, **details(event), "severity": before["severity"]}
    alert["count"] = int(before.get("count", 1)) + 1
    alert["last_seen"] = run.now
    # Written by `_write_resent`, not by the unit of work's flush (no version bump).
    set_committed_value(task, "metadata_", {**(task.metadata_ or {}), "alert": bounded(alert)})
    return task
