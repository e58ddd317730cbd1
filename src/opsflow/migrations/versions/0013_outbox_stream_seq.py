"""outbox stream sequence

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 20:08:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_events") as batch:
        batch.add_column(sa.Column("stream_seq", sa.BigInteger(), nullable=True))
        batch.create_index("ix_outbox_events_stream_seq", ["stream_seq"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("outbox_events") as batch:
        batch.drop_index("ix_outbox_events_stream_seq")
        batch.drop_column("stream_seq")
