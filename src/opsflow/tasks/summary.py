"""What events and notifications carry about a task (pure)."""

from __future__ import annotations

from typing import Any

from opsflow.kit.jsonable import to_jsonable
from opsflow.models.task import Task


def task_summary(task: Task) -> dict[str, Any]:
    """The task as events carry it (webhooks, notifications)."""
    return to_jsonable(  # type: ignore[no-any-return]
        {
            "id": task.id,
            "title": task.title,
            "task_type": task.task_type,
            "priority": task.priority,
            "status": task.status,
            "assigned_to": task.assigned_to,
            "team_id": task.team_id,
            "customer_tier": task.customer_tier,
            "start_deadline": task.start_deadline,
            "resolve_deadline": task.resolve_deadline,
            "version": task.version,
        }
    )
