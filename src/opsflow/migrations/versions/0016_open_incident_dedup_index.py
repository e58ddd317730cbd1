"""one open incident per integration and dedup key; flapping incidents to settle

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 22:05:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "dedup_key IS NOT NULL AND completed_at IS NULL AND deleted_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "alert_flaps",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("integration_id", sa.Uuid(), nullable=False),
        sa.Column("settle_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_alert_flaps_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["integrations.id"],
            name=op.f("fk_alert_flaps_integration_id_integrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_alert_flaps")),
    )
    with op.batch_alter_table("alert_flaps") as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_flaps_settle_at"), ["settle_at"], unique=False)
    op.create_index(
        "uq_tasks_open_dedup_key",
        "tasks",
        ["source", "dedup_key"],
        unique=True,
        postgresql_where=sa.text(OPEN),
        sqlite_where=sa.text(OPEN),
    )


def downgrade() -> None:
    with op.batch_alter_table("alert_flaps") as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_flaps_settle_at"))
    op.drop_table("alert_flaps")
    op.drop_index("uq_tasks_open_dedup_key", table_name="tasks")
