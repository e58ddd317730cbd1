from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from opsflow.kit.validation import (
    Address,
    JsonBool,
    Name,
    Password,
    TimeZoneName,
    Username,
    null_only_for,
)
from opsflow.models.enums import Channel, Role


class UserSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    full_name: str | None = None


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str | None = Field(
        description="null where the caller may not read it: admins and managers read every "
        "address, the other roles their own and their own team members' addresses"
    )
    username: str
    full_name: str | None
    role: Role
    team_id: uuid.UUID | None
    is_active: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None = None


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr = Field(max_length=255)
    username: Username
    password: Password
    full_name: Name | None = None
    role: Role = Role.DEVELOPER
    team_id: uuid.UUID | None = None


class UserUpdate(BaseModel):
    """Admins may change everything here; users may change their own name, email, password."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=null_only_for("full_name", "current_password", "team_id")
    )

    email: EmailStr | None = Field(None, max_length=255)
    full_name: Name | None = None
    password: Password | None = None
    current_password: Password | None = None
    role: Role | None = None
    team_id: uuid.UUID | None = None
    is_active: JsonBool | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> UserUpdate:
        for name in ("email", "password", "role", "is_active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class NotificationPreferenceItem(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")

    channel: Channel
    enabled: JsonBool = True
    address: Address | None = None
    quiet_hours_start: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    quiet_hours_end: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    timezone: TimeZoneName | None = None

    @model_validator(mode="after")
    def _quiet_hours_pair(self) -> NotificationPreferenceItem:
        if (self.quiet_hours_start is None) != (self.quiet_hours_end is None):
            raise ValueError("quiet_hours_start and quiet_hours_end go together")
        return self


class NotificationPreferences(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preferences: list[NotificationPreferenceItem] = Field(max_length=len(Channel))
