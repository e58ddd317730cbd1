"""sla policies and calendars

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 01:39:57.817216
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sla_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "thresholds", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "escalation_levels",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("default_calendar", sa.String(length=100), nullable=True),
        sa.Column("default_pause_on_blocked", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_settings")),
    )
    op.create_table(
        "sla_policies",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("task_type", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("customer_tier", sa.String(length=16), nullable=False),
        sa.Column("start_minutes", sa.Integer(), nullable=False),
        sa.Column("resolve_minutes", sa.Integer(), nullable=False),
        sa.Column(
            "thresholds", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("calendar_id", sa.Uuid(), nullable=True),
        sa.Column("pause_on_blocked", sa.Boolean(), nullable=False),
        sa.Column(
            "escalation", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["business_calendars.id"],
            name=op.f("fk_sla_policies_calendar_id_business_calendars"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_policies")),
        sa.UniqueConstraint("name", name=op.f("uq_sla_policies_name")),
    )
    with op.batch_alter_table("sla_policies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sla_policies_calendar_id"), ["calendar_id"], unique=False
        )

    with op.batch_alter_table("business_calendars", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), nullable=False, server_default="api")
        )

    with op.batch_alter_table("sla_clocks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("calendar_name", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column(
                "calendar_spec",
                sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column("pause_on_blocked", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("cancelled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("warning_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("critical_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_sla_clocks_calendar_id"), ["calendar_id"], unique=False
        )

    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sla_policy_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("sla_policy_name", sa.String(length=100), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_tasks_sla_policy_id_sla_policies"),
            "sla_policies",
            ["sla_policy_id"],
            ["id"],
            ondelete="SET NULL",
        )

    settings = sa.table(
        "sla_settings",
        sa.column("id", sa.Integer()),
        sa.column("thresholds", _JSON),
        sa.column("escalation_levels", _JSON),
        sa.column("default_pause_on_blocked", sa.Boolean()),
        sa.column("revision", sa.Integer()),
    )
    op.bulk_insert(
        settings,
        [
            {
                "id": 1,
                "thresholds": [75.0, 95.0],
                "escalation_levels": [],
                "default_pause_on_blocked": False,
                "revision": 0,
            }
        ],
    )
    _backfill_threshold_instants()


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_tasks_sla_policy_id_sla_policies"), type_="foreignkey"
        )
        batch_op.drop_column("sla_policy_name")
        batch_op.drop_column("sla_policy_id")

    with op.batch_alter_table("sla_clocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sla_clocks_calendar_id"))
        batch_op.drop_column("critical_at")
        batch_op.drop_column("warning_at")
        batch_op.drop_column("cancelled")
        batch_op.drop_column("pause_on_blocked")
        batch_op.drop_column("calendar_spec")
        batch_op.drop_column("calendar_name")

    with op.batch_alter_table("business_calendars", schema=None) as batch_op:
        batch_op.drop_column("source")

    with op.batch_alter_table("sla_policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sla_policies_calendar_id"))

    op.drop_table("sla_policies")
    op.drop_table("sla_settings")


def _backfill_threshold_instants() -> None:
    """Clocks written before 0004 ran 24x7: their warning/critical instants, from their rows."""
    from opsflow.sla.clocks import plan_clock

    clocks = sa.table(
        "sla_clocks",
        sa.column("id", sa.Uuid()),
        sa.column("started_at", sa.DateTime(timezone=True)),
        sa.column("target_minutes", sa.Integer()),
        sa.column("thresholds", _JSON),
        sa.column("pauses", _JSON),
        sa.column("warning_at", sa.DateTime(timezone=True)),
        sa.column("critical_at", sa.DateTime(timezone=True)),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            clocks.c.id,
            clocks.c.started_at,
            clocks.c.target_minutes,
            clocks.c.thresholds,
            clocks.c.pauses,
        )
    ).all()
    for row in rows:
        started = row.started_at
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        plan = plan_clock(started, row.target_minutes, row.thresholds, row.pauses)
        bind.execute(
            clocks.update()
            .where(clocks.c.id == row.id)
            .values(warning_at=plan.warning_at, critical_at=plan.critical_at)
        )
