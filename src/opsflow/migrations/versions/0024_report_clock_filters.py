"""Report rollups of the SLA clocks per filter: the task's type, priority, team and tier
copied on its clocks (kept by triggers); the stopped clocks per start day, calendar, kind
and those four values, and the duration histograms per start day, kind, measure, bin and
those four values, kept by statement triggers on sla_clocks (PostgreSQL)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VALUES = ("task_type", "priority", "team_id", "customer_tier")
DAY = "floor(extract(epoch FROM d.started_at) / 86400)::int"
BREACHED = "(d.status = 'BREACHED' OR d.stopped_at > d.deadline)"
DAY_KEYS = "day, calendar, kind, task_type, priority, team_id, customer_tier"
BIN_KEYS = "day, kind, measure, bin, task_type, priority, team_id, customer_tier"
# Each group kept in one row per writing connection's shard, as migration 0023 keeps the
# other rollups: concurrent transactions do not queue on one row.
SHARD = "(pg_backend_pid() % 32)::smallint"
WALL = "date_part('epoch', d.stopped_at - d.started_at)"
WALL_US = "(extract(epoch FROM (d.stopped_at - d.started_at)) * 1000000)::bigint"
BY_WORK = "(d.cancelled IS false AND d.working_seconds IS NOT NULL)"


def _statement(rows: str) -> str:
    """The two upserts of one statement's changed clocks (`rows`: the transition rows with
    a `sign`). Only stopped clocks count; groups whose sums are all zero write nothing."""
    sums = [
        f"sum(d.sign * (NOT d.cancelled AND NOT {BREACHED})::int)",
        f"sum(d.sign * {BREACHED}::int)",
        f"sum(d.sign * (d.cancelled AND NOT {BREACHED})::int)",
        f"sum(d.sign * CASE WHEN {BY_WORK} THEN {WALL_US} ELSE 0 END)",
    ]
    return f"""
    INSERT INTO report_clock_days AS s ({DAY_KEYS}, met, breached, cancelled, wall_us, shard)
    SELECT {DAY}, COALESCE(d.calendar_name, '24x7'), d.kind, d.task_type, d.priority,
           d.team_id, d.customer_tier, {", ".join(sums)}, {SHARD}
    FROM ({rows}) AS d
    WHERE d.stopped_at IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6, 7
    HAVING {" OR ".join(f"{s} <> 0" for s in sums)}
    ORDER BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT ({DAY_KEYS}, shard) DO UPDATE SET
        met = s.met + EXCLUDED.met,
        breached = s.breached + EXCLUDED.breached,
        cancelled = s.cancelled + EXCLUDED.cancelled,
        wall_us = s.wall_us + EXCLUDED.wall_us;

    INSERT INTO report_duration_groups AS s ({BIN_KEYS}, clocks, shard)
    SELECT {DAY}, d.kind, m.measure, opsflow_duration_bin(m.seconds), d.task_type,
           d.priority, d.team_id, d.customer_tier, sum(d.sign), {SHARD}
    FROM ({rows}) AS d
    CROSS JOIN LATERAL (VALUES ('wall', {WALL}), ('working', d.working_seconds))
        AS m(measure, seconds)
    WHERE d.stopped_at IS NOT NULL AND {BY_WORK}
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
    HAVING sum(d.sign) <> 0
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8
    ON CONFLICT ({BIN_KEYS}, shard) DO UPDATE SET clocks = s.clocks + EXCLUDED.clocks;
    """  # noqa: S608


NEW = "SELECT 1 AS sign, n.* FROM new_rows AS n"
OLD = "SELECT -1 AS sign, o.* FROM old_rows AS o"

FUNCTION = f"""
CREATE FUNCTION opsflow_report_clock_days() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_statement(NEW)}
    ELSIF TG_OP = 'DELETE' THEN
        {_statement(OLD)}
    ELSIF TG_OP = 'UPDATE' THEN
        IF EXISTS (SELECT FROM old_rows WHERE stopped_at IS NOT NULL)
           OR EXISTS (SELECT FROM new_rows WHERE stopped_at IS NOT NULL) THEN
            {_statement(OLD + " UNION ALL " + NEW)}
        END IF;
    ELSE
        DELETE FROM report_clock_days;
        DELETE FROM report_duration_groups;
    END IF;
    RETURN NULL;
END;
$$
"""  # noqa: S608

TRIGGERS = (
    "CREATE TRIGGER report_clock_days_insert AFTER INSERT ON sla_clocks "
    "REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION opsflow_report_clock_days()",
    "CREATE TRIGGER report_clock_days_update AFTER UPDATE ON sla_clocks "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION opsflow_report_clock_days()",
    "CREATE TRIGGER report_clock_days_delete AFTER DELETE ON sla_clocks "
    "REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION opsflow_report_clock_days()",
    "CREATE TRIGGER report_clock_days_truncate AFTER TRUNCATE ON sla_clocks "
    "FOR EACH STATEMENT EXECUTE FUNCTION opsflow_report_clock_days()",
)

# A new clock takes its task's values; a task's new values go to its clocks (an update of
# sla_clocks, so the rollups' triggers move its stopped clocks from the old group to the
# new one in the same transaction). Only clocks whose values differ are written.
COPY_ON_INSERT = f"""
CREATE FUNCTION opsflow_clock_task_values() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT {", ".join(f"t.{v}" for v in VALUES)} INTO {", ".join(f"NEW.{v}" for v in VALUES)}
    FROM tasks AS t WHERE t.id = NEW.task_id;
    RETURN NEW;
END;
$$
"""  # noqa: S608
COPY_ON_TASK_UPDATE = f"""
CREATE FUNCTION opsflow_task_values_to_clocks() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sla_clocks AS c SET {", ".join(f"{v} = n.{v}" for v in VALUES)}
    FROM new_rows AS n
    WHERE c.task_id = n.id
      AND ({", ".join(f"c.{v}" for v in VALUES)})
          IS DISTINCT FROM ({", ".join(f"n.{v}" for v in VALUES)});
    RETURN NULL;
END;
$$
"""  # noqa: S608
COPY_TRIGGERS = (
    "CREATE TRIGGER sla_clocks_task_values BEFORE INSERT ON sla_clocks "
    "FOR EACH ROW EXECUTE FUNCTION opsflow_clock_task_values()",
    "CREATE TRIGGER tasks_values_to_clocks AFTER UPDATE ON tasks "
    "REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION opsflow_task_values_to_clocks()",
)
STOPPED_BY_WORK = "stopped_at IS NOT NULL AND cancelled IS false AND working_seconds IS NOT NULL"


def _bin_indexes(extra: str) -> tuple[str, ...]:
    """The indexes of migration 0022 that read the durations inside one bin; `extra`: more
    included columns (here the task's values, so that a filtered read stays in the index)."""
    return (
        "CREATE INDEX ix_sla_clocks_wall_bins ON sla_clocks (kind, "
        "opsflow_duration_bin(date_part('epoch', stopped_at - started_at)), started_at) "
        f"INCLUDE (stopped_at{extra}) WHERE {STOPPED_BY_WORK}",
        "CREATE INDEX ix_sla_clocks_working_bins ON sla_clocks (kind, "
        "opsflow_duration_bin(working_seconds), started_at) "
        f"INCLUDE (working_seconds{extra}) WHERE {STOPPED_BY_WORK}",
    )


# Migration 0022's covering index of the counting clocks.
OPEN_COLUMNS = [
    "kind",
    "calendar_name",
    "status",
    "deadline",
    "paused_at",
    "stopped_at",
    "cancelled",
]


def _open_index(columns: list[str]) -> None:
    op.create_index(
        "ix_sla_clocks_open_started",
        "sla_clocks",
        ["started_at"],
        postgresql_include=columns,
        postgresql_where=sa.text("stopped_at IS NULL"),
        sqlite_where=sa.text("stopped_at IS NULL"),
    )


COPY_ALL = f"""
UPDATE sla_clocks AS c SET {", ".join(f"{v} = t.{v}" for v in VALUES)}
FROM tasks AS t WHERE t.id = c.task_id
"""  # noqa: S608


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def _values() -> list[sa.Column[object]]:
    return [
        sa.Column("task_type", sa.String(16), nullable=True),
        sa.Column("priority", sa.String(16), nullable=True),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("customer_tier", sa.String(16), nullable=True),
    ]


def _counts(*names: str) -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in names]


def _shard() -> sa.Column[int]:
    return sa.Column("shard", sa.SmallInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    for column in _values():
        op.add_column("sla_clocks", column)
    op.create_table(
        "report_clock_days",
        _id(),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("calendar", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        *_values(),
        *_counts("met", "breached", "cancelled", "wall_us"),
        _shard(),
    )
    op.create_index(
        "uq_report_clock_days",
        "report_clock_days",
        [*DAY_KEYS.split(", "), "shard"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "report_duration_groups",
        _id(),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("measure", sa.String(8), nullable=False),
        sa.Column("bin", sa.Integer(), nullable=False),
        *_values(),
        *_counts("clocks"),
        _shard(),
    )
    op.create_index(
        "uq_report_duration_groups",
        "report_duration_groups",
        [*BIN_KEYS.split(", "), "shard"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    # The indexes that a filtered report reads the clocks through take the task's values
    # (built again below, after the fill: cheaper than kept during it).
    op.drop_index("ix_sla_clocks_open_started", table_name="sla_clocks")
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        _open_index([*OPEN_COLUMNS, *VALUES])
        return
    bind.exec_driver_sql("DROP INDEX ix_sla_clocks_wall_bins")
    bind.exec_driver_sql("DROP INDEX ix_sla_clocks_working_bins")
    # The values of the clocks already there, without the 0022 rollups' trigger (the
    # values it keeps do not change).
    bind.exec_driver_sql("ALTER TABLE sla_clocks DISABLE TRIGGER report_clock_rollups_update")
    bind.exec_driver_sql(COPY_ALL)
    bind.exec_driver_sql("ALTER TABLE sla_clocks ENABLE TRIGGER report_clock_rollups_update")
    _open_index([*OPEN_COLUMNS, *VALUES])
    for statement in _bin_indexes("".join(f", {v}" for v in VALUES)):
        bind.exec_driver_sql(statement)
    for statement in (COPY_ON_INSERT, COPY_ON_TASK_UPDATE, *COPY_TRIGGERS, FUNCTION, *TRIGGERS):
        bind.exec_driver_sql(statement)
    # The rollup of the clocks already there: what `opsflow reports rebuild` writes.
    from opsflow.reports.rollups import CLOCK_DAY_FILL

    for statement in CLOCK_DAY_FILL:
        bind.execute(sa.text(statement))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for name in ("insert", "update", "delete", "truncate"):
            bind.exec_driver_sql(f"DROP TRIGGER report_clock_days_{name} ON sla_clocks")
        bind.exec_driver_sql("DROP FUNCTION opsflow_report_clock_days()")
        bind.exec_driver_sql("DROP TRIGGER tasks_values_to_clocks ON tasks")
        bind.exec_driver_sql("DROP TRIGGER sla_clocks_task_values ON sla_clocks")
        bind.exec_driver_sql("DROP FUNCTION opsflow_task_values_to_clocks()")
        bind.exec_driver_sql("DROP FUNCTION opsflow_clock_task_values()")
        bind.exec_driver_sql("DROP INDEX ix_sla_clocks_wall_bins")
        bind.exec_driver_sql("DROP INDEX ix_sla_clocks_working_bins")
        for statement in _bin_indexes(""):
            bind.exec_driver_sql(statement)
    op.drop_index("ix_sla_clocks_open_started", table_name="sla_clocks")
    _open_index(OPEN_COLUMNS)
    op.drop_table("report_duration_groups")
    op.drop_table("report_clock_days")
    for name in reversed(VALUES):
        op.drop_column("sla_clocks", name)
