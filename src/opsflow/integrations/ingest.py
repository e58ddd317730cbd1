"""What an alert event does to incidents, for every integration type.

- A dedup key is unique among the integration's *open* incidents (source
  ``integration:<id>``, task type INCIDENT, not completed, not cancelled).
- trigger: no open incident opens one (linked to the previous incident of the key, if
  any); an open one is updated — alert count, last seen, latest payload, kept in its
  metadata without an audit row (re-sends are not changes), its escalation untouched; a
  worse severity raises its priority through the task update rules (the SLA re-resolves).
- acknowledge: acknowledges the open incident.
- resolve: completes it when the integration auto-resolves, else records the resolution.
- Flapping: more than N open/resolve flips within M minutes (counted across the linked
  incidents of a key) marks the incident flapping (tag ``flapping``): a trigger after a
  resolution then reopens it instead of opening (and announcing) a new incident, and a
  resolve is recorded without completing it, until the flips in the window fall back to
  N or fewer — the next event then applies normally.

How the events of many requests are applied together (one unit of work, the writes
set-based, the event log) is integrations.batch; this module holds what one event does.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from opsflow.auth.principal import Principal, RequestMeta
from opsflow.context import AppContext
from opsflow.errors import AppError
from opsflow.integrations import repository, service
from opsflow.integrations.parsers import ACKNOWLEDGE, RESOLVE, TRIGGER, AlertEvent
from opsflow.integrations.schemas import SEVERITY_RANK, Severity
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.enums import ActorType, Priority, Scope, TaskStatus, TaskType
from opsflow.models.integration import AlertFlap, Integration
from opsflow.models.task import Task
from opsflow.sla import service as sla_service
from opsflow.tasks import service as tasks
from opsflow.tasks.schemas import TaskCreate, TaskUpdate

FLAPPING_TAG = "flapping"
PRUNE_EVERY = timedelta(hours=1)
_PRIORITY_RANK = {Priority.LOW: 0, Priority.MEDIUM: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}


@dataclass(frozen=True)
class Outcome:
    dedup_key: str
    action: str
    outcome: str
    task_id: uuid.UUID | None


def principal(integration: Integration, meta: RequestMeta | None = None) -> Principal:
    """Incidents are written by the integration: the audit names it, the user who set it
    up is recorded as creator."""
    return Principal(
        actor_type=ActorType.API,
        id=integration.id,
        name=f"{service.SOURCE_PREFIX}{integration.name}"[:255],
        team_id=integration.team_id,
        scopes=frozenset({Scope.TASKS_WRITE}),
        on_behalf_of=integration.created_by,
        meta=meta or RequestMeta(),
    )


@dataclass
class Run:
    session: AsyncSession
    ctx: AppContext
    integration: Integration
    actor: Principal
    source: str
    now: datetime
    loaded: list[sla_service.PolicyCatalog] = field(default_factory=list)
    # Set by a batch that read and locked its incidents at once and writes their changes
    # together (see integrations.batch): the task commands then change them in memory.
    preloaded: tasks.Preloaded | None = None
    deferred: bool = False

    async def catalog(self) -> sla_service.PolicyCatalog:
        """The SLA policies, loaded once per batch and only when an incident opens."""
        if not self.loaded:
            self.loaded.append(await sla_service.load_catalog(self.session))
        return self.loaded[0]


async def _open_incident(run: Run, key: str) -> Task | None:
    return await repository.latest_incident(run.session, run.source, key, open_only=True)


async def _last_incident(run: Run, key: str) -> Task | None:
    return await repository.latest_incident(run.session, run.source, key, open_only=False)


def alert_of(task: Task) -> dict[str, Any]:
    alert = (task.metadata_ or {}).get("alert")
    return dict(alert) if isinstance(alert, dict) else {}


# What one event may raise that fails it alone (the others of its batch apply).
ITEM_ERRORS = (AppError, ValidationError)

METADATA_BYTES = 15_000  # under the 16 KiB the task rules allow


def bounded(alert: dict[str, Any]) -> dict[str, Any]:
    """`alert` as JSON, its payload and links dropped when the whole would not fit."""
    kept: dict[str, Any] = to_jsonable(alert)
    if len(json.dumps(kept, ensure_ascii=False).encode()) > METADATA_BYTES:
        kept = {**kept, "payload": {"truncated": True}, "links": []}
    return kept


def _save_alert(task: Task, alert: dict[str, Any]) -> None:
    task.metadata_ = {**(task.metadata_ or {}), "alert": bounded(alert)}
    flag_modified(task, "metadata_")


def _recent_flips(run: Run, alert: dict[str, Any]) -> list[str]:
    since = run.now - timedelta(minutes=run.integration.flap_window_minutes)
    flips = [f for f in alert.get("flips", []) if isinstance(f, str)]
    return [f for f in flips if datetime.fromisoformat(f) >= since]


def priority_of(run: Run, severity: Severity) -> Priority:
    mapped = service.severity_map(run.integration).get(severity.value, Priority.HIGH)
    return Priority(mapped)


SEVERITIES = frozenset(s.value for s in Severity)


async def apply_event(
    run: Run, event: AlertEvent, known: tuple[Task | None] | None = None
) -> tuple[str, Task | None]:
    outcome, task = await _apply_one(run, event, known)
    if task is not None:
        await _track_flapping(run, task)
    return outcome, task


def _settle_at(run: Run, alert: dict[str, Any]) -> datetime:
    """When the flips in the window fall back to the threshold (or now, if they have)."""
    flips = sorted(datetime.fromisoformat(f) for f in _recent_flips(run, alert))
    over = len(flips) - run.integration.flap_threshold
    if over <= 0:
        return run.now
    # A flip counts while it is at most the window old: the `over`-th oldest must age out.
    window = timedelta(minutes=run.integration.flap_window_minutes)
    return flips[over - 1] + window + timedelta(seconds=1)


async def _track_flapping(run: Run, task: Task) -> None:
    """Give a flapping incident its settle check, planned at the instant it may settle. An
    incident no longer flapping keeps its row until the engine's pass drops it (``gone``):
    no read for the common case."""
    if not alert_of(task).get("flapping"):
        return
    settle_at = _settle_at(run, alert_of(task))
    flap = await run.session.get(AlertFlap, task.id)
    if flap is None:
        flap = AlertFlap(task_id=task.id, integration_id=run.integration.id, settle_at=settle_at)
        run.session.add(flap)
    else:
        flap.settle_at = settle_at


async def settle_flap(session: AsyncSession, ctx: AppContext, flap: AlertFlap) -> str:
    """The flapping engine's act on one due incident: still flapping, its next check is
    planned (``waiting``); else the flapping mark goes and what it held is released: a
    resolution held while flapping completes the incident when the integration
    auto-resolves (``resolved``), otherwise the incident just carries on (``settled``)."""
    task = await session.get(Task, flap.task_id)
    integration = await session.get(Integration, flap.integration_id)
    if task is None or integration is None or task.deleted_at is not None:
        await session.delete(flap)
        return "gone"
    run = Run(
        session,
        ctx,
        integration,
        principal(integration),
        service.source_of(integration),
        ctx.clock.now(),
    )
    alert = alert_of(task)
    if alert.get("flapping") and len(_recent_flips(run, alert)) > integration.flap_threshold:
        flap.settle_at = _settle_at(run, alert)
        return "waiting"
    await session.delete(flap)
    if not alert.get("flapping"):
        return "gone"
    _save_alert(task, {**alert, "flapping": False})
    await _tag(run, task, flapping=False)
    if alert.get("state") == "resolved" and task.completed_at is None and integration.auto_resolve:
        await _complete(run, task)
        return "resolved"
    return "settled"


async def _apply_one(
    run: Run, event: AlertEvent, known: tuple[Task | None] | None
) -> tuple[str, Task | None]:
    task = known[0] if known is not None else await _open_incident(run, event.dedup_key)
    if event.action == TRIGGER:
        if task is not None:
            return await _retrigger(run, event, task)
        return await _trigger_closed(run, event)
    if task is None:
        return "ignored", None
    if event.action == ACKNOWLEDGE:
        if task.acknowledged_at is not None:
            return "unchanged", task
        await tasks.acknowledge_task(_cmd(run, task))
        return "acknowledged", task
    assert event.action == RESOLVE
    return await _resolve(run, event, task)


def _cmd(run: Run, task: Task) -> tasks.TaskCommand:
    return tasks.TaskCommand(
        run.session,
        run.ctx,
        run.actor,
        task.id,
        preloaded=run.preloaded,
        catalog=run.loaded[0] if run.loaded else None,
        deferred=run.deferred,
    )


PAYLOAD_BYTES = 8192  # of the 16 KiB a task's metadata may hold


def _fit(payload: dict[str, Any]) -> dict[str, Any]:
    """The latest payload as kept on the incident: whole when small, else an excerpt."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    size = len(text.encode())
    if size <= PAYLOAD_BYTES:
        return payload
    return {"truncated": True, "size_bytes": size, "excerpt": text[:2048]}


def _links(links: list[Any]) -> list[dict[str, str]]:
    kept = []
    for link in links[:5]:
        if isinstance(link, dict) and isinstance(link.get("href"), str):
            text = link.get("text")
            kept.append(
                {"href": link["href"][:1000], "text": text[:200] if isinstance(text, str) else ""}
            )
    return kept


def details(event: AlertEvent) -> dict[str, Any]:
    return {
        "payload": _fit(event.payload),
        "links": _links(event.links),
        "severity": event.severity.value,
        "summary": event.summary,
        "source": event.source,
        "starts_at": event.starts_at,
        "ends_at": event.ends_at,
    }


async def _trigger_closed(run: Run, event: AlertEvent) -> tuple[str, Task | None]:
    previous = await _last_incident(run, event.dedup_key)
    flips: list[str] = []
    if previous is not None:
        before = alert_of(previous)
        ended = before.get("ends_at")
        if (
            event.starts_at is not None
            and isinstance(ended, str)
            and event.starts_at < datetime.fromisoformat(ended)
        ):
            # A re-send of the firing alert that was since resolved (senders retry, and
            # may deliver out of order): the alert did not fire again.
            return "stale", previous
        flips = [*_recent_flips(run, before), run.now.isoformat()]
        if len(flips) > run.integration.flap_threshold:
            # Flapping: bring the last incident back instead of announcing a new one.
            await tasks.reopen_task(_cmd(run, previous), "alert fired again while flapping")
            alert = {**before, **details(event), "state": "firing", "flips": flips}
            alert["count"] = int(before.get("count", 1)) + 1
            alert["last_seen"] = run.now
            alert["flapping"] = True
            _save_alert(previous, alert)
            await _tag(run, previous, flapping=True)
            return "reopened", previous
    return "created", await _open_new(run, event, previous, flips)


def new_incident(
    run: Run, event: AlertEvent, previous: Task | None, flips: list[str]
) -> tuple[TaskCreate, tasks.ExternalRef]:
    """What a new incident for the alert is made of: its task and where it comes from."""
    alert = {
        **details(event),
        "dedup_key": event.dedup_key,
        "count": 1,
        "first_seen": run.now,
        "last_seen": run.now,
        "state": "firing",
        "flips": flips or [run.now.isoformat()],
        "flapping": False,
    }
    if previous is not None:
        alert["previous_incident"] = str(previous.id)
    integration = run.integration
    data = TaskCreate(
        title=(event.summary or f"Alert {event.dedup_key}")[:500],
        description=description(event),
        task_type=TaskType.INCIDENT,
        priority=priority_of(run, event.severity),
        team_id=integration.team_id,
        service=event.source[:255] if event.source else None,
        tags=["alert", integration.type],
        metadata={
            "integration": {
                "id": str(integration.id),
                "name": integration.name,
                "type": integration.type,
            },
            "alert": bounded(alert),
        },
    )
    origin = tasks.ExternalRef(
        run.source,
        f"{event.dedup_key[:200]}#{uuid.uuid4().hex[:12]}",
        dedup_key=event.dedup_key,
    )
    return data, origin


async def _open_new(run: Run, event: AlertEvent, previous: Task | None, flips: list[str]) -> Task:
    """A new incident for the alert."""
    data, origin = new_incident(run, event, previous, flips)
    return await tasks.create_task(
        run.session, run.ctx, run.actor, data, origin, await run.catalog()
    )


def description(event: AlertEvent) -> str | None:
    lines = []
    if event.source:
        lines.append(f"Source: {event.source}")
    lines.append(f"Severity: {event.severity.value}")
    for link in event.links[:5]:
        if isinstance(link, dict) and isinstance(link.get("href"), str):
            lines.append(f"Link: {link['href']}")
    return "\n".join(lines)


async def _retrigger(run: Run, event: AlertEvent, task: Task) -> tuple[str, Task | None]:
    outcome = "updated"
    before = alert_of(task)
    old = before.get("severity")
    worse = old not in {s.value for s in Severity} or (
        SEVERITY_RANK[event.severity] > SEVERITY_RANK[Severity(old)]
    )
    wanted = priority_of(run, event.severity)
    if worse and _PRIORITY_RANK[wanted] > _PRIORITY_RANK[Priority(task.priority)]:
        await run.catalog()  # the new priority may match another SLA policy
        await tasks.update_task(_cmd(run, task), TaskUpdate(priority=wanted))
        outcome = "escalated"
    alert = {**before, **details(event)}
    if old in {s.value for s in Severity} and not worse:
        alert["severity"] = old  # the incident keeps the worst severity seen
    alert["count"] = int(before.get("count", 1)) + 1
    alert["last_seen"] = run.now
    if before.get("state") == "resolved":  # a held resolution, then the alert fired again
        alert["flips"] = [*_recent_flips(run, before), run.now.isoformat()]
        alert["state"] = "firing"
    _save_alert(task, alert)
    await _settle(run, task)
    return outcome, task


async def _resolve(run: Run, event: AlertEvent, task: Task) -> tuple[str, Task | None]:
    before = alert_of(task)
    flips = _recent_flips(run, before)
    if before.get("state") != "resolved":
        flips.append(run.now.isoformat())
    alert = {**before, "state": "resolved", "flips": flips, "last_seen": run.now}
    alert["ends_at"] = event.ends_at or run.now
    flapping = len(flips) > run.integration.flap_threshold
    alert["flapping"] = flapping
    _save_alert(task, alert)
    if flapping:
        await _tag(run, task, flapping=True)
        return "held", task
    if FLAPPING_TAG in (task.tags or []):
        await _tag(run, task, flapping=False)
    if not run.integration.auto_resolve:
        return "recorded", task
    await _complete(run, task)
    return "resolved", task


async def _settle(run: Run, task: Task) -> None:
    """A flapping incident whose flips fell back within the threshold is flapping no more."""
    alert = alert_of(task)
    if not alert.get("flapping"):
        return
    if len(_recent_flips(run, alert)) > run.integration.flap_threshold:
        return
    alert["flapping"] = False
    _save_alert(task, alert)
    await _tag(run, task, flapping=False)


async def _tag(run: Run, task: Task, *, flapping: bool) -> None:
    tags = [t for t in (task.tags or []) if t != FLAPPING_TAG]
    if flapping:
        tags.append(FLAPPING_TAG)
    if tags != list(task.tags or []):
        await tasks.update_task(_cmd(run, task), TaskUpdate(tags=tags))


async def _complete(run: Run, task: Task) -> None:
    cmd = _cmd(run, task)
    if TaskStatus(task.status) in (TaskStatus.CREATED, TaskStatus.ASSIGNED):
        await tasks.start_task(cmd)
    await tasks.complete_task(cmd, "resolved by the monitoring system")
