from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from opsflow.db import Base
from opsflow.kit.types import UTCDateTime, json_type
from opsflow.models.mixins import Timestamps, UUIDPrimaryKey

OPEN_DEDUP = "dedup_key IS NOT NULL AND completed_at IS NULL AND deleted_at IS NULL"


class Task(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_tasks_created_at", "created_at"),
        Index("ix_tasks_status_priority", "status", "priority"),
        Index("ix_tasks_acknowledged_at", "acknowledged_at"),
        # The reports count the tasks whose breach instant is still ahead (few) live.
        Index("ix_tasks_sla_breach_at", "sla_breach_at"),
        # An alert's dedup key names at most one open incident of its integration (source).
        Index(
            "uq_tasks_open_dedup_key",
            "source",
            "dedup_key",
            unique=True,
            postgresql_where=text(OPEN_DEDUP),
            sqlite_where=text(OPEN_DEDUP),
        ),
    )

    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    task_type: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[str] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)

    created_by: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"), index=True)
    assigned_to: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id"), index=True)
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("teams.id", ondelete="SET NULL"), index=True
    )
    service: Mapped[str | None] = mapped_column(String(255))
    customer_tier: Mapped[str] = mapped_column(String(16), default="STANDARD")

    # SLA targets and the deadlines derived from them (recomputed on every change).
    start_sla_minutes: Mapped[int] = mapped_column(Integer)
    resolve_sla_minutes: Mapped[int] = mapped_column(Integer)
    # Where each target came from: "default" (priority defaults), "policy" (the matching
    # SLA policy) or "request" (given).
    start_sla_source: Mapped[str] = mapped_column(String(16), default="default")
    resolve_sla_source: Mapped[str] = mapped_column(String(16), default="default")
    # The SLA policy resolved at creation or at the last priority/tier/type change.
    sla_policy_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("sla_policies.id", ondelete="SET NULL")
    )
    sla_policy_name: Mapped[str | None] = mapped_column(String(100))
    start_deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    resolve_deadline: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # The earliest instant from which one of the task's clocks counts as breached, as its
    # clocks now stand (`sla.clocks.breached_since`); None while none does or will. Kept by
    # every clock change in its transaction; the reports read it instead of the clocks.
    sla_breach_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id"))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    blocked_reason: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set while the SLA clocks are paused by hand (PATCH /tasks/{id}/sla/pause).
    sla_paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sla_pause_reason: Mapped[str | None] = mapped_column(Text)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_notes: Mapped[str | None] = mapped_column(Text)

    tags: Mapped[list[Any]] = mapped_column(json_type(), default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", json_type(), default=dict)

    source: Mapped[str | None] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(255))
    dedup_key: Mapped[str | None] = mapped_column(String(255), index=True)
    # Ticket ingestion: the `updated_at` the source system gave for the version applied last,
    # and a digest of that version's content (orders and deduplicates re-sent tickets).
    external_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    external_digest: Mapped[str | None] = mapped_column(String(64))

    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}


class TaskAssignee(Base):
    """Additional assignees (a task can have several); the primary one is `assigned_to`."""

    __tablename__ = "task_assignees"

    task_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)
