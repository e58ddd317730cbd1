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
