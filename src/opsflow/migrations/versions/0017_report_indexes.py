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


def downgrade() -> None:
    op.drop_index("ix_tasks_acknowledged_at", table_name="tasks")
    op.drop_index("ix_sla_clocks_running_deadline", table_name="sla_clocks")
    with op.batch_alter_table("sla_clocks") as batch_op:
        batch_op.drop_column("working_seconds")
