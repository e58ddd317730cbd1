"""Ticket batches as other systems send them, and the per-item outcomes OpsFlow answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from opsflow.kit.validation import (
    WHITE_SPACE,
    LongText,
    Metadata,
    ShortText,
    Tag,
    Title,
    raw_max_length,
    reject_nul,
)
from opsflow.models.enums import CustomerTier, Priority, TaskStatus, TaskType

MAX_BATCH = 1000

# Ticket systems number priorities; P0 is the most urgent.
PRIORITY_CODES = {
    "P0": Priority.CRITICAL,
    "P1": Priority.HIGH,
    "P2": Priority.MEDIUM,
    "P3": Priority.LOW,
}


class TicketStatus(StrEnum):
    """The external status vocabulary, mapped onto the task status machine on ingestion."""

    OPEN = "open"
    IN_PROGRESS = "in_progress"
    PENDING = "pending"
    ON_HOLD = "on_hold"
    RESOLVED = "resolved"
    CLOSED = "closed"


def _priority(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().upper()
        return PRIORITY_CODES.get(text, text)
    return value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


# One word without "/" once stripped of surrounding white space (strip_whitespace runs first).
_NO_SLASH_OR_SPACE = f"^[{WHITE_SPACE}]*[^/{WHITE_SPACE}]+[{WHITE_SPACE}]*$"
ExternalId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=255, pattern=_NO_SLASH_OR_SPACE
    ),
    raw_max_length(255),
    BeforeValidator(lambda v: reject_nul(v) if isinstance(v, str) else v),
]
Source = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=_NO_SLASH_OR_SPACE
    ),
    raw_max_length(64),
]


class TicketIn(BaseModel):
    """One ticket. Absent optional fields leave an existing task's value as it is."""

    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    title: Title
    description: LongText | None = None
    task_type: Annotated[TaskType, BeforeValidator(_upper)] = TaskType.TASK
    priority: Annotated[Priority, BeforeValidator(_priority)] | None = Field(
        None, description="P0..P3 (= CRITICAL..LOW) or the OpsFlow name, any case"
    )
    customer_tier: Annotated[CustomerTier, BeforeValidator(_upper)] | None = None
    status: Annotated[TicketStatus, BeforeValidator(_lower)] = TicketStatus.OPEN
    assigned_to: Annotated[ShortText, StringConstraints(min_length=1)] | None = Field(
        None, description="username or e-mail address of an active user"
    )
    team: Annotated[ShortText, StringConstraints(min_length=1)] | None = Field(
        None, description="team name (or id)"
    )
    service: ShortText | None = None
    tags: list[Tag] | None = Field(None, max_length=50)
    metadata: Metadata | None = None
    updated_at: AwareDatetime | None = Field(
        None, description="when the ticket last changed in its system; orders updates"
    )


class TicketBatch(BaseModel):
    """The request body. Items are checked one by one, so the list holds raw objects."""

    model_config = ConfigDict(extra="forbid")

    tickets: list[Any] = Field(description=f"at most {MAX_BATCH} tickets")
    source: Source | None = Field(
        None, description="where the tickets come from (admins only; default: the caller)"
    )


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    STALE = "stale"
    INVALID = "invalid"


class ItemResult(BaseModel):
    index: int
    external_id: str | None
    outcome: Outcome
    task_id: uuid.UUID | None = None
    status: TaskStatus | None = None
    reason: str | None = None
    details: list[dict[str, Any]] = Field(default_factory=list)


class BatchSummary(BaseModel):
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    invalid: int = 0


class BatchResult(BaseModel):
    source: str
    received: int
    summary: BatchSummary
    results: list[ItemResult]


class TicketSlaSummary(BaseModel):
    source: str
    external_id: str
    task_id: uuid.UUID
    status: TaskStatus
    state: Literal["ok", "warning", "critical", "breached", "met"] | str
    evaluated_at: datetime
    sla_status: dict[str, Any]
