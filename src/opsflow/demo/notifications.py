"""The notifications of a played history, as the relay's notification consumer plans them.

One e-mail row per recipient of each event the consumer handles (`notifications.service`
`_wanted`): SLA warnings and breaches that notify, a task created or assigned (its
assignee), completed (its creator), an escalation step fired (its recipients). In the
demo's past every one was delivered a moment after its event: status SENT, one attempt.
The message is a short plain text, not a rendered template.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from opsflow.models.enums import NotificationStatus
from opsflow.models.notification import Notification
from opsflow.models.outbox import OutboxEvent
from opsflow.models.task import Task
from opsflow.models.user import User

SLA_EVENTS = ("sla.warning", "sla.critical", "sla.breach")
TO_ASSIGNEE = (*SLA_EVENTS, "task.created", "task.assigned")


def _recipients(event: OutboxEvent, task: Task) -> list[uuid.UUID]:
    payload: dict[str, Any] = event.payload or {}
    kind = event.event_type
    if kind == "escalation.fired":
        if "email" not in payload.get("channels", ["email"]):
            return []
        return [uuid.UUID(str(r["id"])) for r in payload.get("recipients", []) if r.get("id")]
    if kind in SLA_EVENTS and not payload.get("notify", True):
        return []
    if kind in TO_ASSIGNEE:
        return [task.assigned_to] if task.assigned_to else []
    if kind == "task.completed":
        return [task.created_by]
    return []


def notifications(
    task: Task,
    events: list[OutboxEvent],
    users: dict[uuid.UUID, User],
    end: datetime,
) -> list[Notification]:
    """The delivered e-mails of these events of `task` (sent at most at `end`)."""
    rows: list[Notification] = []
    for event in events:
        if event.aggregate_type not in ("task", "escalation"):
            continue
        payload: dict[str, Any] = event.payload or {}
        for user_id in dict.fromkeys(_recipients(event, task)):
            user = users.get(user_id)
            if user is None:
                continue
            at = event.created_at
            sent = min(at + timedelta(seconds=2), end)
            rows.append(
                Notification(
                    id=uuid.uuid4(),
                    task_id=task.id,
                    sla_event_id=_uuid(payload.get("sla_event_id") or payload.get("event_id")),
                    escalation_event_id=_uuid(payload.get("escalation_event_id")),
                    source_event_id=event.id,
                    notification_type=event.event_type,
                    channel="EMAIL",
                    recipient_id=user.id,
                    recipient=user.username,
                    address=user.email,
                    subject=f"[{event.event_type}] {task.title}",
                    body=f"{event.event_type}: {task.title}",
                    html_body=None,
                    payload={},
                    template=None,
                    status=NotificationStatus.SENT.value,
                    attempts=1,
                    max_attempts=3,
                    scheduled_at=at,
                    sent_at=sent,
                    attempt_log=[{"at": sent.isoformat(), "ok": True}],
                    dedup_key=f"{event.id}:{user.id}:EMAIL",
                    created_at=at,
                    updated_at=sent,
                )
            )
    return rows


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None
