"""one open incident per integration and dedup key

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-06 22:05:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "dedup_key IS NOT NULL AND completed_at IS NULL AND deleted_at IS NULL"


def upgrade() -> None:
    op.create_index(
        "uq_tasks_open_dedup_key",
        "tasks",
        ["source", "dedup_key"],
        unique=True,
        postgresql_where=sa.text(OPEN),
        sqlite_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("uq_tasks_open_dedup_key", table_name="tasks")
