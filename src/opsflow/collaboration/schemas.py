"""Request and response bodies of comments, the timeline and the inbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from opsflow.kit.validation import (
    NOT_BLANK_PATTERN,
    JsonBool,
    NoNul,
    null_only_for,
    raw_max_length,
)
from opsflow.tasks.schemas import TaskListItem

MAX_COMMENT_CHARS = 20_000


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# Markdown, kept as written (not stripped): 1-20000 characters, not blank, no U+0000.
CommentBody = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_COMMENT_CHARS),
    NoNul(NOT_BLANK_PATTERN),
    raw_max_length(MAX_COMMENT_CHARS),
    AfterValidator(_not_blank),
]


class CommentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: CommentBody = Field(description="Markdown; `@username` mentions notify that user")
    internal: JsonBool = Field(
        False, description="only for the people working the task (not viewers, not webhooks)"
    )


class CommentUpdate(BaseModel):
    """Fields left out keep their value; neither may be null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=null_only_for())

    body: CommentBody | None = None
    internal: JsonBool | None = None


class CommentAuthor(BaseModel):
    type: str = Field(description="user | api | system")
    id: uuid.UUID
    name: str
    user_id: uuid.UUID | None = Field(description="the user behind it (an API client's owner)")


class CommentRead(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    author: CommentAuthor
    body: str
    internal: bool
    mentions: list[uuid.UUID]
    created_at: datetime
    updated_at: datetime
    edited_at: datetime | None


class CommentPage(BaseModel):
    items: list[CommentRead]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: end")


class TimelineActor(BaseModel):
    type: str = Field(description="user | api | system | integration")
    id: str | None
    name: str | None


class TimelineEntry(BaseModel):
    id: str = Field(description="stable within the timeline: `<source>:<row id>`")
    kind: str
    occurred_at: datetime
    actor: TimelineActor | None
    summary: str
    data: dict[str, Any] = Field(default_factory=dict)


class TimelinePage(BaseModel):
    items: list[TimelineEntry]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: end")


class InboxItem(BaseModel):
    task: TaskListItem
    reasons: list[Literal["assigned", "created", "commented", "watching"]]
    unread_count: int
    last_activity_at: datetime
    last_read_at: datetime | None


class InboxPage(BaseModel):
    items: list[InboxItem]
    total: int = Field(description="tasks in the inbox")
    unread_total: int = Field(description="unread comments over the whole inbox")
    page: int
    page_size: int


class ReadMarker(BaseModel):
    task_id: uuid.UUID
    read_at: datetime
    unread_count: int


class WatchState(BaseModel):
    task_id: uuid.UUID
    watching: bool
