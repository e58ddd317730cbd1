"""Heartbeat monitors: jobs that must check in, the signals they sent, and their open runs."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from opsflow.db import Base
from opsflow.kit.types import UTCDateTime
from opsflow.models.mixins import Timestamps, UUIDPrimaryKey


class HeartbeatMonitor(UUIDPrimaryKey, Timestamps, Base):
    """A job expected to signal every `period_seconds`, or at every instant of `cron` in
    `timezone`, within `grace_seconds`. `state` is new | up | down (late and paused are
    read from the instants and the flag). `next_check_at` is when the engine must look at it
    next (the deadline of the expected signal, or of the earliest open run); NULL when
    nothing about it can come due (new, down, paused)."""

    __tablename__ = "heartbeat_monitors"
    __table_args__ = (Index("ix_heartbeat_monitors_next_check_at", "next_check_at"),)

    name: Mapped[str] = mapped_column(String(255))
    ping_key: Mapped[str] = mapped_column(String(64), unique=True)
    period_seconds: Mapped[int | None] = mapped_column(Integer)
    cron: Mapped[str | None] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    grace_seconds: Mapped[int] = mapped_column(Integer)
    max_run_seconds: Mapped[int | None] = mapped_column(Integer)
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("teams.id"))
    priority: Mapped[str] = mapped_column(String(16))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="new")
    last_ping_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The instant the next success is expected (late after it, down after it + grace).
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The INCIDENT this monitor opened and that is not known to be closed yet.
    open_task_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("tasks.id"))
    incident_count: Mapped[int] = mapped_column(Integer, default=0)
    ping_count: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"))


class HeartbeatPing(Base):
    """One signal as received; the newest ones per monitor are kept (`seq` counts them)."""

    __tablename__ = "heartbeat_pings"
    __table_args__ = (UniqueConstraint("monitor_id", "seq"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    monitor_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("heartbeat_monitors.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # success | start | fail
    exit_code: Mapped[int | None] = mapped_column(Integer)
    rid: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    method: Mapped[str] = mapped_column(String(8))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    body: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[int | None] = mapped_column(Integer)  # a finish paired with its start
    effect: Mapped[str | None] = mapped_column(String(32))  # what it did: opened, resolved, ignored


class HeartbeatRun(Base):
    """A run that signalled its start and has not finished: (monitor, rid) with the instant
    it must have finished by (NULL without a maximum run time)."""

    __tablename__ = "heartbeat_runs"
    __table_args__ = (UniqueConstraint("monitor_id", "rid"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    monitor_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("heartbeat_monitors.id", ondelete="CASCADE")
    )
    rid: Mapped[str] = mapped_column(String(64))  # "" for a start without a run id
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
