"""Request and response bodies of the SLA policy and calendar endpoints."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from opsflow.kit.validation import (
    Instant,
    JsonBool,
    JsonFloat,
    TimeZoneName,
    WholeNumber,
    null_only_for,
)
from opsflow.sla.defaults import MAX_SLA_MINUTES
from opsflow.tasks.conditions import ConditionValue

ConfigName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
CalendarRef = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
TaskTypeOrAny = Literal["*", "TASK", "INCIDENT"]
PriorityOrAny = Literal["*", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
TierOrAny = Literal["*", "ENTERPRISE", "PREMIUM", "STANDARD", "BASIC"]
Minutes = Annotated[int, Field(ge=1, le=MAX_SLA_MINUTES, strict=True), WholeNumber]
Percent = Annotated[JsonFloat, Field(gt=0, lt=100)]
Interval = Annotated[str, StringConstraints(min_length=1, max_length=40)]
Weekday = Literal[
    "mon", "tue", "wed", "thu", "fri", "sat", "sun",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
]  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EscalationLevel(_Strict):
    """The YAML file's ``LEVEL_n: minutes``: level n is due this many working minutes after the
    task was created."""

    level: Annotated[int, Field(ge=1, le=999_999, strict=True), WholeNumber]
    minutes: Annotated[int, Field(ge=0, le=MAX_SLA_MINUTES, strict=True), WholeNumber]


class PolicyFields(_Strict):
    task_type: TaskTypeOrAny = "*"
    priority: PriorityOrAny = "*"
    customer_tier: TierOrAny = "*"
    thresholds: Annotated[list[Percent], Field(min_length=2, max_length=2)] | None = Field(
        None, description="[warning, critical] percent of the target elapsed; default [75, 95]"
    )
    calendar: CalendarRef | None = Field(None, description="a calendar name; null or 24x7: 24x7")
    pause_on_blocked: JsonBool = False
    escalation: Annotated[list[EscalationLevel], Field(max_length=50)] = []
    is_active: JsonBool = True


class PolicyCreate(PolicyFields):
    name: ConfigName
    start_minutes: Minutes
    resolve_minutes: Minutes


class PolicyUpdate(_Strict):
    model_config = ConfigDict(json_schema_extra=null_only_for("calendar"))

    name: ConfigName | None = None
    task_type: TaskTypeOrAny | None = None
    priority: PriorityOrAny | None = None
    customer_tier: TierOrAny | None = None
    start_minutes: Minutes | None = None
    resolve_minutes: Minutes | None = None
    thresholds: Annotated[list[Percent], Field(min_length=2, max_length=2)] | None = None
    calendar: CalendarRef | None = None
    pause_on_blocked: JsonBool | None = None
    escalation: Annotated[list[EscalationLevel], Field(max_length=50)] | None = None
    is_active: JsonBool | None = None


class PolicyRead(BaseModel):
    id: uuid.UUID
    name: str
    task_type: str
    priority: str
    customer_tier: str
    start_minutes: int
    resolve_minutes: int
    thresholds: list[float]
    calendar: str
    calendar_id: uuid.UUID | None
    pause_on_blocked: bool
    escalation: list[EscalationLevel]
    is_active: bool
    source: str
    created_at: datetime
    updated_at: datetime


class CalendarFields(_Strict):
    timezone: TimeZoneName
    hours: Annotated[
        dict[Weekday, Annotated[list[Interval], Field(max_length=24)]],
        Field(description='weekday -> ["09:00-17:00", ...]; end 24:00 is midnight'),
    ]
    holidays: Annotated[list[date], Field(max_length=1000)] = []


class CalendarCreate(CalendarFields):
    name: ConfigName


class CalendarUpdate(_Strict):
    # A null name leaves the name as it is.
    model_config = ConfigDict(json_schema_extra=null_only_for("name"))

    name: ConfigName | None = None
    timezone: TimeZoneName | None = None
    hours: dict[Weekday, Annotated[list[Interval], Field(max_length=24)]] | None = None
    holidays: Annotated[list[date], Field(max_length=1000)] | None = None


class CalendarRead(BaseModel):
    id: uuid.UUID
    name: str
    timezone: str
    hours: dict[str, list[str]]
    holidays: list[str]
    source: str
    policies: list[str]
    created_at: datetime
    updated_at: datetime


class ConfigChange(BaseModel):
    kind: Literal["policy", "calendar", "settings"]
    name: str
    change: Literal["added", "removed", "changed"]
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None
    changes: dict[str, Any] | None = None


class ImportResult(BaseModel):
    applied: bool
    dry_run: bool
    mode: Literal["merge", "replace"]
    revision: int
    policies: int
    calendars: int
    changes: list[ConfigChange]


class PauseWindow(_Strict):
    start: Instant
    end: Instant


class SimulateRequest(_Strict):
    """Either a policy (by name or inline targets) or a task's attributes to resolve one."""

    policy: ConfigName | None = Field(None, description="an existing policy's name")
    task_type: Literal["TASK", "INCIDENT"] = "TASK"
    priority: Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"] = "MEDIUM"
    customer_tier: Literal["ENTERPRISE", "PREMIUM", "STANDARD", "BASIC"] = "STANDARD"
    start_minutes: Minutes | None = None
    resolve_minutes: Minutes | None = None
    thresholds: Annotated[list[Percent], Field(min_length=2, max_length=2)] | None = None
    calendar: CalendarRef | None = Field(None, description="override the policy's calendar")
    start: Instant | None = Field(None, description="default: now")
    pauses: Annotated[list[PauseWindow], Field(max_length=100)] = []
    team: ConditionValue | None = Field(
        None, description="the task's team (id or name), for escalation policies"
    )
    service: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    tags: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=255)]], Field(max_length=100)
    ] = []


class SimulatedStep(BaseModel):
    """One step of an escalation policy that would handle the task, at its instant."""

    policy: str
    trigger: str
    sla_type: str | None
    level: int
    cycle: int
    at: datetime
    local_time: str
    targets: list[str]
    channels: list[str]


class SimulatedInstant(BaseModel):
    name: str
    percent: float | None = None
    at: datetime
    local_time: str
    working_minutes: float


class SimulatedClock(BaseModel):
    kind: str
    target_minutes: int
    deadline: datetime
    thresholds: list[SimulatedInstant]


class SimulateResult(BaseModel):
    policy: str | None
    source: str
    calendar: str
    timezone: str
    start: datetime
    clocks: list[SimulatedClock]
    escalation: list[SimulatedInstant]
    escalation_steps: list[SimulatedStep] = []
