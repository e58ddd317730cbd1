"""Task read models: a task as the API shows it, with its people and its SLA status.

Each function builds its models for a batch of tasks with a constant number of queries
(clocks, extra assignees and users are loaded for the whole batch).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.kit.durations import humanize
from opsflow.models.enums import SlaKind
from opsflow.models.task import Task
from opsflow.models.user import User
from opsflow.sla import repository as sla_repo
from opsflow.sla import status as sla
from opsflow.tasks import reads, repository
from opsflow.tasks.schemas import (
    CreatedSlaStatus,
    CreatedTimeRemaining,
    SlaStatus,
    TaskCreated,
    TaskDetail,
    TaskListItem,
    TaskRead,
)
from opsflow.users import repository as users_repo
from opsflow.users.schemas import UserSummary


async def clock_views(
    session: AsyncSession, tasks: Sequence[Task], now: datetime
) -> dict[uuid.UUID, tuple[sla.ClockView, sla.ClockView]]:
    """Each task's START and RESOLVE clocks as they stand at `now` (one query)."""
    clocks = await sla_repo.clocks_for_tasks(session, [t.id for t in tasks])
    views = {}
    for task in tasks:
        own = clocks.get(task.id, {})
        views[task.id] = (
            sla.ClockView.of(own[SlaKind.START], now),
            sla.ClockView.of(own[SlaKind.RESOLVE], now),
        )
    return views


def sla_status_of(task: Task, views: tuple[sla.ClockView, sla.ClockView]) -> SlaStatus:
    start, resolve = views
    return SlaStatus.model_validate(sla.sla_status(start, resolve, task.created_at))


# A task's own fields as the API shows them, with the attribute each is read from.
_FIELDS = (
    ("id", "id"),
    ("title", "title"),
    ("description", "description"),
    ("task_type", "task_type"),
    ("priority", "priority"),
    ("status", "status"),
    ("team_id", "team_id"),
    ("service", "service"),
    ("customer_tier", "customer_tier"),
    ("start_sla_minutes", "start_sla_minutes"),
    ("resolve_sla_minutes", "resolve_sla_minutes"),
    ("start_sla_source", "start_sla_source"),
    ("resolve_sla_source", "resolve_sla_source"),
    ("sla_policy_id", "sla_policy_id"),
    ("sla_policy_name", "sla_policy_name"),
    ("created_at", "created_at"),
    ("updated_at", "updated_at"),
    ("assigned_at", "assigned_at"),
    ("acknowledged_at", "acknowledged_at"),
    ("started_at", "started_at"),
    ("blocked_at", "blocked_at"),
    ("blocked_reason", "blocked_reason"),
    ("completed_at", "completed_at"),
    ("cancelled_at", "cancelled_at"),
    ("snoozed_until", "snoozed_until"),
    ("sla_paused_at", "sla_paused_at"),
    ("sla_pause_reason", "sla_pause_reason"),
    ("deleted_at", "deleted_at"),
    ("resolution_notes", "resolution_notes"),
    ("tags", "tags"),
    ("metadata", "metadata_"),
    ("source", "source"),
    ("external_id", "external_id"),
    ("version", "version"),
)
_ATTRIBUTES = frozenset(attribute for _, attribute in _FIELDS)


def _fields(task: Task) -> dict[str, Any]:
    """The task's own fields (its people are the caller's to add). The loaded values are
    read from the instance's own dictionary at once (as `ClockView.of` does): each
    instrumented attribute read costs a descriptor call."""
    row = task.__dict__
    if not _ATTRIBUTES.issubset(row):  # a column not loaded (or expired): read it normally
        row = {attribute: getattr(task, attribute) for attribute in _ATTRIBUTES}
    values = {name: row[attribute] for name, attribute in _FIELDS}
    values["tags"] = list(values["tags"] or [])
    values["metadata"] = dict(values["metadata"] or {})
    return values


async def created_view(session: AsyncSession, task: Task, now: datetime) -> TaskCreated:
    start, resolve = (await clock_views(session, [task], now))[task.id]
    extra = (await repository.additional_assignees(session, [task.id])).get(task.id, [])
    return TaskCreated(
        **_fields(task),
        created_by=task.created_by,
        assigned_to=task.assigned_to,
        additional_assignees=extra,
        sla_status=CreatedSlaStatus(
            start_deadline=start.deadline,
            resolve_deadline=resolve.deadline,
            time_remaining=CreatedTimeRemaining(
                start=humanize(start.remaining),
                resolve=humanize(resolve.remaining),
                start_seconds=int(start.remaining.total_seconds()),
                resolve_seconds=int(resolve.remaining.total_seconds()),
            ),
            state=sla.worst_state(start, resolve),
            at_risk=False,
        ),
    )


def _summary(users: Mapping[uuid.UUID, Any], user_id: uuid.UUID | None) -> UserSummary | None:
    if user_id is None or user_id not in users:
        return None
    return UserSummary.model_validate(users[user_id])


def _read_fields(
    task: Task,
    users: dict[uuid.UUID, User],
    extras: dict[uuid.UUID, list[uuid.UUID]],
    views: dict[uuid.UUID, tuple[sla.ClockView, sla.ClockView]],
) -> dict[str, Any]:
    """What TaskRead shows of a task, as keyword arguments (TaskDetail adds to them)."""
    return {
        **_fields(task),
        "created_by": _summary(users, task.created_by),
        "assigned_to": _summary(users, task.assigned_to),
        "additional_assignees": [
            s for s in (_summary(users, u) for u in extras.get(task.id, [])) if s
        ],
        "sla_status": sla_status_of(task, views[task.id]),
    }


async def read_views(session: AsyncSession, tasks: Sequence[Task], now: datetime) -> list[TaskRead]:
    extras, users = await repository.people(session, tasks)
    views = await clock_views(session, tasks, now)
    return [TaskRead(**_read_fields(task, users, extras, views)) for task in tasks]


async def list_views(
    session: AsyncSession,
    tasks: Sequence[Task],
    now: datetime,
    *,
    assignees: Mapping[uuid.UUID, Any] | None = None,
) -> list[TaskListItem]:
    """The tasks as a list shows them; their `assignees` (anything with the attributes of a
    UserSummary, by id) are read here unless given."""
    users: Mapping[uuid.UUID, Any] = (
        assignees
        if assignees is not None
        else await users_repo.get_many(session, [t.assigned_to for t in tasks if t.assigned_to])
    )
    views = await clock_views(session, tasks, now)
    return [
        TaskListItem(
            id=t.id,
            title=t.title,
            task_type=t.task_type,
            priority=t.priority,
            status=t.status,
            customer_tier=t.customer_tier,
            team_id=t.team_id,
            assigned_to=_summary(users, t.assigned_to),
            tags=list(t.tags or []),
            created_at=t.created_at,
            updated_at=t.updated_at,
            started_at=t.started_at,
            completed_at=t.completed_at,
            external_id=t.external_id,
            version=t.version,
            sla_status=sla_status_of(t, views[t.id]),
        )
        for t in tasks
    ]


def list_items(rows: Sequence[Row[Any]], now: datetime) -> list[dict[str, Any]]:
    """A page of tasks as :func:`reads.search` read it (plain rows), each item the values
    of a `TaskListItem` as a dict: the response model validates the page once, instead of
    a model built per item, per SLA status and per assignee."""
    items = []
    for row in rows:
        item = dict(zip(reads.ITEM_FIELDS, row, strict=False))
        item["tags"] = item["tags"] or []
        user_id, username, full_name = row[reads.ASSIGNEE_AT : reads.START_AT]
        item["assigned_to"] = (
            {"id": user_id, "username": username, "full_name": full_name}
            if username is not None
            else None
        )
        start = sla.ClockView.at(now, *row[reads.START_AT : reads.RESOLVE_AT])
        resolve = sla.ClockView.at(now, *row[reads.RESOLVE_AT : reads.TOTAL_AT])
        item["sla_status"] = sla.sla_status(start, resolve, item["created_at"])
        items.append(item)
    return items


async def detail_view(
    session: AsyncSession, task: Task, now: datetime, *, with_audit_trail: bool
) -> TaskDetail:
    """The task with its SLA events and, for callers who may read the audit log, its audit
    trail (left out otherwise)."""
    page = await reads.page_of(session, task, with_audit_trail=with_audit_trail)
    return await page_view(session, page, now)


async def page_view(session: AsyncSession, page: reads.TaskPage, now: datetime) -> TaskDetail:
    """A task's page as :func:`reads.task_page` read it."""
    return TaskDetail.model_validate(await page_values(session, page, now))


async def page_values(session: AsyncSession, page: reads.TaskPage, now: datetime) -> dict[str, Any]:
    """The values of a task's `TaskDetail`, as plain values (people, events and trail
    entries as dicts): the response model validates them once, in one go."""
    task = page.task
    people = {
        user_id: {"id": p.id, "username": p.username, "full_name": p.full_name}
        for user_id, p in page.people.items()
    }
    start, resolve = (await clock_views(session, [task], now))[task.id]
    values = _fields(task)
    values["created_by"] = people.get(task.created_by)
    values["assigned_to"] = people.get(task.assigned_to) if task.assigned_to else None
    values["additional_assignees"] = [people[u] for u in page.extras if u in people]
    values["sla_status"] = sla.sla_status(start, resolve, values["created_at"])
    values["sla_events"] = [
        {
            "id": e.id,
            "event_type": e.event_type,
            "severity": e.severity,
            "triggered_at": e.triggered_at,
            "notification_sent": e.notification_sent,
        }
        for e in page.events
    ]
    if page.trail is not None:
        values["audit_trail"] = [
            {
                "action": row.action,
                "actor": row.actor_name,
                "actor_type": row.actor_type,
                "actor_id": row.actor_id,
                "timestamp": row.timestamp,
                "changes": row.changes,
            }
            for row in page.trail
        ]
    return values
