"""Escalation policies and events as the API shows them."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from opsflow.kit.validation import (
    EntityName,
    JsonBool,
    LongText,
    ShortText,
    WholeNumber,
    null_only_for,
)
from opsflow.tasks.conditions import Conditions

Trigger = Literal["created", "warning", "breach"]
Channel = Literal["email", "slack", "webhook", "sms"]
MAX_DELAY_MINUTES = 10_080  # a week

_HEX = "[0-9a-fA-F]"
TARGET_PATTERN = (
    r"^(assignee|team|team_lead|manager|role:(admin|manager|team_lead|developer|support|"
    rf"auditor|viewer)|user:{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}})$"
)
_TARGET = re.compile(TARGET_PATTERN)


def _target(value: Any) -> Any:
    if isinstance(value, str) and not _TARGET.fullmatch(value):
        raise ValueError("must be assignee, team, team_lead, manager, role:<role> or user:<uuid>")
    return value


Target = Annotated[
    str,
    BeforeValidator(_target),
    WithJsonSchema({"type": "string", "pattern": TARGET_PATTERN}),
]


PositiveMinutes = Annotated[int, Field(ge=1, le=MAX_DELAY_MINUTES, strict=True), WholeNumber]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Step(_Strict):
    delay_minutes: Annotated[int, Field(ge=0, le=MAX_DELAY_MINUTES, strict=True), WholeNumber] = 0
    targets: Annotated[list[Target], Field(min_length=1, max_length=20)]
    channels: Annotated[list[Channel], Field(min_length=1, max_length=4)] = ["email"]
    message: ShortText | None = None


class PolicyFields(_Strict):
    description: LongText | None = None
    conditions: Conditions = Conditions()
    trigger: Trigger = "breach"
    steps: Annotated[list[Step], Field(min_length=1, max_length=20)]
    repeat: Annotated[int, Field(ge=0, le=10, strict=True), WholeNumber] = 0
    repeat_interval_minutes: PositiveMinutes | None = None
    ack_timeout_minutes: PositiveMinutes | None = None
    skip_if_empty: JsonBool = False
    is_active: JsonBool = True


class PolicyCreate(PolicyFields):
    name: EntityName


class PolicyUpdate(_Strict):
    model_config = ConfigDict(
        json_schema_extra=null_only_for(
            "description", "repeat_interval_minutes", "ack_timeout_minutes"
        )
    )

    name: EntityName | None = None
    description: LongText | None = None
    conditions: Conditions | None = None
    trigger: Trigger | None = None
    steps: Annotated[list[Step], Field(min_length=1, max_length=20)] | None = None
    repeat: Annotated[int, Field(ge=0, le=10, strict=True), WholeNumber] | None = None
    repeat_interval_minutes: PositiveMinutes | None = None
    ack_timeout_minutes: PositiveMinutes | None = None
    skip_if_empty: JsonBool | None = None
    is_active: JsonBool | None = None


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
