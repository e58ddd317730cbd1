from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from opsflow.kit.validation import LoginText, Name, SecretText, TokenText
from opsflow.models.enums import Role, Scope
from opsflow.users.schemas import UserRead


class LoginRequest(BaseModel):
    """`username` may also hold an email address; `email` is accepted as its alias."""

    model_config = ConfigDict(extra="forbid")

    username: LoginText | None = None
    email: LoginText | None = None
    password: SecretText

    @model_validator(mode="after")
    def _one_login(self) -> LoginRequest:
        if not (self.username or self.email):
            raise ValueError("username or email is required")
        return self

    @property
    def login(self) -> str:
        return self.username or self.email or ""


class LoginUser(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    email: str
    role: Role
    full_name: str | None = None


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str | None = None
    token_type: str = "bearer"
    expires_in: int
    scope: str | None = None
    user: LoginUser | None = None


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: TokenText


class LogoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: TokenText | None = None


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: TokenText
    token_type_hint: str | None = Field(None, pattern="^(access_token|refresh_token)$")


class MeResponse(UserRead):
    permissions: dict[str, str]
    session_id: uuid.UUID | None = None


class ClientMeResponse(BaseModel):
    actor_type: str = "api"
    id: uuid.UUID
    client_id: str
    name: str
    scopes: list[str]
    permissions: dict[str, str]


class ApiClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))


class ApiClientRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    client_id: str
    name: str
    scopes: list[str]
    owner_id: uuid.UUID | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiClientCreated(ApiClientRead):
    client_secret: str = Field(description="Shown once; only its hash is stored.")
