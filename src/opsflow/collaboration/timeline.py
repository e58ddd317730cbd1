"""A task's timeline: one stream of what happened to it, ordered by time.

Each kind of record is a *source*: a function that returns, for one task and one reader, its
entries after a position, oldest first, at most `limit` of them. The timeline asks every
source the requested kinds belong to and merges their answers. Entries sort by
(time, source rank, key): at one instant a cause comes before its effects (the alert before
the task it opened, the SLA breach before the escalation it fired, the escalation before its
notifications), and `key` orders a source's rows that share an instant (the audit sequence
for task changes, the row id elsewhere). A cursor is the last entry's (time, source, key):
the next page resumes exactly after it.

Adding a source: write ``async def fetch(session, task, reader, after, kinds, limit)``
returning :class:`Entry` values (the rows strictly after `after`, see
`repository.after_clause`), and call :func:`register` with a `Source` naming it, its rank and
the kinds it produces (another package does this when it is imported: `register` replaces a
source of the same name). `reader` says what the caller may see; a source leaves out what
the reader may not.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.permissions import Permission, Reach, reach_of
from opsflow.auth.principal import Principal
from opsflow.collaboration import repository
from opsflow.collaboration.repository import After
from opsflow.collaboration.service import reads_internal
from opsflow.errors import ValidationFailed
from opsflow.kit import cursor as cursors
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.sla import SlaEvent
from opsflow.models.task import Task

SUMMARY_CHARS = 140


@dataclass(frozen=True)
class Reader:
    """Who reads the timeline, and so what it shows."""

    principal: Principal
    internal_comments: bool
    notifications: Reach | None

    @classmethod
    def of(cls, principal: Principal) -> Reader:
        return cls(
            principal,
            internal_comments=reads_internal(principal),
            notifications=reach_of(principal, Permission.NOTIFICATIONS_READ),
        )


@dataclass(frozen=True)
class Entry:
    occurred_at: datetime
    source: str
    key: str
    kind: str
    summary: str
    actor: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def sort_key(self) -> tuple[datetime, int, str]:
        return (self.occurred_at, rank(self.source), self.key)

    @property
    def id(self) -> str:
        return f"{self.source}:{self.key}"


Fetch = Callable[
    [AsyncSession, Task, Reader, After | None, frozenset[str], int], Awaitable[list[Entry]]
]


@dataclass(frozen=True)
class Source:
    name: str
    rank: int  # the order of sources within one instant (lower first)
    kinds: frozenset[str]
    fetch: Fetch


SOURCES: dict[str, Source] = {}


def register(source: Source) -> None:
    taken = [s.name for s in SOURCES.values() if s.rank == source.rank and s.name != source.name]
    if taken:
        raise ValueError(f"timeline source rank {source.rank} is {taken[0]}'s")
    SOURCES[source.name] = source


def rank(name: str) -> int:
    return SOURCES[name].rank


def kinds() -> list[str]:
    return sorted({k for s in SOURCES.values() for k in s.kinds})


def short(text: str | None, limit: int = SUMMARY_CHARS) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _actor(kind: str, ident: object, name: str | None) -> dict[str, Any]:
    return {"type": kind, "id": None if ident is None else str(ident), "name": name}


SYSTEM = _actor("system", None, "OpsFlow")


# --- task changes (the audit trail of the task) ----------------------------------------------

_TASK_KINDS: dict[str, str] = {
    "TASK_CREATED": "created",
    "TASK_ASSIGNED": "assignment",
    "TASK_ACKNOWLEDGED": "status",
    "TASK_STARTED": "status",
    "TASK_BLOCKED": "status",
    "TASK_UNBLOCKED": "status",
    "TASK_COMPLETED": "status",
    "TASK_REOPENED": "status",
    "TASK_CANCELLED": "status",
    "TASK_UPDATED": "update",
    "TASK_SNOOZED": "update",
    "SLA_PAUSED": "sla",
    "SLA_RESUMED": "sla",
}
_VERBS = {
    "TASK_ACKNOWLEDGED": "acknowledged",
    "TASK_STARTED": "started",
    "TASK_BLOCKED": "blocked",
    "TASK_UNBLOCKED": "unblocked",
    "TASK_COMPLETED": "completed",
    "TASK_REOPENED": "reopened",
    "TASK_CANCELLED": "cancelled",
    "TASK_SNOOZED": "snoozed",
    "SLA_PAUSED": "paused the SLA clocks of",
    "SLA_RESUMED": "resumed the SLA clocks of",
}


def _change(changes: dict[str, Any] | None, name: str) -> tuple[Any, Any] | None:
    value = (changes or {}).get(name)
    if isinstance(value, dict) and ("from" in value or "to" in value):
        return value.get("from"), value.get("to")
    return None


async def _task_changes(
    session: AsyncSession,
    task: Task,
    reader: Reader,
    after: After | None,
    wanted: frozenset[str],
    limit: int,
) -> list[Entry]:
    actions = [a for a, k in _TASK_KINDS.items() if k in wanted]
    rows = await repository.task_audit_rows(session, task.id, actions, after, rank("task"), limit)
    people: set[uuid.UUID] = set()
    for row in rows:
        for name in ("assigned_to",):
            moved = _change(row.changes, name)
            for value in moved or ():
                if value:
                    people.add(uuid.UUID(str(value)))
        if row.action == "TASK_CREATED" and (row.new_state or {}).get("assigned_to"):
            people.add(uuid.UUID(str(row.new_state["assigned_to"])))  # type: ignore[index]
    names = await repository.display_names(session, people)

    def name_of(value: object) -> str:
        try:
            return names.get(uuid.UUID(str(value)), "someone")
        except ValueError:
            return "someone"

    entries = []
    for row in rows:
        who = row.actor_name or row.actor_type
        kind = _TASK_KINDS[row.action]
        data: dict[str, Any] = {"action": row.action}
        status = _change(row.changes, "status")
        if status is not None:
            data["status"] = {"from": status[0], "to": status[1]}
        if row.action == "TASK_CREATED":
            state = row.new_state or {}
            summary = f"{who} created the task"
            if state.get("assigned_to"):
                summary += f", assigned to {name_of(state['assigned_to'])}"
            data["status"] = {"from": None, "to": state.get("status")}
        elif row.action == "TASK_ASSIGNED":
            moved = _change(row.changes, "assigned_to")
            target = name_of(moved[1]) if moved and moved[1] else "additional assignees"
            summary = f"{who} assigned the task to {target}"
        elif row.action == "TASK_UPDATED":
            fields = sorted((row.changes or {}).keys())
            data["fields"] = fields
            summary = f"{who} changed {', '.join(fields) or 'the task'}"
        else:
            summary = f"{who} {_VERBS[row.action]} the task"
            if status is not None and status[0] != status[1]:
                summary += f" ({status[0]} → {status[1]})"
        reason = (row.metadata_ or {}).get("reason")
        if reason:
            summary += f": {short(str(reason), 80)}"
        entries.append(
            Entry(
                occurred_at=row.timestamp,
                source="task",
                key=f"{row.seq:020d}",
                kind=kind,
                summary=summary,
                actor=_actor(row.actor_type, row.actor_id, row.actor_name),
                data=data,
            )
        )
    return entries


# --- SLA thresholds ---------------------------------------------------------------------------


async def _sla_events(
    session: AsyncSession,
    task: Task,
    reader: Reader,
    after: After | None,
    wanted: frozenset[str],
    limit: int,
) -> list[Entry]:
    rows = await repository.sla_event_rows(session, task.id, after, rank("sla"), limit)
    return [
        Entry(
            occurred_at=row.triggered_at,
            source="sla",
            key=str(row.id),
            kind="sla",
            summary=_sla_summary(row),
            actor=SYSTEM,
            data=to_jsonable(
                {
                    "event_type": row.event_type,
                    "severity": row.severity,
                    "sla_type": row.sla_type,
                    "due_at": row.due_at,
                    "expected_deadline": row.expected_deadline,
                }
            ),
        )
        for row in rows
    ]


def _sla_summary(row: SlaEvent) -> str:
    deadline = to_jsonable(row.expected_deadline)
    if row.event_type == "ESCALATION":
        return f"SLA escalation to level {row.escalation_level} (deadline {deadline})"
    return f"SLA {row.event_type.replace('_', ' ').lower()} (deadline {deadline})"


# --- escalations fired -------------------------------------------------------------------------


async def _escalations(
    session: AsyncSession,
    task: Task,
    reader: Reader,
    after: After | None,
    wanted: frozenset[str],
    limit: int,
) -> list[Entry]:
    rows = await repository.fired_escalation_rows(
        session, task.id, after, rank("escalation"), limit
    )
    entries = []
    for row in rows:
        assert row.fired_at is not None
        recipients = [
            str(r.get("username") or r.get("id"))
            for r in row.recipients or []
            if isinstance(r, dict)
        ]
        summary = f"Escalation level {row.level} fired ({row.policy_name})"
        if recipients:
            summary += f" to {', '.join(recipients)}"
        entries.append(
            Entry(
                occurred_at=row.fired_at,
                source="escalation",
                key=str(row.id),
                kind="escalation",
                summary=summary,
                actor=SYSTEM,
                data={
                    "level": row.level,
                    "policy": row.policy_name,
                    "trigger": row.trigger,
                    "channels": list(row.channels or []),
                    "recipients": recipients,
                },
            )
        )
    return entries


# --- notifications sent or given up -------------------------------------------------------------


async def _notifications(
    session: AsyncSession,
    task: Task,
    reader: Reader,
    after: After | None,
    wanted: frozenset[str],
    limit: int,
) -> list[Entry]:
    if reader.notifications is None:
        return []
    own = reader.principal.id if reader.notifications is not Reach.ALL else None
    rows = await repository.finished_notification_rows(
        session, task.id, own, after, rank("notification"), limit
    )
    entries = []
    for row in rows:
        at = row.sent_at or row.failed_at
        assert at is not None
        outcome = "sent" if row.status == "SENT" else "given up (dead)"
        entries.append(
            Entry(
                occurred_at=at,
                source="notification",
                key=str(row.id),
                kind="notification",
                summary=(
                    f"{row.channel.capitalize()} {row.notification_type} to {row.recipient}:"
                    f" {outcome}"
                ),
                actor=SYSTEM,
                data={
                    "notification_id": str(row.id),
                    "channel": row.channel,
                    "status": row.status,
                    "recipient": row.recipient,
                    "notification_type": row.notification_type,
                },
            )
        )
    return entries


# --- comments ----------------------------------------------------------------------------------


async def _comments(
    session: AsyncSession,
    task: Task,
    reader: Reader,
    after: After | None,
    wanted: frozenset[str],
    limit: int,
) -> list[Entry]:
    rows = await repository.comment_rows(
        session, task.id, reader.internal_comments, after, rank("comment"), limit
    )
    return [
        Entry(
            occurred_at=row.created_at,
            source="comment",
            key=str(row.id),
            kind="comment",
            summary=(
                f"{row.author_name} commented{' (internal)' if row.internal else ''}:"
                f" {short(row.body, 100)}"
            ),
            actor=_actor(row.actor_type, row.actor_id, row.author_name),
            data=to_jsonable(
                {"comment_id": row.id, "internal": row.internal, "edited_at": row.edited_at}
            ),
        )
        for row in rows
    ]


# --- ingested alert updates ---------------------------------------------------------------------


async def _alerts(
    session: AsyncSession,
    task: Task,
    reader: Reader,
    after: After | None,
    wanted: frozenset[str],
    limit: int,
) -> list[Entry]:
    rows = await repository.alert_rows(session, task.id, after, rank("alert"), limit)
    entries = []
    for event, integration in rows:
        summary = f"Alert {event.action} from {integration or 'an integration'}: {event.outcome}"
        if event.summary:
            summary += f" ({short(event.summary, 80)})"
        entries.append(
            Entry(
                occurred_at=event.received_at,
                source="alert",
                key=str(event.id),
                kind="alert",
                summary=summary,
                actor=_actor("integration", event.integration_id, integration),
                data={
                    "action": event.action,
                    "outcome": event.outcome,
                    "dedup_key": event.dedup_key,
                },
            )
        )
    return entries


for _source in (
    Source("alert", 10, frozenset({"alert"}), _alerts),
    Source("task", 20, frozenset(set(_TASK_KINDS.values())), _task_changes),
    Source("comment", 30, frozenset({"comment"}), _comments),
    Source("sla", 50, frozenset({"sla"}), _sla_events),
    Source("escalation", 60, frozenset({"escalation"}), _escalations),
    Source("notification", 70, frozenset({"notification"}), _notifications),
):
    register(_source)


# --- the merged stream ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """A cursor as read: the last entry's time, source name and key."""

    at: datetime
    source: str
    key: str


def parse_after(cursor: str | None) -> Position | None:
    if cursor is None:
        return None
    at, source, key = cursors.decode(cursor, 3)
    return Position(cursors.instant(at), source, key)


def check_kinds(requested: Collection[str]) -> frozenset[str]:
    known = set(kinds())
    unknown = sorted(set(requested) - known)
    if unknown:
        raise ValidationFailed(
            details=[{"field": "kind", "message": f"Must be one of: {', '.join(sorted(known))}"}]
        )
    return frozenset(requested) or frozenset(known)


async def page(
    session: AsyncSession,
    task: Task,
    principal: Principal,
    *,
    cursor: str | None,
    wanted: frozenset[str],
    limit: int,
) -> tuple[list[Entry], str | None]:
    """One page of the task's timeline for this reader, and the cursor of the next one."""
    after = parse_after(cursor)
    if after is not None and after.source not in SOURCES:
        raise ValidationFailed(
            details=[{"field": "cursor", "message": "not a cursor this list gave out"}]
        )
    position = None if after is None else After(after.at, rank(after.source), after.key)
    reader = Reader.of(principal)
    merged: list[Entry] = []
    for source in SOURCES.values():
        asked = source.kinds & wanted
        if not asked:
            continue
        try:
            found = await source.fetch(session, task, reader, position, asked, limit + 1)
        except ValueError as exc:  # a cursor key this source cannot read
            raise ValidationFailed(
                details=[{"field": "cursor", "message": "not a cursor this list gave out"}]
            ) from exc
        merged.extend(e for e in found if e.kind in asked)
    merged.sort(key=lambda e: e.sort_key)
    more = len(merged) > limit
    merged = merged[:limit]
    next_cursor = None
    if more:
        last = merged[-1]
        next_cursor = cursors.encode(last.occurred_at.isoformat(), last.source, last.key)
    return merged, next_cursor
