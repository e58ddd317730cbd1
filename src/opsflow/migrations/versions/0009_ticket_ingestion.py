"""ticket ingestion: the source version applied last

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 18:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.add_column(sa.Column("external_updated_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("external_digest", sa.String(length=64)))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.drop_column("external_digest")
        batch_op.drop_column("external_updated_at")
