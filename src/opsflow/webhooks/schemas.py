"""Outbound webhook subscriptions."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from opsflow.kit.validation import EntityName, JsonBool, NoNul, null_only_for
from opsflow.notifications.channels import validate_url

EVENT_PATTERN = r"^(task|sla|escalation|comment)\.([a-z_]+|\*)$"
_EVENT = re.compile(EVENT_PATTERN)


def _event_type(value: str) -> str:
    if not _EVENT.fullmatch(value):
        raise ValueError(
            "must be an event type such as sla.breach, task.created, task.* or comment.*"
        )
    return value


def _url(value: str) -> str:
    try:
        validate_url(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from exc
    return value


EventType = Annotated[
    str,
    StringConstraints(max_length=64),
    AfterValidator(_event_type),
    WithJsonSchema({"type": "string", "maxLength": 64, "pattern": EVENT_PATTERN}),
]
# Absolute http(s) with a host, no whitespace or control characters (validate_url has the
# last word: a host httpx cannot parse is refused too).
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s\x00-\x1f\x7f/?#]+([/?#][^\s\x00-\x1f\x7f]*)?$"
Url = Annotated[
    str,
    StringConstraints(min_length=8, max_length=2000),
    NoNul(),
    AfterValidator(_url),
    WithJsonSchema(
        {
            "type": "string",
            "format": "uri",
            "minLength": 8,
            "maxLength": 2000,
            "pattern": URL_PATTERN,
        }
    ),
]
Secret = Annotated[str, StringConstraints(min_length=16, max_length=200, pattern=r"^[\x21-\x7e]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookCreate(_Strict):
    name: EntityName
    url: Url
    event_types: Annotated[list[EventType], Field(max_length=50)] = []
    secret: Secret | None = Field(None, description="default: generated, shown once")
    is_active: JsonBool = True


class WebhookUpdate(_Strict):
    model_config = ConfigDict(json_schema_extra=null_only_for())

    name: EntityName | None = None
    url: Url | None = None
    event_types: Annotated[list[EventType], Field(max_length=50)] | None = None
    secret: Secret | None = None
    is_active: JsonBool | None = None


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
