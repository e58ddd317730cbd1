"""PostgreSQL: take the audit chain's lock and read its head in one round trip

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 02:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A VOLATILE PL/pgSQL function runs each statement with a fresh snapshot, so the head it
# reads is the one committed by whoever held the lock before: one statement that locked and
# read in plain SQL would read with the snapshot taken before it waited.
CHAIN_HEAD = """
CREATE OR REPLACE FUNCTION opsflow_audit_chain_head(lock_key bigint)
RETURNS TABLE (seq bigint, hash varchar)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN QUERY SELECT a.seq, a.hash FROM audit_logs AS a ORDER BY a.seq DESC LIMIT 1;
END;
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CHAIN_HEAD)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS opsflow_audit_chain_head(bigint)")
