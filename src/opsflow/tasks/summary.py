"""What events and notifications carry about a task (pure)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from opsflow.kit.jsonable import to_jsonable
from opsflow.models.task import Task

# What a summary reads: a query for summaries alone selects these (see `task_summary`).
SUMMARY_COLUMNS = (
    Task.id,
    Task.title,
    Task.task_type,
    Task.priority,
    Task.status,
    Task.assigned_to,
    Task.team_id,
    Task.customer_tier,
    Task.start_deadline,
    Task.resolve_deadline,
    Task.version,
)


def task_summary(task: Task | Row[Any]) -> dict[str, Any]:
    """The task as events carry it (webhooks, notifications): a task, or a row of
    `SUMMARY_COLUMNS`."""
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
