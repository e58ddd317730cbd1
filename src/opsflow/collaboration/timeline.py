"""A task's timeline: one stream of what happened to it, ordered by time.

Each kind of record is a *source*: a function that returns, for one task and one reader, its
entries after a position, oldest first, at most `limit` of them. The timeline asks every
source the requested kinds belong to and merges their answers. Entries sort by
(time, source rank, key): at one instant a cause comes before its effects (the alert before
the task it opened, the SLA breach before the escalation it fired, the escalation before its
notifications), and `key` orders a source's rows that share an instant (the audit sequence
for task changes, the row id elsewhere). A cursor is the last entry's (time, source, key):
the next page resumes exactly after it.

Adding a source: most are :func:`from_rows`, given an ``async def rows(ask)`` that reads
the rows strictly after ``ask.after`` (see `repository.after_clause`) which ``ask.reader`` may
see, oldest first, at most ``ask.limit``, and a ``say(row)`` returning the :class:`Said` of one
row; pass the result to :func:`register` (another package does this when it is imported:
`register` replaces a source of the same name). A source can also be a :class:`Source` with its
own ``async def fetch(session, task, reader, after, kinds, limit)`` returning :class:`Entry`
values.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.permissions import Permission, Reach, reach_of
from opsflow.auth.principal import Principal
from opsflow.collaboration import repository
from opsflow.collaboration.repository import After
from opsflow.collaboration.service import reads_internal
from opsflow.errors import ValidationFailed
from opsflow.kit import cursor as cursors
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.audit import AuditLog
from opsflow.models.collaboration import Comment
from opsflow.models.escalation import EscalationEvent
from opsflow.models.integration import IntegrationEvent
from opsflow.models.notification import Notification
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


def actor(kind: str, ident: object, name: str | None) -> dict[str, Any]:
    return {"type": kind, "id": None if ident is None else str(ident), "name": name}


SYSTEM = actor("system", None, "OpsFlow")


# --- sources built from rows ------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """One source's share of a page: the task, the reader, the position to resume after (in
    this source's rank), the kinds asked for and how many rows at most."""

    session: AsyncSession
    task: Task
    reader: Reader
    after: After | None
    wanted: frozenset[str]
    limit: int
    rank: int


@dataclass(frozen=True)
class Said:
    """What a source says of one of its rows; `kind` defaults to the source's name."""

    at: datetime
    key: str
    summary: str
    actor: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None


Row = TypeVar("Row")


def from_rows(
    name: str,
    rank_: int,
    kinds_: Collection[str],
    rows: Callable[[Ask], Awaitable[Iterable[Row]]],
    say: Callable[[Row], Said],
) -> Source:
    """A source that reads its rows (those the reader may see, after the position, oldest
    first, at most `limit`) and says one entry of each."""

    async def fetch(
        session: AsyncSession,
        task: Task,
        reader: Reader,
        after: After | None,
        wanted: frozenset[str],
        limit: int,
    ) -> list[Entry]:
        found = await rows(Ask(session, task, reader, after, wanted, limit, rank_))
        entries = []
        for row in found:
            said = say(row)
            entries.append(
                Entry(
                    occurred_at=said.at,
                    source=name,
                    key=said.key,
                    kind=said.kind or name,
                    summary=said.summary,
                    actor=said.actor,
                    data=said.data,
                )
            )
        return entries

    return Source(name, rank_, frozenset(kinds_), fetch)


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


async def _task_rows(ask: Ask) -> list[tuple[AuditLog, dict[uuid.UUID, str]]]:
    """The task's audit rows, each with the names of the people they mention."""
    actions = [a for a, k in _TASK_KINDS.items() if k in ask.wanted]
    rows = await repository.task_audit_rows(
        ask.session, ask.task.id, actions, ask.after, ask.rank, ask.limit
    )
    people: set[uuid.UUID] = set()
    for row in rows:
        for value in _change(row.changes, "assigned_to") or ():
            if value:
                people.add(uuid.UUID(str(value)))
        if row.action == "TASK_CREATED" and (row.new_state or {}).get("assigned_to"):
            people.add(uuid.UUID(str(row.new_state["assigned_to"])))  # type: ignore[index]
    names = await repository.display_names(ask.session, people)
    return [(row, names) for row in rows]


def _task_change(pair: tuple[AuditLog, dict[uuid.UUID, str]]) -> Said:
    row, names = pair

    def name_of(value: object) -> str:
        try:
            return names.get(uuid.UUID(str(value)), "someone")
        except ValueError:
            return "someone"

    who = row.actor_name or row.actor_type
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
    return Said(
        at=row.timestamp,
        key=f"{row.seq:020d}",
        summary=summary,
        actor=actor(row.actor_type, row.actor_id, row.actor_name),
        data=data,
        kind=_TASK_KINDS[row.action],
    )


# --- SLA thresholds ---------------------------------------------------------------------------


async def _sla_rows(ask: Ask) -> list[SlaEvent]:
    return await repository.sla_event_rows(ask.session, ask.task.id, ask.after, ask.rank, ask.limit)


def _sla_event(row: SlaEvent) -> Said:
    deadline = to_jsonable(row.expected_deadline)
    if row.event_type == "ESCALATION":
        summary = f"SLA escalation to level {row.escalation_level} (deadline {deadline})"
    else:
        summary = f"SLA {row.event_type.replace('_', ' ').lower()} (deadline {deadline})"
    return Said(
        at=row.triggered_at,
        key=str(row.id),
        summary=summary,
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


# --- escalations fired -------------------------------------------------------------------------


async def _escalation_rows(ask: Ask) -> list[EscalationEvent]:
    return await repository.fired_escalation_rows(
        ask.session, ask.task.id, ask.after, ask.rank, ask.limit
    )


def _escalation(row: EscalationEvent) -> Said:
    assert row.fired_at is not None
    recipients = [
        str(r.get("username") or r.get("id")) for r in row.recipients or [] if isinstance(r, dict)
    ]
    summary = f"Escalation level {row.level} fired ({row.policy_name})"
    if recipients:
        summary += f" to {', '.join(recipients)}"
    return Said(
        at=row.fired_at,
        key=str(row.id),
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


# --- notifications sent or given up -------------------------------------------------------------


async def _notification_rows(ask: Ask) -> list[Notification]:
    reach = ask.reader.notifications
    if reach is None:
        return []
    own = ask.reader.principal.id if reach is not Reach.ALL else None
    return await repository.finished_notification_rows(
        ask.session, ask.task.id, own, ask.after, ask.rank, ask.limit
    )


def _notification(row: Notification) -> Said:
    at = row.sent_at or row.failed_at
    assert at is not None
    outcome = "sent" if row.status == "SENT" else "given up (dead)"
    return Said(
        at=at,
        key=str(row.id),
        summary=(
            f"{row.channel.capitalize()} {row.notification_type} to {row.recipient}: {outcome}"
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


# --- comments ----------------------------------------------------------------------------------


async def _comment_rows(ask: Ask) -> list[Comment]:
    return await repository.comment_rows(
        ask.session, ask.task.id, ask.reader.internal_comments, ask.after, ask.rank, ask.limit
    )


def _comment(row: Comment) -> Said:
    return Said(
        at=row.created_at,
        key=str(row.id),
        summary=(
            f"{row.author_name} commented{' (internal)' if row.internal else ''}:"
            f" {short(row.body, 100)}"
        ),
        actor=actor(row.actor_type, row.actor_id, row.author_name),
        data=to_jsonable(
            {"comment_id": row.id, "internal": row.internal, "edited_at": row.edited_at}
        ),
    )


# --- ingested alert updates ---------------------------------------------------------------------


async def _alert_rows(ask: Ask) -> list[tuple[IntegrationEvent, str | None]]:
    return await repository.alert_rows(ask.session, ask.task.id, ask.after, ask.rank, ask.limit)


def _alert(pair: tuple[IntegrationEvent, str | None]) -> Said:
    event, integration = pair
    summary = f"Alert {event.action} from {integration or 'an integration'}: {event.outcome}"
    if event.summary:
        summary += f" ({short(event.summary, 80)})"
    return Said(
        at=event.received_at,
        key=str(event.id),
        summary=summary,
        actor=actor("integration", event.integration_id, integration),
        data={"action": event.action, "outcome": event.outcome, "dedup_key": event.dedup_key},
    )


for _source in (
    from_rows("alert", 10, {"alert"}, _alert_rows, _alert),
    from_rows("task", 20, set(_TASK_KINDS.values()), _task_rows, _task_change),
    from_rows("comment", 30, {"comment"}, _comment_rows, _comment),
    from_rows("sla", 50, {"sla"}, _sla_rows, _sla_event),
    from_rows("escalation", 60, {"escalation"}, _escalation_rows, _escalation),
    from_rows("notification", 70, {"notification"}, _notification_rows, _notification),
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


def _foreign_cursor() -> ValidationFailed:
    return ValidationFailed(
        details=[{"field": "cursor", "message": "not a cursor this list gave out"}]
    )


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
        raise _foreign_cursor()
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
            raise _foreign_cursor() from exc
        merged.extend(e for e in found if e.kind in asked)
    merged.sort(key=lambda e: e.sort_key)
    more = len(merged) > limit
    merged = merged[:limit]
    next_cursor = None
    if more:
        last = merged[-1]
        next_cursor = cursors.encode(last.occurred_at.isoformat(), last.source, last.key)
    return merged, next_cursor
