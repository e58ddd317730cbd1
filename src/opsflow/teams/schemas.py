from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, model_validator

from opsflow.kit.validation import JsonBool, LongText, Name, null_only_for


class TeamRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    lead_id: uuid.UUID | None
    escalation_policy_id: uuid.UUID | None
    is_active: bool
    created_at: datetime
    updated_at: datetime
    member_count: int = 0


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: LongText | None = None
    lead_id: uuid.UUID | None = None
    escalation_policy_id: uuid.UUID | None = None


class TeamUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=null_only_for("description", "lead_id", "escalation_policy_id"),
    )

    name: Name | None = None
    description: LongText | None = None
    lead_id: uuid.UUID | None = None
    escalation_policy_id: uuid.UUID | None = None
    is_active: JsonBool | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> TeamUpdate:
        for name in ("name", "is_active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self
