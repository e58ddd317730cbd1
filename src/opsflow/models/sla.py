"""SLA clocks and the events they fire."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from opsflow.db import Base
from opsflow.kit.types import UTCDateTime, json_type
from opsflow.models.mixins import Timestamps, UUIDPrimaryKey


class BusinessCalendarRow(UUIDPrimaryKey, Timestamps, Base):
    """A named calendar: time zone, weekly working hours, holidays. No row means `24x7`."""

    __tablename__ = "business_calendars"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    # {"mon": ["09:00-17:00"], ...} as sla.calendar_format.calendar_to_dict writes it
    hours: Mapped[dict[str, Any]] = mapped_column(json_type())
    holidays: Mapped[list[Any]] = mapped_column(json_type(), default=list)
    # "api" or "file" (OPSFLOW_SLA_CONFIG) or "import"
    source: Mapped[str] = mapped_column(String(16), default="api")


class SlaPolicyRow(UUIDPrimaryKey, Timestamps, Base):
    """An SLA policy (sla.policies.PolicySpec as a row). `*` matches anything.

    At most one active policy per selector: checked by validating the whole set
    (sla_config.validation.validate_config) in the transaction that changes it.
    """

    __tablename__ = "sla_policies"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    task_type: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    customer_tier: Mapped[str] = mapped_column(String(16))
    start_minutes: Mapped[int] = mapped_column(Integer)
    resolve_minutes: Mapped[int] = mapped_column(Integer)
    thresholds: Mapped[list[Any]] = mapped_column(json_type())  # [warning, critical] percent
    calendar_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("business_calendars.id", ondelete="RESTRICT"), index=True
    )
    pause_on_blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    escalation: Mapped[list[Any]] = mapped_column(json_type(), default=list)  # [[level, min]]
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str] = mapped_column(String(16), default="api")


class SlaSettingsRow(Base):
    """The file-wide parts of an SLA configuration, one row (id 1).

    Kept so that import -> export gives the file back: its alert thresholds, escalation
    level labels and the defaults of the `opsflow:` block. `revision` counts changes.
    """

    __tablename__ = "sla_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thresholds: Mapped[list[Any]] = mapped_column(json_type())
    escalation_levels: Mapped[list[Any]] = mapped_column(json_type(), default=list)
    default_calendar: Mapped[str | None] = mapped_column(String(100))
    default_pause_on_blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# A clock stopped by the response or the completion, with its working time.
STOPPED_BY_WORK = "stopped_at IS NOT NULL AND cancelled IS false AND working_seconds IS NOT NULL"


class SlaClock(UUIDPrimaryKey, Timestamps, Base):
    """One per task and kind. `next_fire_at` is the engine's only query key."""

    __tablename__ = "sla_clocks"
    __table_args__ = (
        UniqueConstraint("task_id", "kind"),
        # Partial: only clocks that will fire are in the engine's index.
        Index(
            "ix_sla_clocks_next_fire_at",
            "next_fire_at",
            postgresql_where=text("next_fire_at IS NOT NULL"),
            sqlite_where=text("next_fire_at IS NOT NULL"),
        ),
        # The clocks still counting, by deadline (the reports' upcoming deadlines).
        Index(
            "ix_sla_clocks_running_deadline",
            "deadline",
            postgresql_where=text("stopped_at IS NULL"),
            sqlite_where=text("stopped_at IS NULL"),
        ),
        # A task's clocks start at its creation: the reports' period of clocks.
        Index("ix_sla_clocks_started_at", "started_at"),
        # The durations of the period's stopped clocks, read from the index alone
        # (PostgreSQL: an index-only scan instead of the clocks' ~350-byte rows).
        Index(
            "ix_sla_clocks_stopped_durations",
            "started_at",
            postgresql_include=["kind", "stopped_at", "working_seconds"],
            postgresql_where=text(STOPPED_BY_WORK),
            sqlite_where=text(STOPPED_BY_WORK),
        ),
        # The counting clocks by start, with what compliance reads of them (migration
        # 0022; also its bin indexes, PostgreSQL only: see report.ReportDurationBin).
        Index(
            "ix_sla_clocks_open_started",
            "started_at",
            postgresql_include=[
                "kind",
                "calendar_name",
                "status",
                "deadline",
                "paused_at",
                "stopped_at",
                "cancelled",
                # The task's values (migration 0024): what a filtered report selects by.
                "task_type",
                "priority",
                "team_id",
                "customer_tier",
            ],
            postgresql_where=text("stopped_at IS NULL"),
            sqlite_where=text("stopped_at IS NULL"),
        ),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(8))  # START | RESOLVE
    status: Mapped[str] = mapped_column(String(16))  # ACTIVE|PAUSED|MET|BREACHED|CANCELLED
    target_minutes: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    calendar_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("business_calendars.id", ondelete="SET NULL"), index=True
    )
    # The calendar as it was when the clock was (re)scheduled: name + calendar_to_dict body.
    # None means 24x7. Editing a calendar reschedules the open clocks that use it.
    calendar_name: Mapped[str | None] = mapped_column(String(100))
    calendar_spec: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    pause_on_blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    thresholds: Mapped[list[Any]] = mapped_column(json_type())  # [75, 95] percent
    # Threshold instants (kept while paused: they describe the clock up to the pause), so
    # that states can be filtered in SQL whatever the calendar.
    warning_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    critical_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # [{"from": iso, "to": iso | null, "actor": str, "reason": str | null}]
    pauses: Mapped[list[Any]] = mapped_column(json_type(), default=list)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The working time the clock counted (its calendar, pauses excluded) when it stopped;
    # None while it counts. Kept so reports read it instead of walking calendars.
    working_seconds: Mapped[float | None] = mapped_column(Float)
    # Stopped by the task's cancellation (also when the clock had breached first and so
    # keeps BREACHED): it was not met, it was abandoned.
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How many of the clock's thresholds (sorted, breach last) have fired.
    fired_count: Mapped[int] = mapped_column(Integer, default=0)
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The task's values the reports filter by, copied (PostgreSQL, migration 0024: a trigger
    # on insert, and one on tasks that copies every change) so that the clock rollups can be
    # kept per filter without reading the tasks. None on SQLite, where nothing reads them.
    task_type: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[str | None] = mapped_column(String(16))
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    customer_tier: Mapped[str | None] = mapped_column(String(16))


class SlaEvent(UUIDPrimaryKey, Base):
    """A threshold crossed by a clock. Unique per (clock, event type): each fires once, ever."""

    __tablename__ = "sla_events"
    __table_args__ = (
        UniqueConstraint("clock_id", "event_type"),
        Index("ix_sla_events_triggered_at", "triggered_at"),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    clock_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("sla_clocks.id", ondelete="CASCADE")
    )
    event_type: Mapped[str] = mapped_column(String(32), index=True)
    severity: Mapped[str] = mapped_column(String(16), index=True)
    sla_type: Mapped[str] = mapped_column(String(8))
    expected_deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    # The instant the threshold was due, and when the engine persisted it.
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    triggered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actual_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delay_minutes: Mapped[int] = mapped_column(Integer, default=0)
    # After downtime every crossed threshold is recorded, only the most severe notifies.
    notify: Mapped[bool] = mapped_column(Boolean, default=True)
    notification_sent: Mapped[bool] = mapped_column(Boolean, default=False)
    notification_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalated_to: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", json_type(), default=dict)
