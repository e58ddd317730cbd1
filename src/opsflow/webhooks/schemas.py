"""Outbound webhook subscriptions."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from opsflow.kit.validation import Name, reject_nul
from opsflow.notifications.channels import validate_url

_EVENT = re.compile(r"^(task|sla|escalation)\.([a-z_]+|\*)$")


def _event_type(value: str) -> str:
    if not _EVENT.match(value):
        raise ValueError("must be an event type such as sla.breach, task.created or task.*")
    return value


def _url(value: str) -> str:
    try:
        validate_url(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from exc
    return value


EventType = Annotated[str, StringConstraints(max_length=64), AfterValidator(_event_type)]
Url = Annotated[
    str,
    StringConstraints(min_length=8, max_length=2000),
    AfterValidator(reject_nul),
    AfterValidator(_url),
]
Secret = Annotated[str, StringConstraints(min_length=16, max_length=200, pattern=r"^[\x21-\x7e]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookCreate(_Strict):
    name: Name
    url: Url
    event_types: Annotated[list[EventType], Field(max_length=50)] = []
    secret: Secret | None = Field(None, description="default: generated, shown once")
    is_active: bool = True


class WebhookUpdate(_Strict):
    name: Name | None = None
    url: Url | None = None
    event_types: Annotated[list[EventType], Field(max_length=50)] | None = None
    secret: Secret | None = None
    is_active: bool | None = None


class WebhookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    url: str
    event_types: list[str]
    is_active: bool
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookRead):
    secret: str
