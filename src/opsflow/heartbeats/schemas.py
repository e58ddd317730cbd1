"""Heartbeat monitor bodies and answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.functional_validators import AfterValidator

from opsflow.kit.validation import JsonBool, Name, WholeNumber, null_only_for, reject_nul
from opsflow.models.enums import Priority

MAX_SECONDS = 366 * 24 * 3600

CronText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    AfterValidator(reject_nul),
]
ZoneText = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(reject_nul)
]
Period = Annotated[
    int,
    Field(ge=60, le=MAX_SECONDS, strict=True, description="seconds between signals"),
    WholeNumber,
]
Grace = Annotated[
    int,
    Field(ge=0, le=MAX_SECONDS, strict=True, description="seconds a signal may be late"),
    WholeNumber,
]
MaxRun = Annotated[
    int,
    Field(ge=1, le=MAX_SECONDS, strict=True, description="seconds a started run may take"),
    WholeNumber,
]


class MonitorCreate(BaseModel):
    """A period in seconds, or a cron expression evaluated in `timezone` (IANA)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    period_seconds: Period | None = None
    cron: CronText | None = None
    timezone: ZoneText = "UTC"
    grace_seconds: Grace = 300
    max_run_seconds: MaxRun | None = None
    team_id: uuid.UUID | None = None
    priority: Priority = Priority.HIGH
    paused: JsonBool = False

    @model_validator(mode="after")
    def _one_schedule(self) -> MonitorCreate:
        if (self.period_seconds is None) == (self.cron is None):
            raise ValueError("give exactly one of period_seconds and cron")
        return self


class MonitorUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=null_only_for("period_seconds", "cron", "max_run_seconds", "team_id"),
    )

    name: Name | None = None
    period_seconds: Period | None = None
    cron: CronText | None = None
    timezone: ZoneText | None = None
    grace_seconds: Grace | None = None
    max_run_seconds: MaxRun | None = None
    team_id: uuid.UUID | None = None
    priority: Priority | None = None
    paused: JsonBool | None = None


class MonitorRead(BaseModel):
    id: uuid.UUID
    name: str
    ping_key: str
    ping_url: str
    period_seconds: int | None
    cron: str | None
    timezone: str
    grace_seconds: int
    max_run_seconds: int | None
    team_id: uuid.UUID | None
    priority: str
    paused: bool
    state: str
    last_ping_at: datetime | None
    last_success_at: datetime | None
    next_due_at: datetime | None
    running: int  # runs that signalled a start and no finish yet
    open_incident_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class PingRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    kind: str
    exit_code: int | None
    rid: str | None
    received_at: datetime
    method: str
    remote_addr: str | None
    user_agent: str | None
    body: str | None
    duration_seconds: int | None
    effect: str | None


class PingList(BaseModel):
    items: list[PingRead]
    kept: int  # how many of the newest pings a monitor keeps


class SignalResult(BaseModel):
    status: str = "ok"
    monitor_id: uuid.UUID
    kind: str
    state: str
    effect: str
