"""Notifications: one row per recipient, channel and source event."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from opsflow.db import Base
from opsflow.kit.types import UTCDateTime, json_type
from opsflow.models.mixins import Timestamps, UUIDPrimaryKey


class Notification(UUIDPrimaryKey, Timestamps, Base):
    """A message to one recipient on one channel. `dedup_key` (source event x recipient x
    channel) is unique, so a redelivered event never queues a second copy; `scheduled_at`
    is the delivery engine's only query key (partial index: deliverable rows only)."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index(
            "ix_notifications_due",
            "scheduled_at",
            postgresql_where=text("status IN ('PENDING', 'RETRY')"),
            sqlite_where=text("status IN ('PENDING', 'RETRY')"),
        ),
    )

    task_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    sla_event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    escalation_event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    webhook_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("webhook_subscriptions.id", ondelete="SET NULL"), index=True
    )
    source_event_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    notification_type: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # EMAIL | WEBHOOK | SLACK | SMS
    recipient_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    recipient: Mapped[str] = mapped_column(String(255))
    address: Mapped[str | None] = mapped_column(String(500))
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    template: Mapped[str | None] = mapped_column(String(100))
    # PENDING | SENT | FAILED | RETRY | DEAD
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error_message: Mapped[str | None] = mapped_column(Text)
    # [{"at", "ok", "status_code", "error", "held"}]: every attempt, in order
    attempt_log: Mapped[list[Any]] = mapped_column(json_type(), default=list)
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    # The W3C traceparent of the relay span that planned it (tracing on), continued by the
    # delivery; None otherwise.
    trace_context: Mapped[str | None] = mapped_column(String(128))


class NotificationTemplate(Base):
    """A user-edited template part (`sla.breach.email.subject`); absent: the built-in one."""

    __tablename__ = "notification_templates"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class WebhookSubscription(UUIDPrimaryKey, Timestamps, Base):
    """An outbound webhook: task and SLA events POSTed (signed) to `url`."""

    __tablename__ = "webhook_subscriptions"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    # Signs every delivery (HMAC-SHA256 over timestamp + body); shown once, at creation.
    secret: Mapped[str] = mapped_column(String(200))
    event_types: Mapped[list[Any]] = mapped_column(json_type(), default=list)  # [] = all
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class MaintenanceWindow(UUIDPrimaryKey, Timestamps, Base):
    """While open, notifications about matching tasks are held (recorded, not sent); when it
    closes they are released, or dropped when `on_end` says so."""

    __tablename__ = "maintenance_windows"

    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # The escalation-policy condition shape: {"service": [...], "team": [...], ...}; {} = all.
    conditions: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    on_end: Mapped[str] = mapped_column(String(16), default="release")  # release | drop
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
