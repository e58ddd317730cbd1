"""Report rollups of the SLA clocks: stopped clocks per start hour, calendar and kind, and
duration histograms per start day, kind and measure, kept by statement triggers on
sla_clocks (PostgreSQL); the duration bin function and its expression indexes

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 11:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The bins' lower bounds: below 0 (bin 0), exactly 0 (up to a microsecond: bin 1), then
# 2^(k/32) seconds from about a millisecond to about four years (each about 2.2 % wide).
# `width_bucket` over fixed bounds compares only, so the bin never decreases as the
# duration grows: the bins are ordered as the values are.
BOUNDS = [0.0, 1e-6] + [2 ** (k / 32) for k in range(-320, 27 * 32 + 1)]
FUNCTION_BIN = f"""
CREATE FUNCTION opsflow_duration_bin(seconds double precision) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT width_bucket(seconds, '{{{",".join(repr(b) for b in BOUNDS)}}}'::float8[]) $$
"""

DAY = "floor(extract(epoch FROM d.started_at) / 86400)::int"
WALL = "date_part('epoch', d.stopped_at - d.started_at)"
WALL_US = "(extract(epoch FROM (d.stopped_at - d.started_at)) * 1000000)::bigint"
BY_WORK = "(d.cancelled IS false AND d.working_seconds IS NOT NULL)"
BREACHED = "(d.status = 'BREACHED' OR d.stopped_at > d.deadline)"
HOUR = "floor(extract(epoch FROM d.started_at) / 3600)::int"
HOUR_KEYS = "hour, calendar, kind"
BIN_KEYS = "day, kind, measure, bin"


def _statements(rows: str) -> str:
    """The two upserts of one statement's changed clocks (`rows`: the transition rows with
    a `sign`). Only stopped clocks count; groups whose sums are all zero write nothing."""
    met = f"(NOT d.cancelled AND NOT {BREACHED})"
    cancelled = f"(d.cancelled AND NOT {BREACHED})"
    sums = [
        f"sum(d.sign * {met}::int)",
        f"sum(d.sign * {BREACHED}::int)",
        f"sum(d.sign * {cancelled}::int)",
        f"sum(d.sign * {BY_WORK}::int)",
        f"sum(d.sign * CASE WHEN {BY_WORK} THEN {WALL_US} ELSE 0 END)",
    ]
    return f"""
    INSERT INTO report_clock_hours AS s ({HOUR_KEYS}, met, breached, cancelled, stopped,
                                         wall_us)
    SELECT {HOUR}, COALESCE(d.calendar_name, '24x7'), d.kind, {", ".join(sums)}
    FROM ({rows}) AS d
    WHERE d.stopped_at IS NOT NULL
    GROUP BY 1, 2, 3
    HAVING {" OR ".join(f"{s} <> 0" for s in sums)}
    ORDER BY 1, 2, 3
    ON CONFLICT ({HOUR_KEYS}) DO UPDATE SET
        met = s.met + EXCLUDED.met,
        breached = s.breached + EXCLUDED.breached,
        cancelled = s.cancelled + EXCLUDED.cancelled,
        stopped = s.stopped + EXCLUDED.stopped,
        wall_us = s.wall_us + EXCLUDED.wall_us;

    INSERT INTO report_duration_bins AS s ({BIN_KEYS}, clocks)
    SELECT {DAY}, d.kind, m.measure, opsflow_duration_bin(m.seconds), sum(d.sign)
    FROM ({rows}) AS d
    CROSS JOIN LATERAL (VALUES ('wall', {WALL}), ('working', d.working_seconds))
        AS m(measure, seconds)
    WHERE d.stopped_at IS NOT NULL AND {BY_WORK}
    GROUP BY 1, 2, 3, 4
    HAVING sum(d.sign) <> 0
    ORDER BY 1, 2, 3, 4
    ON CONFLICT ({BIN_KEYS}) DO UPDATE SET clocks = s.clocks + EXCLUDED.clocks;
    """  # noqa: S608


NEW = "SELECT 1 AS sign, n.* FROM new_rows AS n"
OLD = "SELECT -1 AS sign, o.* FROM old_rows AS o"

FUNCTION = f"""
CREATE OR REPLACE FUNCTION opsflow_report_clock_rollups() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_statements(NEW)}
    ELSIF TG_OP = 'DELETE' THEN
        {_statements(OLD)}
    ELSIF TG_OP = 'UPDATE' THEN
        -- Most writes are the engine's to counting clocks, which no rollup counts.
        IF EXISTS (SELECT FROM old_rows WHERE stopped_at IS NOT NULL)
           OR EXISTS (SELECT FROM new_rows WHERE stopped_at IS NOT NULL) THEN
            {_statements(OLD + " UNION ALL " + NEW)}
        END IF;
    ELSE
        DELETE FROM report_clock_hours;
        DELETE FROM report_duration_bins;
    END IF;
    RETURN NULL;
END;
$$
"""  # noqa: S608

TRIGGERS = (
    "CREATE TRIGGER report_clock_rollups_insert AFTER INSERT ON sla_clocks "
    "REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION opsflow_report_clock_rollups()",
    "CREATE TRIGGER report_clock_rollups_update AFTER UPDATE ON sla_clocks "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION opsflow_report_clock_rollups()",
    "CREATE TRIGGER report_clock_rollups_delete AFTER DELETE ON sla_clocks "
    "REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION opsflow_report_clock_rollups()",
    "CREATE TRIGGER report_clock_rollups_truncate AFTER TRUNCATE ON sla_clocks "
    "FOR EACH STATEMENT EXECUTE FUNCTION opsflow_report_clock_rollups()",
)

STOPPED_BY_WORK = "stopped_at IS NOT NULL AND cancelled IS false AND working_seconds IS NOT NULL"
# The durations inside one bin, of the clocks started in a period, from the index alone.
INDEXES = (
    "CREATE INDEX ix_sla_clocks_wall_bins ON sla_clocks (kind, "
    "opsflow_duration_bin(date_part('epoch', stopped_at - started_at)), started_at) "
    f"INCLUDE (stopped_at) WHERE {STOPPED_BY_WORK}",
    "CREATE INDEX ix_sla_clocks_working_bins ON sla_clocks (kind, "
    "opsflow_duration_bin(working_seconds), started_at) "
    f"INCLUDE (working_seconds) WHERE {STOPPED_BY_WORK}",
)


# The clocks still counting, by start, with what their compliance reads (from the index
# alone): the reports count them live, since whether one is breached depends on now.
OPEN_COLUMNS = [
    "kind",
    "calendar_name",
    "status",
    "deadline",
    "paused_at",
    "stopped_at",
    "cancelled",
]


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def _counts(*names: str) -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in names]


def upgrade() -> None:
    op.create_table(
        "report_clock_hours",
        _id(),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("calendar", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        *_counts("met", "breached", "cancelled", "stopped", "wall_us"),
    )
    op.create_index(
        "uq_report_clock_hours", "report_clock_hours", HOUR_KEYS.split(", "), unique=True
    )
    op.create_table(
        "report_duration_bins",
        _id(),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("measure", sa.String(8), nullable=False),
        sa.Column("bin", sa.Integer(), nullable=False),
        *_counts("clocks"),
    )
    op.create_index(
        "uq_report_duration_bins", "report_duration_bins", BIN_KEYS.split(", "), unique=True
    )
    op.create_index(
        "ix_sla_clocks_open_started",
        "sla_clocks",
        ["started_at"],
        postgresql_include=OPEN_COLUMNS,
        postgresql_where=sa.text("stopped_at IS NULL"),
        sqlite_where=sa.text("stopped_at IS NULL"),
    )
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    bind.exec_driver_sql(FUNCTION_BIN)
    for index in INDEXES:
        bind.exec_driver_sql(index)
    bind.exec_driver_sql(FUNCTION)
    for trigger in TRIGGERS:
        bind.exec_driver_sql(trigger)
    # The rollups of the clocks already there: what `opsflow reports rebuild` writes.
    from opsflow.reports.rollups import CLOCK_FILL

    for statement in CLOCK_FILL:
        bind.execute(sa.text(statement))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for name in ("insert", "update", "delete", "truncate"):
            bind.exec_driver_sql(f"DROP TRIGGER report_clock_rollups_{name} ON sla_clocks")
        bind.exec_driver_sql("DROP FUNCTION opsflow_report_clock_rollups()")
        bind.exec_driver_sql("DROP INDEX ix_sla_clocks_working_bins")
        bind.exec_driver_sql("DROP INDEX ix_sla_clocks_wall_bins")
        bind.exec_driver_sql("DROP FUNCTION opsflow_duration_bin(double precision)")
    op.drop_index("ix_sla_clocks_open_started", table_name="sla_clocks")
    for table in ("report_duration_bins", "report_clock_hours"):
        op.drop_table(table)
