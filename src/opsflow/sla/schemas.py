from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel


class SlaEventRead(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    event_type: str
    severity: str
    sla_type: str
    expected_deadline: datetime
    due_at: datetime
    triggered_at: datetime
    actual_time: datetime | None
    delay_minutes: int
    notify: bool
    notification_sent: bool
    notification_sent_at: datetime | None
    escalated_to: uuid.UUID | None
    escalation_level: int
    metadata: dict[str, Any]


class SlaPause(BaseModel):
    started_at: datetime
    ended_at: datetime | None
    actor: str | None
    reason: str | None


class SlaThresholdPlan(BaseModel):
    name: str
    percent: float
    due_at: datetime | None
    fired: bool


class SlaExplanation(BaseModel):
    working_seconds: float
    paused_seconds: float
    outside_hours_seconds: float


class SlaClockDetail(BaseModel):
    kind: str
    status: str
    calendar: str
    target_minutes: int
    started_at: datetime
    deadline: datetime | None
    stopped_at: datetime | None
    paused_at: datetime | None
    breached_at: datetime | None
    remaining_seconds: int | None
    next_fire_at: datetime | None
    pauses: list[SlaPause]
    thresholds: list[SlaThresholdPlan]
    explanation: SlaExplanation


class TaskSla(BaseModel):
    task_id: uuid.UUID
    evaluated_at: datetime
    clocks: list[SlaClockDetail]


class SlaEventSummary(BaseModel):
    total_events: int
    warnings: int
    critical: int
    breaches: int
    escalations: int


class TaskSlaEvents(BaseModel):
    task_id: uuid.UUID
    events: list[SlaEventRead]
    summary: SlaEventSummary
