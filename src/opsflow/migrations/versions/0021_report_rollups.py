"""Report rollups: tasks, incident tags and acknowledgements summed per quarter hour, kept
by statement triggers on tasks (PostgreSQL); indexes on tasks.sla_breach_at and the stopped
clocks' durations

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 08:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SLOT = "floor(extract(epoch FROM {0}) / 900)::int"
COMPLETION_US = (
    "COALESCE(((extract(epoch FROM d.completed_at) - extract(epoch FROM d.created_at))"
    " * 1000000)::bigint, 0)"
)
TASK_KEYS = "slot, priority, task_type, status, team_id, assigned_to, customer_tier"
TAG_KEYS = "slot, tag, priority, status, team_id, customer_tier"
ACK_KEYS = "slot, acknowledged_by, priority, team_id, customer_tier"


def _statements(rows: str) -> str:
    """The three upserts of one statement's changed rows (`rows`: the transition rows with a
    `sign`, +1 for a row as it is now, -1 for a row as it was). Groups whose sums are all
    zero (a change no rollup sees) write nothing; rows are upserted in key order."""
    task_slot = SLOT.format("d.created_at")
    ack_slot = SLOT.format("d.acknowledged_at")
    return f"""
    INSERT INTO report_task_slots AS s ({TASK_KEYS}, tasks, completions, completion_us,
                                        breach_known)
    SELECT {task_slot}, d.priority, d.task_type, d.status, d.team_id, d.assigned_to,
           d.customer_tier, sum(d.sign), sum(d.sign * (d.completed_at IS NOT NULL)::int),
           sum(d.sign * {COMPLETION_US}), sum(d.sign * (d.sla_breach_at IS NOT NULL)::int)
    FROM ({rows}) AS d
    GROUP BY 1, 2, 3, 4, 5, 6, 7
    HAVING sum(d.sign) <> 0 OR sum(d.sign * (d.completed_at IS NOT NULL)::int) <> 0
        OR sum(d.sign * {COMPLETION_US}) <> 0
        OR sum(d.sign * (d.sla_breach_at IS NOT NULL)::int) <> 0
    ORDER BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT ({TASK_KEYS}) DO UPDATE SET
        tasks = s.tasks + EXCLUDED.tasks,
        completions = s.completions + EXCLUDED.completions,
        completion_us = s.completion_us + EXCLUDED.completion_us,
        breach_known = s.breach_known + EXCLUDED.breach_known;

    INSERT INTO report_tag_slots AS s ({TAG_KEYS}, incidents, completions, completion_us)
    SELECT {task_slot}, t.tag, d.priority, d.status, d.team_id, d.customer_tier,
           sum(d.sign), sum(d.sign * (d.completed_at IS NOT NULL)::int),
           sum(d.sign * {COMPLETION_US})
    FROM ({rows}) AS d
    CROSS JOIN LATERAL jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(d.tags::jsonb) = 'array' THEN d.tags::jsonb ELSE '[]' END
    ) AS t(tag)
    WHERE d.task_type = 'INCIDENT'
    GROUP BY 1, 2, 3, 4, 5, 6
    HAVING sum(d.sign) <> 0 OR sum(d.sign * (d.completed_at IS NOT NULL)::int) <> 0
        OR sum(d.sign * {COMPLETION_US}) <> 0
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT ({TAG_KEYS}) DO UPDATE SET
        incidents = s.incidents + EXCLUDED.incidents,
        completions = s.completions + EXCLUDED.completions,
        completion_us = s.completion_us + EXCLUDED.completion_us;

    INSERT INTO report_ack_slots AS s ({ACK_KEYS}, incidents)
    SELECT {ack_slot}, d.acknowledged_by, d.priority, d.team_id, d.customer_tier, sum(d.sign)
    FROM ({rows}) AS d
    WHERE d.task_type = 'INCIDENT' AND d.acknowledged_at IS NOT NULL
      AND d.acknowledged_by IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5
    HAVING sum(d.sign) <> 0
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT ({ACK_KEYS}) DO UPDATE SET incidents = s.incidents + EXCLUDED.incidents;
    """  # noqa: S608


NEW = "SELECT 1 AS sign, n.* FROM new_rows AS n"
OLD = "SELECT -1 AS sign, o.* FROM old_rows AS o"

FUNCTION = f"""
CREATE OR REPLACE FUNCTION opsflow_report_rollups() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_statements(NEW)}
    ELSIF TG_OP = 'DELETE' THEN
        {_statements(OLD)}
    ELSIF TG_OP = 'UPDATE' THEN
        {_statements(OLD + " UNION ALL " + NEW)}
    ELSE
        DELETE FROM report_task_slots;
        DELETE FROM report_tag_slots;
        DELETE FROM report_ack_slots;
    END IF;
    RETURN NULL;
END;
$$
"""  # noqa: S608

TRIGGERS = (
    "CREATE TRIGGER report_rollups_insert AFTER INSERT ON tasks "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION opsflow_report_rollups()",
    "CREATE TRIGGER report_rollups_update AFTER UPDATE ON tasks "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION opsflow_report_rollups()",
    "CREATE TRIGGER report_rollups_delete AFTER DELETE ON tasks "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION opsflow_report_rollups()",
    "CREATE TRIGGER report_rollups_truncate AFTER TRUNCATE ON tasks "
    "FOR EACH STATEMENT EXECUTE FUNCTION opsflow_report_rollups()",
)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def _counts(*names: str) -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in names]


def upgrade() -> None:
    op.create_table(
        "report_task_slots",
        _id(),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("task_type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("assigned_to", sa.Uuid(), nullable=True),
        sa.Column("customer_tier", sa.String(16), nullable=True),
        *_counts("tasks", "completions", "completion_us", "breach_known"),
    )
    op.create_index(
        "uq_report_task_slots",
        "report_task_slots",
        TASK_KEYS.split(", "),
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "report_tag_slots",
        _id(),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("tag", sa.Text(), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("customer_tier", sa.String(16), nullable=True),
        *_counts("incidents", "completions", "completion_us"),
    )
    op.create_index(
        "uq_report_tag_slots",
        "report_tag_slots",
        TAG_KEYS.split(", "),
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "report_ack_slots",
        _id(),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("acknowledged_by", sa.Uuid(), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("customer_tier", sa.String(16), nullable=True),
        *_counts("incidents"),
    )
    op.create_index(
        "uq_report_ack_slots",
        "report_ack_slots",
        ACK_KEYS.split(", "),
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_index("ix_tasks_sla_breach_at", "tasks", ["sla_breach_at"])
    stopped = sa.text(
        "stopped_at IS NOT NULL AND cancelled IS false AND working_seconds IS NOT NULL"
    )
    op.create_index(
        "ix_sla_clocks_stopped_durations",
        "sla_clocks",
        ["started_at"],
        postgresql_include=["kind", "stopped_at", "working_seconds"],
        postgresql_where=stopped,
        sqlite_where=stopped,
    )
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    bind.exec_driver_sql(FUNCTION)
    for trigger in TRIGGERS:
        bind.exec_driver_sql(trigger)
    # The rollups of the tasks already there: what `opsflow reports rebuild` writes.
    from opsflow.reports.rollups import FILL

    for statement in FILL:
        bind.execute(sa.text(statement))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for name in ("insert", "update", "delete", "truncate"):
            bind.exec_driver_sql(f"DROP TRIGGER report_rollups_{name} ON tasks")
        bind.exec_driver_sql("DROP FUNCTION opsflow_report_rollups()")
    op.drop_index("ix_sla_clocks_stopped_durations", table_name="sla_clocks")
    op.drop_index("ix_tasks_sla_breach_at", table_name="tasks")
    for table in ("report_ack_slots", "report_tag_slots", "report_task_slots"):
        op.drop_table(table)
