"""Notifications as the API shows them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from opsflow.kit.validation import EntityName, Instant, LongText, null_only_for
from opsflow.tasks.conditions import Conditions


class NotificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    task_id: uuid.UUID | None
    sla_event_id: uuid.UUID | None
    escalation_event_id: uuid.UUID | None
    source_event_id: uuid.UUID
    notification_type: str
    channel: str
    recipient_id: uuid.UUID | None
    recipient: str
    address: str | None
    subject: str | None
    body: str
    template: str | None
    status: str
    attempts: int
    max_attempts: int
    scheduled_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None
    error_message: str | None
    attempt_log: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


class TemplateRead(BaseModel):
    name: str
    source: str
    default_source: str
    overridden: bool
    updated_at: datetime | None = None


class TemplateWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: LongText | None = Field(None, description="null: back to the built-in template")


class WindowFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: LongText | None = None
    conditions: Conditions = Conditions()
    on_end: Literal["release", "drop"] = "release"


class WindowCreate(WindowFields):
    name: EntityName
    starts_at: Instant
    ends_at: Instant


class WindowUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=null_only_for("description"))

    name: EntityName | None = None
    description: LongText | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    conditions: Conditions | None = None
    on_end: Literal["release", "drop"] | None = None


class WindowRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    starts_at: datetime
    ends_at: datetime
    conditions: dict[str, Any]
    on_end: str
    created_at: datetime
    updated_at: datetime
