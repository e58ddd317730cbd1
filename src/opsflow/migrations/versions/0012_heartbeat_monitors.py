"""heartbeat monitors

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 19:20:09.873039
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "heartbeat_monitors",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("ping_key", sa.String(length=64), nullable=False),
        sa.Column("period_seconds", sa.Integer(), nullable=True),
        sa.Column("cron", sa.String(length=255), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("grace_seconds", sa.Integer(), nullable=False),
        sa.Column("max_run_seconds", sa.Integer(), nullable=True),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("last_ping_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("open_task_id", sa.Uuid(), nullable=True),
        sa.Column("incident_count", sa.Integer(), nullable=False),
        sa.Column("ping_count", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_heartbeat_monitors_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["open_task_id"], ["tasks.id"], name=op.f("fk_heartbeat_monitors_open_task_id_tasks")
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_heartbeat_monitors_team_id_teams")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_heartbeat_monitors")),
        sa.UniqueConstraint("ping_key", name=op.f("uq_heartbeat_monitors_ping_key")),
    )
    with op.batch_alter_table("heartbeat_monitors", schema=None) as batch_op:
        batch_op.create_index(
            "ix_heartbeat_monitors_next_check_at", ["next_check_at"], unique=False
        )

    op.create_table(
        "heartbeat_pings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("monitor_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("rid", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("effect", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["monitor_id"],
            ["heartbeat_monitors.id"],
            name=op.f("fk_heartbeat_pings_monitor_id_heartbeat_monitors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_heartbeat_pings")),
        sa.UniqueConstraint("monitor_id", "seq", name=op.f("uq_heartbeat_pings_monitor_id_seq")),
    )
    op.create_table(
        "heartbeat_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("monitor_id", sa.Uuid(), nullable=False),
        sa.Column("rid", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["monitor_id"],
            ["heartbeat_monitors.id"],
            name=op.f("fk_heartbeat_runs_monitor_id_heartbeat_monitors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_heartbeat_runs")),
        sa.UniqueConstraint("monitor_id", "rid", name=op.f("uq_heartbeat_runs_monitor_id_rid")),
    )


def downgrade() -> None:
    op.drop_table("heartbeat_runs")
    op.drop_table("heartbeat_pings")
    with op.batch_alter_table("heartbeat_monitors", schema=None) as batch_op:
        batch_op.drop_index("ix_heartbeat_monitors_next_check_at")

    op.drop_table("heartbeat_monitors")
