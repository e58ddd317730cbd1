"""SLA clocks of a task, changed in the same unit of work as the task change that moves them."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.base import NO_VALUE

from opsflow.models.enums import ClockStatus, Priority, SlaKind
from opsflow.models.sla import BusinessCalendarRow, SlaClock, SlaPolicyRow
from opsflow.models.task import Task
from opsflow.sla import repository
from opsflow.sla.calendar import ALWAYS_NAME, explain
from opsflow.sla.clocks import (
    DEFAULT_THRESHOLDS,
    calendar_of,
    frozen_at,
    pause,
    pause_intervals,
    plan_of,
    reschedule,
    resume,
    resume_after_reopen,
    stop,
    task_breached_since,
)
from opsflow.sla.defaults import targets_for
from opsflow.sla.policies import PolicySpec, match
from opsflow.sla.schemas import SlaClockDetail, TaskSla

SOURCE_POLICY, SOURCE_DEFAULT = "policy", "default"


# --- which policy a task gets ---------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedPolicy:
    """What a task's clocks are set up from: the matching policy, or the built-in defaults."""

    policy_id: uuid.UUID | None
    policy_name: str | None
    start_minutes: int
    resolve_minutes: int
    thresholds: tuple[float, ...]
    calendar_id: uuid.UUID | None
    calendar_name: str | None
    calendar_spec: dict[str, Any] | None
    pause_on_blocked: bool

    @property
    def source(self) -> str:
        return SOURCE_POLICY if self.policy_id is not None else SOURCE_DEFAULT


@dataclass(frozen=True)
class PolicyCatalog:
    """The active policies with their calendars, as plain values: loaded once per unit of
    work by batch callers, and kept across units of work by :class:`CatalogCache` (nothing
    in it is bound to a session)."""

    specs: list[PolicySpec]
    # Policy name -> what a task matching it gets (its calendar body copied per task).
    resolved: dict[str, ResolvedPolicy]

    def resolve(self, task_type: str, priority: str, customer_tier: str) -> ResolvedPolicy:
        spec = match(self.specs, task_type, priority, customer_tier)
        if spec is None:
            start, resolve = targets_for(Priority(priority))
            return ResolvedPolicy(
                None, None, start, resolve, DEFAULT_THRESHOLDS, None, None, None, False
            )
        policy = self.resolved[spec.name]
        if policy.calendar_spec is None:
            return policy
        # Each task's clocks get a calendar of their own: the cached one is never handed out.
        return replace(policy, calendar_spec=copy.deepcopy(policy.calendar_spec))


def _resolved(
    row: SlaPolicyRow, calendar: BusinessCalendarRow | None, spec: PolicySpec
) -> ResolvedPolicy:
    return ResolvedPolicy(
        policy_id=row.id,
        policy_name=row.name,
        start_minutes=row.start_minutes,
        resolve_minutes=row.resolve_minutes,
        thresholds=spec.thresholds,
        calendar_id=calendar.id if calendar else None,
        calendar_name=calendar.name if calendar else None,
        calendar_spec=copy.deepcopy(
            calendar_body(calendar.timezone, calendar.hours, calendar.holidays)
        )
        if calendar
        else None,
        pause_on_blocked=row.pause_on_blocked,
    )


def calendar_body(timezone: str, hours: dict[str, Any], holidays: list[Any]) -> dict[str, Any]:
    """A calendar as clocks store it (sla.calendar_format.calendar_to_dict without the name)."""
    return {"timezone": timezone, "hours": dict(hours), "holidays": list(holidays)}


def policy_spec(row: SlaPolicyRow, calendar_name: str | None) -> PolicySpec:
    """A stored policy as the pure model: what matching and the configuration both use."""
    return PolicySpec(
        name=row.name,
        task_type=row.task_type,
        priority=row.priority,
        customer_tier=row.customer_tier,
        start_minutes=row.start_minutes,
        resolve_minutes=row.resolve_minutes,
        thresholds=tuple(row.thresholds),
        calendar=calendar_name,
        pause_on_blocked=row.pause_on_blocked,
        escalation=tuple((int(level), int(minutes)) for level, minutes in row.escalation),
        is_active=row.is_active,
    )


async def load_catalog(session: AsyncSession) -> PolicyCatalog:
    rows = await repository.active_policies(session)
    specs = [policy_spec(row, calendar.name if calendar else None) for row, calendar in rows]
    resolved = {
        spec.name: _resolved(row, calendar, spec)
        for spec, (row, calendar) in zip(specs, rows, strict=True)
    }
    return PolicyCatalog(specs, resolved)


class CatalogCache:
    """The policy catalog of one process, kept while the SLA configuration's revision stays.

    Every create would otherwise read the active policies and their calendars and build
    them into a catalog. Instead each use reads the configuration's version — `revision`
    and `updated_at` of the one `sla_settings` row, one small read — and reuses the catalog
    loaded at that version. Every change to policies or calendars (API, import, the file
    watcher, the CLI: all through `opsflow.sla_config.service`) moves the revision on in
    the transaction that makes it, so the next use in any process, once that transaction
    has committed, sees another version and loads the catalog again: no staleness window.

    The version is read before the policies, so a change committed between the two reads
    leaves a catalog newer than its key, which only costs a reload. A unit of work that
    changed the configuration itself (`config_changed`) neither reads nor fills the cache:
    what it sees may yet roll back. No settings row is a version too: a change writes the
    row (`sla.repository.settings_row` creates it) before moving its revision on. Writers
    that bypass `opsflow.sla_config` (raw SQL) must move the revision on too, or their
    change is seen only after the next one that does.
    """

    def __init__(self) -> None:
        self._version: tuple[Any, ...] | None = None
        self._catalog: PolicyCatalog | None = None

    async def get(self, session: AsyncSession) -> PolicyCatalog:
        if session.info.get(CONFIG_CHANGED):
            return await load_catalog(session)
        version = await repository.config_version(session)
        if version == self._version and self._catalog is not None:
            return self._catalog
        catalog = await load_catalog(session)
        self._version, self._catalog = version, catalog
        return catalog


# session.info key: this unit of work wrote the SLA configuration (set by its writers).
CONFIG_CHANGED = "opsflow.sla_config_changed"


def config_changed(session: AsyncSession) -> None:
    """Mark the unit of work as changing the SLA configuration: :class:`CatalogCache`
    leaves it alone (its view of the configuration is not committed yet)."""
    session.info[CONFIG_CHANGED] = True


# --- clocks -------------------------------------------------------------------------------


def _configure(clock: SlaClock, policy: ResolvedPolicy) -> None:
    clock.thresholds = list(policy.thresholds)
    clock.calendar_id = policy.calendar_id
    clock.calendar_name = policy.calendar_name
    clock.calendar_spec = policy.calendar_spec
    clock.pause_on_blocked = policy.pause_on_blocked


def create_clocks(
    session: AsyncSession, task: Task, now: datetime, policy: ResolvedPolicy | None = None
) -> dict[str, SlaClock]:
    clocks = {clock.kind: clock for clock in new_clocks(task, now, policy)}
    session.add_all(clocks.values())
    return clocks


def new_clocks(task: Task, now: datetime, policy: ResolvedPolicy | None = None) -> list[SlaClock]:
    """A new task's START and RESOLVE clocks, not yet added to a session; the task takes
    their deadlines."""
    clocks: dict[str, SlaClock] = {}
    for kind, minutes in (
        (SlaKind.START, task.start_sla_minutes),
        (SlaKind.RESOLVE, task.resolve_sla_minutes),
    ):
        clock = SlaClock(
            id=uuid.uuid4(),
            task_id=task.id,
            kind=kind,
            status=ClockStatus.ACTIVE,
            target_minutes=minutes,
            started_at=task.created_at,
            deadline=task.created_at,
            thresholds=list(DEFAULT_THRESHOLDS),
            pause_on_blocked=False,
            cancelled=False,
            pauses=[],
            paused_seconds=0.0,
            fired_count=0,
            created_at=now,
            updated_at=now,
        )
        if policy is not None:
            _configure(clock, policy)
        reschedule(clock)
        clocks[kind] = clock
    _mirror(task, clocks)
    return list(clocks.values())


def _mirror(task: Task, clocks: dict[str, SlaClock]) -> None:
    """Tasks carry their clocks' deadlines for listing and sorting, and the instant from
    which they count as breached for the reports (`clocks` holds every clock of the task)."""
    if SlaKind.START in clocks:
        task.start_deadline = clocks[SlaKind.START].deadline
    if SlaKind.RESOLVE in clocks:
        task.resolve_deadline = clocks[SlaKind.RESOLVE].deadline
    breach_at = task_breached_since(clocks.values())
    if task.sla_breach_at != breach_at:
        task.sla_breach_at = breach_at


async def on_task_changed(
    session: AsyncSession,
    task: Task,
    now: datetime,
    actor: str = "system",
    policy: ResolvedPolicy | None = None,
    clocks: dict[str, SlaClock] | None = None,
) -> None:
    """Bring the task's clocks in line with the task as it now stands.

    Called by the task service after every change, in the same transaction: a response
    stops START, completion stops RESOLVE, cancellation stops both, a reopen resumes
    RESOLVE (the time spent completed counts as a pause), new targets reschedule, a new
    policy (priority, tier or type changed) brings its thresholds and calendar, and
    `task.sla_paused_at` — or BLOCKED under a policy with pause_on_blocked — pauses the
    running clocks.
    """
    if clocks is None:  # else read and locked by the caller in this transaction
        clocks = await repository.clocks_of(session, task.id, for_update=True)
    if not clocks:
        clocks = create_clocks(session, task, now, policy)
        await session.flush()
    start, resolve = clocks.get(SlaKind.START), clocks.get(SlaKind.RESOLVE)
    for clock, target in ((start, task.start_sla_minutes), (resolve, task.resolve_sla_minutes)):
        if clock is None:
            continue
        if policy is not None:
            _configure(clock, policy)
        clock.target_minutes = target
        reschedule(clock)
    responded = task.acknowledged_at or task.started_at
    if task.cancelled_at is not None:
        for clock in (start, resolve):
            if clock is not None:
                stop(clock, now, cancelled=True)
    else:
        if start is not None and responded is not None:
            stop(start, min(t for t in (task.acknowledged_at, task.started_at) if t))
        if resolve is not None:
            if task.completed_at is not None:
                stop(resolve, task.completed_at)
            elif resolve.stopped_at is not None:
                resume_after_reopen(resolve, now)
    for clock in (start, resolve):
        if clock is None:
            continue
        if task.sla_paused_at is not None:
            pause(clock, task.sla_paused_at, actor, task.sla_pause_reason)
        elif clock.pause_on_blocked and task.blocked_at is not None:
            reason = f"blocked: {task.blocked_reason}" if task.blocked_reason else "blocked"
            pause(clock, task.blocked_at, actor, reason)
        else:
            resume(clock, now)
        # A clock whose row this change left as it was is not written again.
        if clock.updated_at != now and _modified(clock):
            clock.updated_at = now
    _mirror(task, clocks)


def _modified(clock: SlaClock) -> bool:
    """Whether an attribute of the clock now differs from its loaded value (what
    `Session.is_modified` tells, read from the instance's own state: cheaper per change)."""
    state = sa_inspect(clock)
    return any(state.dict.get(key, NO_VALUE) != old for key, old in state.committed_state.items())


async def reschedule_calendar(
    session: AsyncSession, calendar_id: uuid.UUID, name: str, body: dict[str, Any]
) -> int:
    """A calendar changed: the clocks still counting under it move with it. Returns how many."""
    clocks = await repository.open_clocks_with_calendar(session, calendar_id)
    for clock in clocks:
        clock.calendar_name = name
        clock.calendar_spec = body
        reschedule(clock)
    task_ids = {c.task_id for c in clocks}
    tasks = await repository.tasks_by_id(session, task_ids)
    every_clock = await repository.clocks_for_tasks(session, sorted(task_ids))
    for task_id, task in tasks.items():
        _mirror(task, every_clock.get(task_id, {}))
    return len(clocks)


def detail(clock: SlaClock, now: datetime) -> dict[str, object]:
    """Everything `GET /tasks/{id}/sla` says about one clock, computed at `now`."""
    until = frozen_at(clock) or now
    intervals = pause_intervals(clock.pauses)
    calendar = calendar_of(clock.calendar_name, clock.calendar_spec)
    explanation = explain(calendar, clock.started_at, max(until, clock.started_at), intervals)
    paused = clock.paused_at is not None
    plan = plan_of(clock)
    return {
        "kind": clock.kind,
        "status": clock.status,
        "calendar": clock.calendar_name or ALWAYS_NAME,
        "pause_on_blocked": clock.pause_on_blocked,
        "target_minutes": clock.target_minutes,
        "started_at": clock.started_at,
        # While paused the deadline is unknown: it moves with the pause.
        "deadline": None if paused else clock.deadline,
        "stopped_at": clock.stopped_at,
        "paused_at": clock.paused_at,
        "breached_at": clock.breached_at,
        "remaining_seconds": int((clock.deadline - until).total_seconds()),
        "remaining_working_seconds": int(
            clock.target_minutes * 60 - explanation["working_seconds"]
        ),
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
                "due_at": None if paused and index >= clock.fired_count and at >= until else at,
                "fired": index < clock.fired_count,
            }
            for index, (threshold, at) in enumerate(plan.steps)
        ],
        "explanation": explanation,
    }


async def clocks_explained(session: AsyncSession, task_id: uuid.UUID, now: datetime) -> TaskSla:
    """A task's clocks explained as they stand at `now`."""
    clocks = await repository.clocks_of(session, task_id)
    return TaskSla(
        task_id=task_id,
        evaluated_at=now,
        clocks=[
            SlaClockDetail.model_validate(detail(clocks[kind], now))
            for kind in ("START", "RESOLVE")
            if kind in clocks
        ],
    )


# Reads with no rule beyond their query (endpoints call services only).
events_of = repository.events_of
search_events = repository.search_events
