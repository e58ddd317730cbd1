"""What the task rules compute without a session (pure): a new task's column values, the
audited state of a task, what the events of a change carry."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from opsflow.auth.principal import Principal
from opsflow.errors import ValidationFailed
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.enums import TaskStatus
from opsflow.models.task import Task
from opsflow.models.user import User
from opsflow.sla.defaults import fill_targets
from opsflow.sla.service import ResolvedPolicy
from opsflow.tasks.lifecycle import Action
from opsflow.tasks.schemas import TaskCreate
from opsflow.tasks.summary import task_summary

AUDITED_FIELDS = (
    "title",
    "description",
    "task_type",
    "priority",
    "status",
    "assigned_to",
    "team_id",
    "service",
    "customer_tier",
    "start_sla_minutes",
    "resolve_sla_minutes",
    "sla_policy_name",
    "start_deadline",
    "resolve_deadline",
    "acknowledged_at",
    "started_at",
    "blocked_reason",
    "completed_at",
    "cancelled_at",
    "snoozed_until",
    "sla_paused_at",
    "sla_pause_reason",
    "resolution_notes",
    "tags",
    "metadata",
)

ACTION_NAMES = {
    Action.UPDATE: "TASK_UPDATED",
    Action.ASSIGN: "TASK_ASSIGNED",
    Action.ACKNOWLEDGE: "TASK_ACKNOWLEDGED",
    Action.START: "TASK_STARTED",
    Action.BLOCK: "TASK_BLOCKED",
    Action.UNBLOCK: "TASK_UNBLOCKED",
    Action.COMPLETE: "TASK_COMPLETED",
    Action.SNOOZE: "TASK_SNOOZED",
    Action.REOPEN: "TASK_REOPENED",
    Action.CANCEL: "TASK_CANCELLED",
    Action.PAUSE_SLA: "SLA_PAUSED",
    Action.RESUME_SLA: "SLA_RESUMED",
}


# The audited fields but the last, `metadata`: the one that may be large.
_SMALL_FIELDS = AUDITED_FIELDS[:-1]
assert AUDITED_FIELDS[-1] == "metadata"


def task_state(
    task: Task, extra_assignees: Sequence[uuid.UUID] = (), *, plain_metadata: bool = False
) -> dict[str, Any]:
    """The audited state of `task`, as plain JSON values built for the caller (nothing in
    it is shared with the task), unless `plain_metadata`: the task's metadata is then
    taken as it is, for a caller that made it with `to_jsonable` and changes it no more
    (a new task's values; the same value either way, `to_jsonable` of plain JSON being
    that JSON), sparing a walk of the largest field."""
    state: dict[str, Any] = to_jsonable({name: getattr(task, name) for name in _SMALL_FIELDS})
    metadata = task.metadata_
    state["metadata"] = metadata if plain_metadata else to_jsonable(metadata)
    state["additional_assignees"] = sorted(str(u) for u in extra_assignees)
    return state


def change_payload(
    actor: Principal, task: Task, event_payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What the outbox event of a change of `task` carries."""
    return {
        "task": task_summary(task),
        "actor": {"type": actor.actor_type.value, "id": actor.id, "name": actor.name},
        **(event_payload or {}),
    }


def event_type_of(action: str) -> str:
    return "task." + action.removeprefix("TASK_").lower()


SOURCE_REQUEST = "request"
SELECTOR_FIELDS = frozenset({"task_type", "priority", "customer_tier"})


def targets(
    policy: ResolvedPolicy | tuple[int, int], start: int | None, resolve: int | None
) -> tuple[int, int]:
    defaults = (
        policy if isinstance(policy, tuple) else (policy.start_minutes, policy.resolve_minutes)
    )
    try:
        return fill_targets(defaults, start, resolve)
    except ValueError as exc:
        raise ValidationFailed(
            details=[
                {"field": "start_sla_minutes", "message": "must not exceed resolve_sla_minutes"}
            ]
        ) from exc


@dataclass(frozen=True)
class ExternalRef:
    """Where a task created from another system's record comes from (ticket ingestion,
    alert integrations: `dedup_key` names the alert an incident stands for)."""

    source: str
    external_id: str
    updated_at: datetime | None = None
    digest: str | None = None
    dedup_key: str | None = None


def new_task_values(
    actor: Principal,
    data: TaskCreate,
    external: ExternalRef | None,
    policy: ResolvedPolicy,
    assignee: User | None,
    team_id: uuid.UUID | None,
    now: datetime,
    *,
    plain_metadata: bool = False,
) -> dict[str, Any]:
    """The column values (by attribute name) of a new task, its deadlines still unplanned
    (its clocks set them), for a caller that checked the references (assignee, team).
    `plain_metadata`: `data.metadata` holds plain JSON made for this task (`to_jsonable`'s
    own, changed no more), taken as is instead of converted (to the same value) again."""
    start_minutes, resolve_minutes = targets(
        policy, data.start_sla_minutes, data.resolve_sla_minutes
    )
    created_by = actor.user_id or actor.on_behalf_of
    if created_by is None:
        raise ValidationFailed("This API client has no owning user to record as creator")
    return {
        "id": uuid.uuid4(),
        "title": data.title,
        "description": data.description,
        "task_type": data.task_type.value,
        "priority": data.priority.value,
        "status": (TaskStatus.ASSIGNED if assignee else TaskStatus.CREATED).value,
        "created_by": created_by,
        "assigned_to": assignee.id if assignee else None,
        "team_id": team_id,
        "service": data.service,
        "customer_tier": data.customer_tier.value,
        "start_sla_minutes": start_minutes,
        "resolve_sla_minutes": resolve_minutes,
        "start_sla_source": SOURCE_REQUEST if data.start_sla_minutes else policy.source,
        "resolve_sla_source": SOURCE_REQUEST if data.resolve_sla_minutes else policy.source,
        "sla_policy_id": policy.policy_id,
        "sla_policy_name": policy.policy_name,
        "start_deadline": now + timedelta(minutes=start_minutes),
        "resolve_deadline": now + timedelta(minutes=resolve_minutes),
        "assigned_at": now if assignee else None,
        "tags": list(dict.fromkeys(data.tags)),
        "metadata_": data.metadata if plain_metadata else to_jsonable(data.metadata),
        "source": external.source if external else None,
        "external_id": external.external_id if external else None,
        "external_updated_at": external.updated_at if external else None,
        "external_digest": external.digest if external else None,
        "dedup_key": external.dedup_key if external else None,
        "created_at": now,
        "updated_at": now,
        # Known before the INSERT: events carry it even when the flush is deferred.
        "version": 1,
    }
