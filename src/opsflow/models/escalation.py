"""Escalation policies and the steps of their runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from opsflow.db import Base
from opsflow.kit.types import UTCDateTime, json_type
from opsflow.models.mixins import Timestamps, UUIDPrimaryKey


class EscalationPolicy(UUIDPrimaryKey, Timestamps, Base):
    """When a matching task triggers (created / SLA warning / SLA breach), reach these
    people, step after step, until someone responds."""

    __tablename__ = "escalation_policies"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    # {"priority": [...], "task_type": [...], "service": [...], "team": [...],
    #  "tags": [...], "customer_tier": [...]}: every key given must match.
    conditions: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    trigger: Mapped[str] = mapped_column(String(16), default="breach")
    # [{"delay_minutes", "targets": [...], "channels": [...], "message"}]
    steps: Mapped[list[Any]] = mapped_column(json_type(), default=list)
    repeat: Mapped[int] = mapped_column(Integer, default=0)
    repeat_interval_minutes: Mapped[int | None] = mapped_column(Integer)
    ack_timeout_minutes: Mapped[int | None] = mapped_column(Integer)
    skip_if_empty: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class EscalationEvent(UUIDPrimaryKey, Timestamps, Base):
    """One step of one run, planned with its instant. `fire_at` is the escalation engine's
    only query key (partial index: pending steps only); each step fires once."""

    __tablename__ = "escalation_events"
    __table_args__ = (
        UniqueConstraint("run_id", "cycle", "step_index"),
        Index(
            "ix_escalation_events_pending_fire_at",
            "fire_at",
            postgresql_where=text("status = 'PENDING'"),
            sqlite_where=text("status = 'PENDING'"),
        ),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    policy_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("escalation_policies.id", ondelete="SET NULL")
    )
    policy_name: Mapped[str] = mapped_column(String(100))
    # A run: the steps one trigger (an outbox event, or a manual escalation) planned.
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    trigger: Mapped[str] = mapped_column(String(32))  # created|warning|breach|manual|ack_timeout
    sla_type: Mapped[str | None] = mapped_column(String(8))  # START | RESOLVE
    cycle: Mapped[int] = mapped_column(Integer, default=0)
    step_index: Mapped[int] = mapped_column(Integer)
    level: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # PENDING|FIRED|CANCELLED|SKIPPED
    fire_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    targets: Mapped[list[Any]] = mapped_column(json_type(), default=list)  # as configured
    recipients: Mapped[list[Any]] = mapped_column(json_type(), default=list)  # resolved users
    channels: Mapped[list[Any]] = mapped_column(json_type(), default=list)
    message: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)  # why CANCELLED / SKIPPED
    # The W3C traceparent of the span that planned the step (tracing on), continued when
    # it fires; None otherwise.
    trace_context: Mapped[str | None] = mapped_column(String(128))
