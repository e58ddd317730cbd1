"""tasks.sla_breach_at (the instant from which a task counts as breached) and sla_clocks
started_at index, for the reports

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 02:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from opsflow.kit.types import UTCDateTime

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("sla_breach_at", UTCDateTime(), nullable=True))
    # Every task's value from its clocks: the statement `opsflow reports rebuild` runs.
    from opsflow.reports.clocks import breach_at_update

    op.get_bind().execute(breach_at_update())
    op.create_index("ix_sla_clocks_started_at", "sla_clocks", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_sla_clocks_started_at", table_name="sla_clocks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("sla_breach_at")
