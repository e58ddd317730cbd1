"""What the reports keep summed beside the tasks: rollups per quarter hour (PostgreSQL).

Each row sums the tasks (or incident tags, or acknowledgements) of one quarter hour
(`slot`: whole 900-second steps since the Unix epoch, in UTC) that share every value a
report groups or filters by. Triggers on `tasks` keep them in the transaction of every
change (see migration 0021 and docs/reports.md); `opsflow reports rebuild` recomputes
them. A group whose tasks all moved away stays as a row of zeros until the rebuild.

A group may be kept in several rows, one per `shard` (the writing connection's, migration
0023), so that concurrent transactions do not queue on one row: every read sums a group's
rows.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Index, Integer, SmallInteger, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from opsflow.db import Base

SLOT_SECONDS = 900


class RollupRow:
    """What every rollup row has besides its group and sums: an id, and the shard of the
    connection that wrote it (several rows of one group are summed by every read)."""

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, server_default="0")


class TaskValues:
    """The task's values a filtered report groups by, copied on a clock's rollup rows."""

    COLUMNS = ("task_type", "priority", "team_id", "customer_tier")

    task_type: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[str | None] = mapped_column(String(16))
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    customer_tier: Mapped[str | None] = mapped_column(String(16))


class ReportTaskSlot(RollupRow, Base):
    """Tasks by creation quarter hour and every value the tallies read."""

    __tablename__ = "report_task_slots"
    __table_args__ = (
        Index(
            "uq_report_task_slots",
            "slot",
            "priority",
            "task_type",
            "status",
            "team_id",
            "assigned_to",
            "customer_tier",
            "shard",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    slot: Mapped[int] = mapped_column(Integer)
    priority: Mapped[str] = mapped_column(String(16))
    task_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    assigned_to: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    customer_tier: Mapped[str | None] = mapped_column(String(16))
    # Tasks; those with a completion instant and their summed completion time (completed
    # minus created, microseconds); those with a breach instant (`tasks.sla_breach_at`).
    tasks: Mapped[int] = mapped_column(BigInteger)
    completions: Mapped[int] = mapped_column(BigInteger)
    completion_us: Mapped[int] = mapped_column(BigInteger)
    breach_known: Mapped[int] = mapped_column(BigInteger)


class ReportTagSlot(RollupRow, Base):
    """Incidents by creation quarter hour and tag (a tag listed twice counts twice)."""

    __tablename__ = "report_tag_slots"
    __table_args__ = (
        Index(
            "uq_report_tag_slots",
            "slot",
            "tag",
            "priority",
            "status",
            "team_id",
            "customer_tier",
            "shard",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    slot: Mapped[int] = mapped_column(Integer)
    tag: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    customer_tier: Mapped[str | None] = mapped_column(String(16))
    incidents: Mapped[int] = mapped_column(BigInteger)
    completions: Mapped[int] = mapped_column(BigInteger)
    completion_us: Mapped[int] = mapped_column(BigInteger)


class ReportAckSlot(RollupRow, Base):
    """Acknowledged incidents by acknowledgement quarter hour and responder."""

    __tablename__ = "report_ack_slots"
    __table_args__ = (
        Index(
            "uq_report_ack_slots",
            "slot",
            "acknowledged_by",
            "priority",
            "team_id",
            "customer_tier",
            "shard",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    slot: Mapped[int] = mapped_column(Integer)
    acknowledged_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    priority: Mapped[str] = mapped_column(String(16))
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    customer_tier: Mapped[str | None] = mapped_column(String(16))
    incidents: Mapped[int] = mapped_column(BigInteger)


DAY_SECONDS = 86400
HOUR_SECONDS = 3600


class ReportClockHour(RollupRow, Base):
    """Stopped SLA clocks by start hour (UTC, whole 3,600-second steps since the epoch),
    calendar (`24x7` without one) and kind: how many were met, breached or cancelled (each
    stopped clock is exactly one of them), and those stopped by the work with their summed
    wall-clock durations (microseconds). Open clocks are not counted here: whether one is
    breached depends on the moment of reading."""

    __tablename__ = "report_clock_hours"
    __table_args__ = (
        Index("uq_report_clock_hours", "hour", "calendar", "kind", "shard", unique=True),
    )

    hour: Mapped[int] = mapped_column(Integer)
    calendar: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(8))
    met: Mapped[int] = mapped_column(BigInteger)
    breached: Mapped[int] = mapped_column(BigInteger)
    cancelled: Mapped[int] = mapped_column(BigInteger)
    stopped: Mapped[int] = mapped_column(BigInteger)
    wall_us: Mapped[int] = mapped_column(BigInteger)


class ReportDurationBin(RollupRow, Base):
    """The clocks stopped by the work by start day, kind, measure (`wall` or `working`
    seconds) and duration bin (`opsflow_duration_bin`, migration 0022: log-spaced bins,
    about 2.2 % wide). The percentiles find the bin holding a rank here and read only the
    durations inside it (expression indexes on the bins)."""

    __tablename__ = "report_duration_bins"
    __table_args__ = (
        Index("uq_report_duration_bins", "day", "kind", "measure", "bin", "shard", unique=True),
    )

    day: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    measure: Mapped[str] = mapped_column(String(8))
    bin: Mapped[int] = mapped_column(Integer)
    clocks: Mapped[int] = mapped_column(BigInteger)


class ReportClockDay(RollupRow, TaskValues, Base):
    """Stopped SLA clocks by start day (UTC, whole 86,400-second steps since the epoch),
    calendar, kind and the task's values the reports filter by (copied on the clock,
    migration 0024): met, breached, cancelled, as in `ReportClockHour`. Read when a report
    filters the tasks; a task moved to another type, priority, team or tier moves its
    stopped clocks here (and in `ReportDurationGroup`) in the transaction of the change."""

    __tablename__ = "report_clock_days"
    __table_args__ = (
        Index(
            "uq_report_clock_days",
            "day",
            "calendar",
            "kind",
            *TaskValues.COLUMNS,
            "shard",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    day: Mapped[int] = mapped_column(Integer)
    calendar: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(8))
    met: Mapped[int] = mapped_column(BigInteger)
    breached: Mapped[int] = mapped_column(BigInteger)
    cancelled: Mapped[int] = mapped_column(BigInteger)
    # The clocks stopped by the work: their summed wall-clock durations (microseconds).
    wall_us: Mapped[int] = mapped_column(BigInteger)


class ReportDurationGroup(RollupRow, TaskValues, Base):
    """`ReportDurationBin` per the task's values the reports filter by (copied on the
    clock): the histograms of a filtered report."""

    __tablename__ = "report_duration_groups"
    __table_args__ = (
        Index(
            "uq_report_duration_groups",
            "day",
            "kind",
            "measure",
            "bin",
            *TaskValues.COLUMNS,
            "shard",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    day: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    measure: Mapped[str] = mapped_column(String(8))
    bin: Mapped[int] = mapped_column(Integer)
    clocks: Mapped[int] = mapped_column(BigInteger)
