"""Heartbeat monitors: their configuration, and the signals their jobs send.

A signal is authenticated by the monitor's ping key alone (the key is in the URL the job
calls). Every signal is stored (the newest `PINGS_KEPT` per monitor are kept) and acts in
the same transaction as its record:

- success (or exit code 0): the monitor is up, the next signal is expected one period (or
  the next cron instant) later, and an open incident is completed;
- start: a run begins; with a maximum run time, the run must finish by then or the engine
  opens an incident. Runs are paired by `rid`: several may run at once; a start without
  `rid` replaces the previous start without one;
- fail (or a non-zero exit code): the monitor is down and an incident opens (one per
  monitor while it is open).

A new monitor is not armed until its first signal. A paused monitor records signals and
changes nothing else: it never alerts. Resuming it returns it to `new`.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.principal import Principal
from opsflow.context import AppContext
from opsflow.errors import NotFound, ValidationFailed
from opsflow.events.changes import record_change
from opsflow.heartbeats import incidents, repository
from opsflow.heartbeats.schedule import State, check_cron, next_expected, state_at
from opsflow.heartbeats.schemas import (
    MonitorCreate,
    MonitorRead,
    MonitorUpdate,
    SignalResult,
)
from opsflow.heartbeats.transitions import replan
from opsflow.kit.changes import field_changes
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.enums import TaskStatus
from opsflow.models.heartbeat import HeartbeatMonitor, HeartbeatPing, HeartbeatRun
from opsflow.models.task import Task
from opsflow.models.team import Team
from opsflow.tasks.lifecycle import OPEN

SIGNAL_PATH = "/api/v1/heartbeats/"
MAX_BODY_CHARS = 1000
MAX_EXIT_CODE = 255


CONFIG_FIELDS = (
    "name",
    "period_seconds",
    "cron",
    "timezone",
    "grace_seconds",
    "max_run_seconds",
    "team_id",
    "priority",
    "paused",
)


def _config(monitor: HeartbeatMonitor) -> dict[str, Any]:
    """What the audit trail records of a monitor (never its key: the key is the secret)."""
    state: dict[str, Any] = to_jsonable({name: getattr(monitor, name) for name in CONFIG_FIELDS})
    return state


def _audit(
    session: AsyncSession,
    actor: Principal,
    monitor: HeartbeatMonitor,
    action: str,
    now: datetime,
    **states: Any,
) -> None:
    record_change(
        session,
        actor,
        entity_type="heartbeat_monitor",
        entity_id=monitor.id,
        action=f"HEARTBEAT_MONITOR_{action.upper()}",
        event_type=f"heartbeat_monitor.{action}",
        payload={"id": monitor.id, "name": monitor.name},
        now=now,
        **states,
    )


def new_key() -> str:
    return secrets.token_urlsafe(24)  # 32 characters, 192 bits


def view(ctx: AppContext, monitor: HeartbeatMonitor, running: int, now: datetime) -> MonitorRead:
    return MonitorRead(
        id=monitor.id,
        name=monitor.name,
        ping_key=monitor.ping_key,
        ping_url=ctx.settings.public_url.rstrip("/") + SIGNAL_PATH + monitor.ping_key,
        period_seconds=monitor.period_seconds,
        cron=monitor.cron,
        timezone=monitor.timezone,
        grace_seconds=monitor.grace_seconds,
        max_run_seconds=monitor.max_run_seconds,
        team_id=monitor.team_id,
        priority=monitor.priority,
        paused=monitor.paused,
        state=state_at(
            stored=monitor.state,
            paused=monitor.paused,
            next_due_at=monitor.next_due_at,
            now=now,
        ).value,
        last_ping_at=monitor.last_ping_at,
        last_success_at=monitor.last_success_at,
        next_due_at=monitor.next_due_at,
        running=running,
        open_incident_id=monitor.open_task_id,
        created_at=monitor.created_at,
        updated_at=monitor.updated_at,
    )


async def read(ctx: AppContext, session: AsyncSession, monitor: HeartbeatMonitor) -> MonitorRead:
    runs = await repository.runs(session, monitor.id)
    shown = view(ctx, monitor, len(runs), ctx.clock.now())
    if monitor.open_task_id is not None:
        # An incident closed by hand is no longer the monitor's open incident.
        task = await session.get(Task, monitor.open_task_id)
        if task is None or TaskStatus(task.status) not in OPEN:
            shown.open_incident_id = None
    return shown


async def get(
    session: AsyncSession, monitor_id: uuid.UUID, *, for_update: bool = False
) -> HeartbeatMonitor:
    monitor = await repository.get(session, monitor_id, for_update=for_update)
    if monitor is None:
        raise NotFound("Heartbeat monitor not found", resource="heartbeat_monitor")
    return monitor


def _check_schedule(cron: str | None, timezone: str) -> None:
    if cron is None:
        return
    problem = check_cron(cron, timezone)
    if problem is not None:
        field = "timezone" if problem.startswith("timezone") else "cron"
        raise ValidationFailed(details=[{"field": field, "message": problem}])


async def _check_team(session: AsyncSession, team_id: uuid.UUID | None) -> None:
    if team_id is not None and await session.get(Team, team_id) is None:
        raise ValidationFailed(details=[{"field": "team_id", "message": "no such team"}])


async def create(
    session: AsyncSession, ctx: AppContext, actor: Principal, data: MonitorCreate
) -> HeartbeatMonitor:
    _check_schedule(data.cron, data.timezone)
    await _check_team(session, data.team_id)
    if actor.user_id is None:
        raise ValidationFailed("Heartbeat monitors are created by a signed-in user")
    now = ctx.clock.now()
    monitor = HeartbeatMonitor(
        id=uuid.uuid4(),
        name=data.name,
        ping_key=new_key(),
        period_seconds=data.period_seconds,
        cron=data.cron,
        timezone=data.timezone,
        grace_seconds=data.grace_seconds,
        max_run_seconds=data.max_run_seconds,
        team_id=data.team_id,
        priority=data.priority.value,
        paused=data.paused,
        state=State.NEW.value,
        incident_count=0,
        ping_count=0,
        created_by=actor.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(monitor)
    await session.flush()
    _audit(session, actor, monitor, "created", now, new_state=_config(monitor))
    return monitor


async def update(
    session: AsyncSession,
    ctx: AppContext,
    actor: Principal,
    monitor_id: uuid.UUID,
    data: MonitorUpdate,
) -> HeartbeatMonitor:
    monitor = await get(session, monitor_id, for_update=True)
    before = _config(monitor)
    given = data.model_fields_set
    values: dict[str, Any] = {name: getattr(data, name) for name in given}
    for required in ("name", "timezone", "grace_seconds", "priority", "paused"):
        if required in values and values[required] is None:
            raise ValidationFailed(details=[{"field": required, "message": "must not be null"}])
    period = values.get("period_seconds", monitor.period_seconds)
    cron = values.get("cron", monitor.cron)
    if "cron" in given and cron is not None and "period_seconds" not in given:
        period = None  # switching to a cron schedule
    if "period_seconds" in given and period is not None and "cron" not in given:
        cron = None  # switching to a period
    if (period is None) == (cron is None):
        raise ValidationFailed(
            details=[{"field": "cron", "message": "give exactly one of period_seconds and cron"}]
        )
    timezone = values.get("timezone") or monitor.timezone
    _check_schedule(cron, timezone)
    if "team_id" in given:
        await _check_team(session, values["team_id"])
    now = ctx.clock.now()
    for name in ("name", "grace_seconds", "max_run_seconds", "team_id"):
        if name in given:
            setattr(monitor, name, values[name])
    if values.get("priority") is not None:
        monitor.priority = values["priority"].value
    monitor.period_seconds, monitor.cron, monitor.timezone = period, cron, timezone
    runs = await repository.runs(session, monitor.id)
    if "paused" in given and values["paused"] != monitor.paused:
        monitor.paused = values["paused"]
        if not monitor.paused:
            # Resumed: armed again by the next signal; runs started before do not count.
            monitor.state, monitor.next_due_at = State.NEW.value, None
            for run in runs:
                await session.delete(run)
            runs = []
    if monitor.state != State.NEW and monitor.last_success_at is not None:
        monitor.next_due_at = _expected(monitor, monitor.last_success_at)
    replan(monitor, runs)
    monitor.updated_at = now
    await session.flush()
    changes = field_changes(before, _config(monitor))
    if changes:
        _audit(session, actor, monitor, "updated", now, changes=changes)
    return monitor


async def rotate_key(
    session: AsyncSession, ctx: AppContext, actor: Principal, monitor_id: uuid.UUID
) -> HeartbeatMonitor:
    monitor = await get(session, monitor_id, for_update=True)
    monitor.ping_key = new_key()
    monitor.updated_at = ctx.clock.now()
    await session.flush()
    _audit(session, actor, monitor, "key_rotated", monitor.updated_at)
    return monitor


async def delete(
    session: AsyncSession, ctx: AppContext, actor: Principal, monitor_id: uuid.UUID
) -> None:
    monitor = await get(session, monitor_id, for_update=True)
    _audit(session, actor, monitor, "deleted", ctx.clock.now(), previous_state=_config(monitor))
    await repository.delete_monitor(session, monitor)


def _expected(monitor: HeartbeatMonitor, after: datetime) -> datetime:
    return next_expected(
        period_seconds=monitor.period_seconds,
        cron=monitor.cron,
        timezone=monitor.timezone,
        after=after,
    )


# --- signals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    kind: str  # success | start | fail
    exit_code: int | None = None
    rid: str | None = None
    method: str = "GET"
    remote_addr: str | None = None
    user_agent: str | None = None
    body: str | None = None


def parse_suffix(suffix: str | None) -> tuple[str, int | None]:
    """(kind, exit code) of the path after the key: nothing, start, fail or an exit code."""
    if suffix is None:
        return "success", None
    if suffix in ("start", "fail"):
        return suffix, None
    if suffix.isascii() and suffix.isdigit() and len(suffix) <= 3:
        code = int(suffix)
        if code <= MAX_EXIT_CODE:
            return ("success" if code == 0 else "fail"), code
    raise ValidationFailed(
        details=[
            {
                "field": "path",
                "message": f"expected start, fail or an exit code 0-{MAX_EXIT_CODE}",
            }
        ]
    )


def clean_text(value: str | None, limit: int) -> str | None:
    """Text as received, bounded, with NUL (which PostgreSQL text cannot hold) replaced."""
    if value is None:
        return None
    return value[:limit].replace("\x00", "\ufffd")


async def receive(session: AsyncSession, ctx: AppContext, key: str, signal: Signal) -> SignalResult:
    monitor = await repository.by_key(session, key)
    if monitor is None:
        raise NotFound("No heartbeat monitor has this key", resource="heartbeat_monitor")
    now = ctx.clock.now()
    monitor.ping_count += 1
    monitor.last_ping_at = now
    ping = HeartbeatPing(
        id=uuid.uuid4(),
        monitor_id=monitor.id,
        seq=monitor.ping_count,
        kind=signal.kind,
        exit_code=signal.exit_code,
        rid=signal.rid,
        received_at=now,
        method=signal.method,
        remote_addr=clean_text(signal.remote_addr, 64),
        user_agent=clean_text(signal.user_agent, 512),
        body=clean_text(signal.body, MAX_BODY_CHARS),
    )
    if monitor.paused:
        ping.effect = "paused"
    else:
        ping.effect = await _apply(session, ctx, monitor, signal, ping, now)
    monitor.updated_at = now
    session.add(ping)
    await session.flush()
    await repository.prune_pings(session, monitor)
    state = state_at(
        stored=monitor.state, paused=monitor.paused, next_due_at=monitor.next_due_at, now=now
    )
    return SignalResult(monitor_id=monitor.id, kind=signal.kind, state=state, effect=ping.effect)


async def _apply(
    session: AsyncSession,
    ctx: AppContext,
    monitor: HeartbeatMonitor,
    signal: Signal,
    ping: HeartbeatPing,
    now: datetime,
) -> str:
    runs = await repository.runs(session, monitor.id)
    rid = signal.rid or ""
    run = next((r for r in runs if r.rid == rid), None)
    effect = signal.kind
    if monitor.state == State.NEW:
        # The first signal arms the monitor: the next one is expected from now on.
        monitor.state = State.UP.value
        monitor.next_due_at = _expected(monitor, now)
    if signal.kind == "start":
        deadline = (
            now + timedelta(seconds=monitor.max_run_seconds) if monitor.max_run_seconds else None
        )
        if run is None:
            run = HeartbeatRun(id=uuid.uuid4(), monitor_id=monitor.id, rid=rid)
            session.add(run)
            runs.append(run)
        run.started_at, run.deadline_at = now, deadline
    else:
        if run is not None:
            ping.duration_seconds = int((now - run.started_at).total_seconds())
            runs.remove(run)
            await session.delete(run)
        if signal.kind == "success":
            monitor.state = State.UP.value
            monitor.last_success_at = now
            monitor.next_due_at = _expected(monitor, now)
            if await incidents.resolve_incident(session, ctx, monitor):
                effect = "resolved"
        else:
            monitor.state = State.DOWN.value
            reason = (
                f"the job failed with exit code {signal.exit_code}"
                if signal.exit_code is not None
                else "the job signalled a failure"
            )
            if await incidents.open_incident(session, ctx, monitor, reason):
                effect = "opened"
    replan(monitor, runs)
    return effect


# Reads with no rule beyond their query: the repository's functions, as this service's API
# (endpoints call services only).
listing = repository.listing
pings = repository.pings
