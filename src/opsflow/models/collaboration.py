"""The conversation around a task: comments, who watches it, and how far each person read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from opsflow.db import Base
from opsflow.kit.types import UTCDateTime, json_type
from opsflow.models.mixins import Timestamps, UUIDPrimaryKey


class Comment(UUIDPrimaryKey, Timestamps, Base):
    """A comment on a task: Markdown kept as text. Internal comments are for the people
    working the task (not viewers, not API clients without a tasks scope, not outbound
    webhooks). A deleted comment keeps its row as a tombstone with its text removed; the
    audit trail keeps what it said."""

    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_task_created", "task_id", "created_at"),)

    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("tasks.id", ondelete="CASCADE"))
    # Who wrote it: the acting principal (a user, or an API client acting for its owner).
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    author_name: Mapped[str] = mapped_column(String(255))
    # The user behind it (the API client's owner for a client), for the inbox.
    author_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    body: Mapped[str] = mapped_column(Text)
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    # Ids of the users the text mentions (`@username`), as of the last edit.
    mentions: Mapped[list[Any]] = mapped_column(json_type(), default=list)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TaskWatcher(Base):
    """A user following a task: it is in their inbox whatever their part in it."""

    __tablename__ = "task_watchers"

    task_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TaskReadMarker(Base):
    """How far a user has read a task's conversation: comments after `read_at` are unread."""

    __tablename__ = "task_read_markers"

    task_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    read_at: Mapped[datetime] = mapped_column(UTCDateTime)
