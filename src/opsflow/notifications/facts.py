"""The facts a notification states about its task, gathered when the message is rendered.

An event's payload carries the task as it was when the event happened, but not always all of
it (the SLA engine's events name the task without its type or deadlines). The message shows
the payload's values and fills the rest from the task row: type, priority, status,
deadlines; the assignee by name (the primary one first, then any additional ones in the
order they were added); and a link to the task under the process's public URL
(``OPSFLOW_PUBLIC_URL``).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.models.notification_preference import NotificationPreference
from opsflow.models.outbox import OutboxEvent
from opsflow.models.user import User
from opsflow.notifications import repository
from opsflow.notifications.templates import build_context
from opsflow.tasks.summary import task_summary

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
TASK_PATH = "/api/v1/tasks/{id}"
_public_url = DEFAULT_PUBLIC_URL


def configure(public_url: str) -> None:
    """Set where people reach this process (done once where the process is assembled)."""
    global _public_url
    _public_url = public_url.rstrip("/") or DEFAULT_PUBLIC_URL


def task_link(task_id: object) -> str:
    """The task's URL: the API resource, the one page of a task that exists today."""
    return _public_url + TASK_PATH.format(id=task_id)


async def task_facts(session: AsyncSession, event: OutboxEvent) -> dict[str, Any]:
    """The event's task section, completed from the task row."""
    payload: dict[str, Any] = event.payload or {}
    given = payload.get("task")
    section: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
    task_id = event.aggregate_id if event.aggregate_type == "task" else _uuid(section.get("id"))
    task = await repository.task(session, task_id) if task_id else None
    if task is None:
        return section
    current = task_summary(task)
    return {**current, **{key: value for key, value in section.items() if value is not None}}


async def assignee_names(session: AsyncSession, task: dict[str, Any]) -> str | None:
    """``Dana Developer`` or ``Dana Developer, Sam Support`` (primary first), None if nobody."""
    primary = _uuid(task.get("assigned_to"))
    ids = [primary] if primary else []
    task_id = _uuid(task.get("id"))
    row = await repository.task(session, task_id) if task_id else None
    if row is not None:
        ids += [u for u in await repository.assignees(session, row) if u not in ids]
    names = await repository.display_names(session, ids)
    shown = [names[u] for u in ids if u in names]
    return ", ".join(shown) or None


async def message_context(
    session: AsyncSession,
    event: OutboxEvent,
    recipient: User,
    preference: NotificationPreference | None = None,
) -> dict[str, Any]:
    """The template context of one message of `event` to `recipient`."""
    payload: dict[str, Any] = dict(event.payload or {})
    task = await task_facts(session, event)
    if task:
        payload["task"] = task
    return build_context(
        event.event_type,
        payload,
        recipient={
            "id": str(recipient.id),
            "username": recipient.username,
            "name": recipient.full_name or recipient.username,
            "email": recipient.email,
            "timezone": preference.timezone if preference is not None else None,
        },
        assignee=await assignee_names(session, task) if task else None,
        link=task_link(task["id"]) if task.get("id") else None,
        event_id=str(event.id),
        occurred_at=event.created_at,
    )


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None
