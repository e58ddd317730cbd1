"""Escalation policies and events as the API shows them."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from opsflow.kit.validation import LongText, Name, ShortText
from opsflow.tasks.conditions import Conditions

Trigger = Literal["created", "warning", "breach"]
Channel = Literal["email", "slack", "webhook", "sms"]
MAX_DELAY_MINUTES = 10_080  # a week

_TARGET = re.compile(
    r"^(assignee|team|team_lead|manager|role:(admin|manager|team_lead|developer|support|"
    r"auditor|viewer)|user:[0-9a-fA-F-]{36})$"
)


def _target(value: str) -> str:
    if not _TARGET.match(value):
        raise ValueError("must be assignee, team, team_lead, manager, role:<role> or user:<uuid>")
    if value.startswith("user:"):
        uuid.UUID(value[5:])
    return value


Target = Annotated[str, StringConstraints(max_length=64), AfterValidator(_target)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Step(_Strict):
    delay_minutes: Annotated[int, Field(ge=0, le=MAX_DELAY_MINUTES, strict=True)] = 0
    targets: Annotated[list[Target], Field(min_length=1, max_length=20)]
    channels: Annotated[list[Channel], Field(min_length=1, max_length=4)] = ["email"]
    message: ShortText | None = None


class PolicyFields(_Strict):
    description: LongText | None = None
    conditions: Conditions = Conditions()
    trigger: Trigger = "breach"
    steps: Annotated[list[Step], Field(min_length=1, max_length=20)]
    repeat: Annotated[int, Field(ge=0, le=10, strict=True)] = 0
    repeat_interval_minutes: (
        Annotated[int, Field(ge=1, le=MAX_DELAY_MINUTES, strict=True)] | None
    ) = None
    ack_timeout_minutes: Annotated[int, Field(ge=1, le=MAX_DELAY_MINUTES, strict=True)] | None = (
        None
    )
    skip_if_empty: bool = False
    is_active: bool = True


class PolicyCreate(PolicyFields):
    name: Name


class PolicyUpdate(_Strict):
    name: Name | None = None
    description: LongText | None = None
    conditions: Conditions | None = None
    trigger: Trigger | None = None
    steps: Annotated[list[Step], Field(min_length=1, max_length=20)] | None = None
    repeat: Annotated[int, Field(ge=0, le=10, strict=True)] | None = None
    repeat_interval_minutes: (
        Annotated[int, Field(ge=1, le=MAX_DELAY_MINUTES, strict=True)] | None
    ) = None
    ack_timeout_minutes: Annotated[int, Field(ge=1, le=MAX_DELAY_MINUTES, strict=True)] | None = (
        None
    )
    skip_if_empty: bool | None = None
    is_active: bool | None = None


class PolicyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    conditions: dict[str, Any]
    trigger: str
    steps: list[dict[str, Any]]
    repeat: int
    repeat_interval_minutes: int | None
    ack_timeout_minutes: int | None
    skip_if_empty: bool
    is_active: bool
    created_at: datetime
    updated_at: datetime


class EscalationEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    task_id: uuid.UUID
    policy_id: uuid.UUID | None
    policy_name: str
    run_id: uuid.UUID
    trigger: str
    sla_type: str | None
    cycle: int
    step_index: int
    level: int
    status: str
    fire_at: datetime
    fired_at: datetime | None
    targets: list[str]
    recipients: list[dict[str, Any]]
    channels: list[str]
    message: str | None
    reason: str | None


class TaskEscalations(BaseModel):
    task_id: uuid.UUID
    fired: list[EscalationEventRead]
    planned: list[EscalationEventRead]
    other: list[EscalationEventRead]  # cancelled and skipped steps


class EscalateRequest(_Strict):
    reason: ShortText | None = None
