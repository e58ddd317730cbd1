from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from opsflow.kit.validation import (
    Instant,
    LongText,
    Metadata,
    Reason,
    ShortText,
    Tag,
    Title,
    WholeNumber,
    null_only_for,
)
from opsflow.models.enums import CustomerTier, Priority, TaskStatus, TaskType
from opsflow.sla.defaults import MAX_SLA_MINUTES
from opsflow.users.schemas import UserSummary

SlaMinutes = Annotated[int, Field(ge=1, le=MAX_SLA_MINUTES, strict=True), WholeNumber]


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    description: LongText | None = None
    task_type: TaskType = TaskType.TASK
    priority: Priority = Priority.MEDIUM
    assigned_to: uuid.UUID | None = None
    additional_assignees: list[uuid.UUID] = Field(default_factory=list, max_length=20)
    team_id: uuid.UUID | None = None
    service: ShortText | None = None
    customer_tier: CustomerTier = CustomerTier.STANDARD
    start_sla_minutes: SlaMinutes | None = None
    resolve_sla_minutes: SlaMinutes | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _start_before_resolve(self) -> TaskCreate:
        if (
            self.start_sla_minutes is not None
            and self.resolve_sla_minutes is not None
            and self.start_sla_minutes > self.resolve_sla_minutes
        ):
            raise ValueError("start_sla_minutes must not exceed resolve_sla_minutes")
        return self


class TaskUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra=null_only_for("description", "team_id", "service")
    )

    title: Title | None = None
    description: LongText | None = None
    task_type: TaskType | None = None
    priority: Priority | None = None
    team_id: uuid.UUID | None = None
    service: ShortText | None = None
    customer_tier: CustomerTier | None = None
    start_sla_minutes: SlaMinutes | None = None
    resolve_sla_minutes: SlaMinutes | None = None
    tags: list[Tag] | None = Field(None, max_length=50)
    metadata: Metadata | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> TaskUpdate:
        required = (
            "title",
            "task_type",
            "priority",
            "customer_tier",
            "start_sla_minutes",
            "resolve_sla_minutes",
            "tags",
            "metadata",
        )
        for name in required:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class AssignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assigned_to: uuid.UUID
    additional_assignees: list[uuid.UUID] | None = Field(None, max_length=20)


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution_notes: LongText | None = None


class ReasonRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = None


class SnoozeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: Instant | None = None
    minutes: Annotated[int, Field(ge=1, le=10080, strict=True), WholeNumber] | None = None
    reason: Reason | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SnoozeRequest:
        if (self.until is None) == (self.minutes is None):
            raise ValueError("give exactly one of until or minutes")
        if self.until is not None and self.until.tzinfo is None:
            raise ValueError("until must include a timezone (e.g. 2026-01-27T12:00:00Z)")
        return self


class SlaClock(BaseModel):
    kind: Literal["START", "RESOLVE"]
    status: str
    state: str
    target_minutes: int
    deadline: datetime
    stopped_at: datetime | None
    met: bool | None
    elapsed_seconds: int
    remaining_seconds: int
    percent_elapsed: float


class SlaStatus(BaseModel):
    state: Literal["compliant", "warning", "critical", "breached"]
    start_deadline: datetime
    start_met: bool | None
    start_time_taken: str | None
    start_time_remaining: str | None
    resolve_deadline: datetime
    resolve_met: bool | None
    total_time: str | None
    time_remaining: str | None
    time_remaining_seconds: int | None
    at_risk: bool
    breach_count: int
    clocks: list[SlaClock]


class CreatedTimeRemaining(BaseModel):
    start: str
    resolve: str
    start_seconds: int
    resolve_seconds: int


class CreatedSlaStatus(BaseModel):
    start_deadline: datetime
    resolve_deadline: datetime
    time_remaining: CreatedTimeRemaining
    state: str
    at_risk: bool


class TaskFields(BaseModel):
    id: uuid.UUID
    title: str
    description: str | None
    task_type: TaskType
    priority: Priority
    status: TaskStatus
    team_id: uuid.UUID | None
    service: str | None
    customer_tier: CustomerTier
    start_sla_minutes: int
    resolve_sla_minutes: int
    start_sla_source: str
    resolve_sla_source: str
    sla_policy_id: uuid.UUID | None = None
    sla_policy_name: str | None = None
    created_at: datetime
    updated_at: datetime
    assigned_at: datetime | None
    acknowledged_at: datetime | None
    started_at: datetime | None
    blocked_at: datetime | None
    blocked_reason: str | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    snoozed_until: datetime | None
    sla_paused_at: datetime | None
    sla_pause_reason: str | None
    deleted_at: datetime | None
    resolution_notes: str | None
    tags: list[str]
    metadata: dict[str, Any]
    source: str | None
    external_id: str | None
    version: int


class TaskCreated(TaskFields):
    """POST /tasks answer, in the creation answer's shape (people as ids)."""

    created_by: uuid.UUID
    assigned_to: uuid.UUID | None
    additional_assignees: list[uuid.UUID]
    sla_status: CreatedSlaStatus


class TaskRead(TaskFields):
    created_by: UserSummary | None
    assigned_to: UserSummary | None
    additional_assignees: list[UserSummary]
    sla_status: SlaStatus


class SlaEventBrief(BaseModel):
    id: uuid.UUID
    event_type: str
    severity: str
    triggered_at: datetime
    notification_sent: bool


class AuditTrailEntry(BaseModel):
    action: str
    actor: str | None
    actor_type: str
    actor_id: uuid.UUID | None
    timestamp: datetime
    changes: dict[str, Any] | None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class TaskDetail(TaskRead):
    sla_events: list[SlaEventBrief]
    audit_trail: list[AuditTrailEntry] | SkipJsonSchema[None] = Field(
        None,
        exclude_if=lambda value: value is None,
        json_schema_extra=_no_default,
        description="the task's audit rows; present only for roles that may read the audit "
        "log (admin, auditor), left out for the others",
    )


class TaskListItem(BaseModel):
    id: uuid.UUID
    title: str
    task_type: TaskType
    priority: Priority
    status: TaskStatus
    customer_tier: CustomerTier
    team_id: uuid.UUID | None
    assigned_to: UserSummary | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    external_id: str | None
    version: int
    sla_status: SlaStatus
