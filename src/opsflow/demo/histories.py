"""One task's month, played through the real rules.

A task is created by the task service's `create_task` (its policy, clocks and deadlines),
every later change applies the same fields as the task service's change of that name and
then the same steps as its `_mutate`: the status machine, `sla.service.on_task_changed`
(pauses, stops, reopen), the audit row and outbox event of `_record`. Between changes the
SLA engine wakes up a moment after each clock's `next_fire_at` and fires with its own
`_fire`. Nothing after `end` (the clock's now) happens: such tasks are still open.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from opsflow.audit.writer import Pending
from opsflow.auth.principal import Principal
from opsflow.clock import SettableClock
from opsflow.collaboration import service as collaboration
from opsflow.context import AppContext
from opsflow.demo.directory import SERVICES, Directory, principal
from opsflow.demo.recorder import Recorder
from opsflow.escalation import service as escalation_service
from opsflow.escalation.firing import ENGINE_ACTOR as ESCALATION_ACTOR
from opsflow.escalation.firing import cancel, record_fired
from opsflow.kit.changes import field_changes
from opsflow.models.collaboration import Comment
from opsflow.models.enums import CustomerTier, EscalationStatus, Priority, TaskStatus, TaskType
from opsflow.models.escalation import EscalationEvent
from opsflow.models.outbox import OutboxEvent
from opsflow.models.sla import SlaClock, SlaEvent
from opsflow.models.task import Task
from opsflow.models.user import User
from opsflow.sla import service as sla_service
from opsflow.sla.engine import fire_clock
from opsflow.tasks import lifecycle
from opsflow.tasks import service as task_service
from opsflow.tasks.lifecycle import OPEN, Action
from opsflow.tasks.schemas import TaskCreate

INCIDENT_TITLES = (
    "{service}: error rate above 5%",
    "{service}: p99 latency over 2 s",
    "{service} unreachable from eu-west",
    "{service}: database connection pool exhausted",
    "{service}: certificate expires in 24 h",
    "{service}: disk 95% full on primary",
    "{service}: 502s after deploy",
    "{service}: queue backlog growing",
)
TASK_TITLES = (
    "Upgrade {service} to the next minor version",
    "Customer reports slow exports in {service}",
    "Rotate credentials of {service}",
    "Add alerting for {service} saturation",
    "Investigate flaky health check of {service}",
    "Document the runbook of {service}",
    "Refund request needs a check in {service}",
    "Clean up stale feature flags in {service}",
)
TAGS = ("database", "network", "deploy", "capacity", "security", "customer", "config", "bug")
COMMENTS = (
    "Looking into it now.",
    "Rolled back the last deploy; watching the graphs.",
    "Root cause looks like a config drift, fix in review.",
    "Customer confirmed the workaround helps.",
    "Waiting on the vendor's answer.",
    "Added a dashboard panel for this.",
)
PRIORITIES = (
    (Priority.CRITICAL, 8),
    (Priority.HIGH, 22),
    (Priority.MEDIUM, 40),
    (Priority.LOW, 30),
)
TIERS = (
    (CustomerTier.ENTERPRISE, 15),
    (CustomerTier.PREMIUM, 25),
    (CustomerTier.STANDARD, 45),
    (CustomerTier.BASIC, 15),
)


def _weighted(rng: random.Random, table: tuple[tuple[Any, int], ...]) -> Any:
    return rng.choices([value for value, _ in table], [weight for _, weight in table])[0]


@dataclass
class Played:
    """What one task's history wrote: its final rows, and its audit rows with their outbox
    events in the order they were written."""

    task: Task
    rows: list[Any]
    changes: list[tuple[Pending, OutboxEvent]]


@dataclass
class World:
    """What every task's history shares: the people, the policies, a recorder, a clock."""

    ctx: AppContext
    clock: SettableClock
    directory: Directory
    catalog: sla_service.PolicyCatalog
    end: datetime
    recorder: Recorder = field(init=False)

    def __post_init__(self) -> None:
        self.recorder = Recorder([*self.directory.users, *self.directory.teams])


Apply = Callable[[Task, datetime], None]


async def _change(
    world: World,
    task: Task,
    clocks: dict[str, SlaClock],
    escalations: list[EscalationEvent],
    actor: Principal,
    action: Action,
    apply: Apply,
    now: datetime,
    reason: str | None = None,
) -> None:
    """The steps of the task service's `_mutate` for a task with no other assignees (the
    demo has no escalation policies: only default runs, settled like every pending step)."""
    session = world.recorder.session
    world.recorder.loaded(clocks.values())  # what this change's transaction reads
    new_status = lifecycle.next_status(TaskStatus(task.status), action)
    before = task_service.task_state(task)
    apply(task, now)
    await sla_service.on_task_changed(session, task, now, actor.name, None, clocks)
    pending = [step for step in escalations if step.status == EscalationStatus.PENDING]
    escalation_service.settle_pending(task, pending, now)
    if new_status is TaskStatus.ASSIGNED and task.assigned_to is None:
        new_status = TaskStatus.CREATED
    task.status = new_status.value
    after = task_service.task_state(task)
    changes = field_changes(before, after)
    if not changes:
        return
    task.updated_at = now
    task.version += 1  # the flush's version bump
    task_service.record_action(session, actor, task, action, now, (before, after), changes, reason)


def _take_if_unassigned(actor: Principal, task: Task, now: datetime) -> None:
    if task.assigned_to is None and actor.user_id is not None:
        task.assigned_to = actor.user_id
        task.assigned_at = now


def _acknowledge(actor: Principal) -> Apply:
    def apply(task: Task, now: datetime) -> None:
        _take_if_unassigned(actor, task, now)
        task.acknowledged_at = now
        task.acknowledged_by = actor.user_id

    return apply


def _start(actor: Principal) -> Apply:
    def apply(task: Task, now: datetime) -> None:
        _take_if_unassigned(actor, task, now)
        task.started_at = now
        task.snoozed_until = None

    return apply


def _assign(user: User) -> Apply:
    def apply(task: Task, now: datetime) -> None:
        if task.assigned_to != user.id:
            task.assigned_to = user.id
            task.assigned_at = now

    return apply


def _block(reason: str) -> Apply:
    def apply(task: Task, now: datetime) -> None:
        task.blocked_at = now
        task.blocked_reason = reason

    return apply


def _unblock(task: Task, _now: datetime) -> None:
    task.blocked_at = None
    task.blocked_reason = None


def _complete(notes: str) -> Apply:
    def apply(task: Task, now: datetime) -> None:
        task.completed_at = now
        task.blocked_at = None
        task.blocked_reason = None
        task.snoozed_until = None
        task.sla_paused_at = None
        task.sla_pause_reason = None
        task.resolution_notes = notes

    return apply


def _reopen(task: Task, _now: datetime) -> None:
    task.completed_at = None


def _pause(reason: str) -> Apply:
    def apply(task: Task, now: datetime) -> None:
        task.sla_paused_at = now
        task.sla_pause_reason = reason

    return apply


def _resume(task: Task, _now: datetime) -> None:
    task.sla_paused_at = None
    task.sla_pause_reason = None


def _cancel(task: Task, now: datetime) -> None:
    task.cancelled_at = now
    task.deleted_at = now
    task.snoozed_until = None
    task.sla_paused_at = None
    task.sla_pause_reason = None


@dataclass(order=True)
class _Step:
    at: datetime
    order: int
    run: Callable[[datetime], Any] = field(compare=False)


def _spread(rng: random.Random, start: datetime, span: timedelta, fraction: float) -> datetime:
    return start + span * fraction + timedelta(microseconds=rng.randrange(1_000_000))


async def play(world: World, rng: random.Random, created_at: datetime, index: int) -> Played:
    """Create one task at `created_at` and play its history up to `world.end`."""
    directory = world.directory
    team = rng.choice(directory.teams)
    workers = directory.workers[team.id]
    reporter = principal(rng.choice(directory.reporters))
    task_type = TaskType.INCIDENT if rng.random() < 0.35 else TaskType.TASK
    priority: Priority = _weighted(rng, PRIORITIES)
    service = rng.choice(SERVICES[team.name])
    titles = INCIDENT_TITLES if task_type is TaskType.INCIDENT else TASK_TITLES
    assignee = rng.choice(workers) if rng.random() < 0.7 else None
    data = TaskCreate(
        title=rng.choice(titles).format(service=service),
        description=f"Reported by {reporter.name} (#{index + 1}).",
        task_type=task_type,
        priority=priority,
        customer_tier=_weighted(rng, TIERS),
        assigned_to=assignee.id if assignee else None,
        team_id=team.id,
        service=service,
        tags=rng.sample(TAGS, rng.choice((0, 1, 1, 2))),
    )
    world.clock.set(created_at)
    session = world.recorder.session
    clocks_list: list[SlaClock] = []
    task = await task_service.create_task(
        session,
        world.ctx,
        reporter,
        data,
        catalog=world.catalog,
        deferred_clocks=clocks_list,
    )
    clocks = {clock.kind: clock for clock in clocks_list}
    escalations: list[EscalationEvent] = []
    lead = directory.leads[team.id]
    steps = _plan_history(world, rng, task, clocks, escalations, assignee, workers, lead)
    return await _run(world, rng, task, clocks, escalations, lead, steps)


def _plan_history(
    world: World,
    rng: random.Random,
    task: Task,
    clocks: dict[str, SlaClock],
    escalations: list[EscalationEvent],
    assignee: User | None,
    workers: list[User],
    lead: User,
) -> list[_Step]:
    """The changes this task will see, each at its instant (some beyond the end)."""
    steps: list[_Step] = []
    created = task.created_at
    start_span = clocks["START"].deadline - created
    resolve_span = clocks["RESOLVE"].deadline - created
    worker = assignee or rng.choice(workers)
    actor = principal(worker)

    def add(
        at: datetime, action: Action, who: Principal, apply: Apply, reason: str | None = None
    ) -> None:
        async def run(now: datetime) -> None:
            await _change(world, task, clocks, escalations, who, action, apply, now, reason)

        steps.append(_Step(at, len(steps), run))

    # Most answer well within the response target; about one in ten after it.
    respond = _spread(rng, created, start_span, rng.lognormvariate(-1.3, 0.9))
    if assignee is None and rng.random() < 0.5:
        add(
            _spread(rng, created, start_span, 0.05), Action.ASSIGN, principal(lead), _assign(worker)
        )
    if task.task_type == TaskType.INCIDENT:
        add(respond, Action.ACKNOWLEDGE, actor, _acknowledge(actor))
        respond += timedelta(minutes=rng.uniform(1, 20))
    add(respond, Action.START, actor, _start(actor))
    cursor = respond
    if rng.random() < 0.12:
        blocked = _spread(rng, cursor, resolve_span, rng.uniform(0.05, 0.3))
        unblocked = _spread(rng, blocked, resolve_span, rng.uniform(0.05, 0.5))
        reason = rng.choice(("waiting for the vendor", "needs a change window", "waiting for QA"))
        add(blocked, Action.BLOCK, actor, _block(reason), reason)
        add(unblocked, Action.UNBLOCK, actor, _unblock)
        cursor = unblocked
    if rng.random() < 0.05:
        paused = _spread(rng, cursor, resolve_span, rng.uniform(0.05, 0.2))
        resumed = _spread(rng, paused, resolve_span, rng.uniform(0.1, 0.6))
        reason = "waiting for the customer"
        add(paused, Action.PAUSE_SLA, principal(lead), _pause(reason), reason)
        add(resumed, Action.RESUME_SLA, principal(lead), _resume, "customer answered")
        cursor = resumed
    # Resolution: most within the target, about one in eight after it.
    done = max(
        _spread(rng, created, resolve_span, rng.lognormvariate(-0.9, 0.75)),
        cursor + timedelta(minutes=rng.uniform(5, 120)),
    )
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2, 3))):
        at = created + (done - created) * rng.random()
        author = rng.choice((actor, principal(lead), actor))
        body = rng.choice(COMMENTS)
        internal = rng.random() < 0.3

        async def comment(
            now: datetime, who: Principal = author, text: str = body, inner: bool = internal
        ) -> None:
            _comment(world, task, who, text, inner, now)

        steps.append(_Step(at, len(steps), comment))
    if rng.random() < 0.04:
        add(done, Action.CANCEL, principal(lead), _cancel, "duplicate")
    else:
        add(done, Action.COMPLETE, actor, _complete(rng.choice(COMMENTS)))
        if rng.random() < 0.03:
            reopened = done + timedelta(hours=rng.uniform(1, 30))
            add(reopened, Action.REOPEN, principal(lead), _reopen, "the fix did not hold")
            again = reopened + timedelta(hours=rng.uniform(0.5, 12))
            add(again, Action.COMPLETE, actor, _complete("fixed for good"))
    return sorted(steps)


def _comment(
    world: World, task: Task, actor: Principal, body: str, internal: bool, now: datetime
) -> None:
    """The rows of the collaboration service's `create_comment` (no mentions in demo text)."""
    comment = Comment(
        id=uuid.uuid4(),
        task_id=task.id,
        actor_type=actor.actor_type.value,
        actor_id=actor.id,
        author_name=actor.name,
        author_id=actor.user_id,
        body=body,
        internal=internal,
        mentions=[],
        created_at=now,
        updated_at=now,
    )
    session = world.recorder.session
    session.add(comment)
    collaboration._record(
        session,
        actor,
        task,
        comment,
        "CREATED",
        now,
        before=None,
        after=collaboration._state(comment),
    )


def _plan_default_run(
    world: World, task: Task, events: list[SlaEvent], now: datetime
) -> list[EscalationEvent]:
    """What the relay's escalation consumer plans for these SLA events, with no escalation
    policy matching: a START breach of an open task nobody answered yet gets the default
    run (the team lead, a few minutes later)."""
    planned: list[EscalationEvent] = []
    for event in events:
        if event.event_type != "START_BREACH" or not event.notify:
            continue
        if TaskStatus(task.status) not in OPEN or task.acknowledged_at or task.started_at:
            continue
        outbox = next(
            row
            for row in reversed(world.recorder.added)
            if isinstance(row, OutboxEvent) and row.payload.get("event_id") == str(event.id)
        )
        rows = escalation_service.step_rows(
            task,
            run_id=escalation_service._run_id(outbox.id, "default"),
            policy=None,
            planned=escalation_service.plan(
                escalation_service.DEFAULT_STEPS, 0, None, event.due_at
            ),
            trigger="breach",
            sla_type="START",
            now=now,
        )
        world.recorder.add_all(rows)
        planned.extend(rows)
    return planned


async def _run(
    world: World,
    rng: random.Random,
    task: Task,
    clocks: dict[str, SlaClock],
    escalations: list[EscalationEvent],
    lead: User,
    steps: list[_Step],
) -> Played:
    """Play the planned changes in order, with the SLA and escalation engines waking up a
    moment after whatever of theirs comes due in between."""
    session = world.recorder.session
    end = world.end
    lag = timedelta(milliseconds=rng.uniform(150, 1500))  # the engines run a moment behind
    position = 0
    while True:
        next_step = steps[position].at if position < len(steps) else None
        due = [c.next_fire_at for c in clocks.values() if c.next_fire_at is not None]
        pending = [s for s in escalations if s.status == EscalationStatus.PENDING]
        wake = min(due) + lag if due else None
        wake_steps = min(s.fire_at for s in pending) + lag if pending else None
        first = min((w for w in (wake, wake_steps, next_step) if w is not None), default=None)
        if first is None or first > end:
            break
        world.clock.set(first)
        if first == wake:
            for clock in clocks.values():
                if clock.next_fire_at is not None and clock.next_fire_at <= first:
                    fired = fire_clock(session, clock, task, first)
                    escalations.extend(_plan_default_run(world, task, fired, first))
        elif first == wake_steps:
            for step in pending:
                if step.fire_at > first:
                    continue
                if TaskStatus(task.status) not in OPEN:
                    cancel(step, "task closed", first)
                else:
                    record_fired(session, step, task, [lead], first, ESCALATION_ACTOR)
        else:
            await steps[position].run(first)
            position += 1
    rows, pending_audit, events = world.recorder.take()
    # The recorder holds the task (added at its creation), its SLA events, comments and
    # escalation steps.
    return Played(task, [*rows, *clocks.values()], list(zip(pending_audit, events, strict=True)))
