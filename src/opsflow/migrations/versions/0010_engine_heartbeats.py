"""engine heartbeats

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 18:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "engine_heartbeats",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("driver", sa.String(length=32), nullable=False),
        sa.Column("passes", sa.String(length=500), nullable=False),
        sa.Column("interval_seconds", sa.Float(), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_heartbeats")),
    )
    with op.batch_alter_table("engine_heartbeats", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_engine_heartbeats_last_seen"), ["last_seen"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("engine_heartbeats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_engine_heartbeats_last_seen"))

    op.drop_table("engine_heartbeats")
