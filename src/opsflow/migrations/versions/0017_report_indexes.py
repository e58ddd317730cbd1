"""reports: working time of stopped SLA clocks; indexes of the report queries

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 01:15:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = "stopped_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("sla_clocks") as batch_op:
        batch_op.add_column(sa.Column("working_seconds", sa.Float(), nullable=True))
    op.create_index(
        "ix_sla_clocks_running_deadline",
        "sla_clocks",
        ["deadline"],
        postgresql_where=sa.text(RUNNING),
        sqlite_where=sa.text(RUNNING),
    )
    op.create_index("ix_tasks_acknowledged_at", "tasks", ["acknowledged_at"])
    _backfill_working_seconds()


def downgrade() -> None:
    op.drop_index("ix_tasks_acknowledged_at", table_name="tasks")
    op.drop_index("ix_sla_clocks_running_deadline", table_name="sla_clocks")
    with op.batch_alter_table("sla_clocks") as batch_op:
        batch_op.drop_column("working_seconds")


def _backfill_working_seconds(batch: int = 5000) -> None:
    """Clocks stopped before 0017: the working time they counted, from their rows (what
    `sla.clocks.stop` now stores, and `opsflow reports rebuild` recomputes)."""
    from opsflow.kit.types import UTCDateTime, json_type
    from opsflow.sla.calendar import working_seconds
    from opsflow.sla.clocks import calendar_of, pause_intervals

    clocks = sa.table(
        "sla_clocks",
        sa.column("id", sa.Uuid()),
        sa.column("started_at", UTCDateTime()),
        sa.column("stopped_at", UTCDateTime()),
        sa.column("calendar_name", sa.String()),
        sa.column("calendar_spec", json_type()),
        sa.column("pauses", json_type()),
        sa.column("working_seconds", sa.Float()),
    )
    bind = op.get_bind()
    after = None
    while True:
        query = (
            sa.select(
                clocks.c.id,
                clocks.c.started_at,
                clocks.c.stopped_at,
                clocks.c.calendar_name,
                clocks.c.calendar_spec,
                clocks.c.pauses,
            )
            .where(clocks.c.stopped_at.is_not(None))
            .order_by(clocks.c.id)
            .limit(batch)
        )
        if after is not None:
            query = query.where(clocks.c.id > after)
        rows = bind.execute(query).all()
        if not rows:
            return
        values = [
            {
                "clock_id": row.id,
                "value": working_seconds(
                    calendar_of(row.calendar_name, row.calendar_spec),
                    row.started_at,
                    max(row.stopped_at, row.started_at),
                    pause_intervals(row.pauses or []),
                ),
            }
            for row in rows
        ]
        bind.execute(
            clocks.update()
            .where(clocks.c.id == sa.bindparam("clock_id"))
            .values(working_seconds=sa.bindparam("value")),
            values,
        )
        after = rows[-1].id
