"""PostgreSQL: audit rows sealed into the hash chain by the database when their transaction
commits (a deferred constraint trigger), so the chain's lock is never held across a round
trip to a client; SQLite: only the new column (its rows are chained before they are written)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A row inserted with `seq` NULL carries its hashed content as canonical JSON around the
# value of "seq": the text before it and the text after it, joined by U+0001 (which JSON
# always escapes, so it occurs nowhere else). The seal puts the row after the chain's head
# and computes the hash exactly as opsflow.audit.chain.chain_hash does: the hex SHA-256 of
# prev_hash, a newline and the canonical JSON in UTF-8.
#
# It runs at COMMIT (deferred), in the order the rows were inserted, so the lock is taken at
# the end of the transaction and released with it: no statement of a client waits under it.
# A VOLATILE PL/pgSQL function runs each statement with a fresh snapshot under READ
# COMMITTED, so the head read after the lock is the one its previous holder committed (and
# the rows this transaction sealed just before). Another isolation level would read the
# head from the transaction's snapshot, so it is refused (the unique seq would refuse the
# fork anyway, as a failed commit). The lock's key is `CHAIN_LOCK_KEY` of
# opsflow.audit.writer (0x0F5F10A0D17), the one every OpsFlow version orders the chain with.
SEAL = """
CREATE OR REPLACE FUNCTION opsflow_audit_seal() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head_seq bigint;
    head_hash varchar;
    body text;
BEGIN
    IF NEW.pending_content IS NULL THEN
        RAISE EXCEPTION 'audit row % has no place in the chain and no content to seal', NEW.id;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'audit rows are sealed in READ COMMITTED transactions only';
    END IF;
    PERFORM pg_advisory_xact_lock(1056310955287);
    SELECT a.seq, a.hash INTO head_seq, head_hash
    FROM audit_logs AS a
    WHERE a.seq IS NOT NULL
    ORDER BY a.seq DESC
    LIMIT 1;
    head_seq := coalesce(head_seq, 0) + 1;
    head_hash := coalesce(head_hash, repeat('0', 64));
    body := split_part(NEW.pending_content, E'\\x01', 1)
        || head_seq::text
        || split_part(NEW.pending_content, E'\\x01', 2);
    UPDATE audit_logs
    SET seq = head_seq,
        prev_hash = head_hash,
        hash = encode(sha256(convert_to(head_hash || E'\\n' || body, 'UTF8')), 'hex'),
        pending_content = NULL
    WHERE id = NEW.id;
    RETURN NULL;
END;
$$
"""

# WHEN is evaluated at insert time: rows inserted already chained (the demo loader's) are
# left alone and cost no queued trigger event.
SEAL_TRIGGER = """
CREATE CONSTRAINT TRIGGER audit_logs_seal
AFTER INSERT ON audit_logs
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (NEW.seq IS NULL)
EXECUTE FUNCTION opsflow_audit_seal()
"""

# Migration 0020's function, with which a writer takes the lock and reads the head before
# chaining its rows itself (they arrive with their `seq`, so the seal leaves them alone): a
# unit of work with many audit rows, and every process of the previous version during a
# rolling deploy.
# It now skips the rows of its own transaction that await their seal, and the dead index
# entries (seq NULL) that sealed rows leave behind until vacuum.
CHAIN_HEAD = """
CREATE OR REPLACE FUNCTION opsflow_audit_chain_head(lock_key bigint)
RETURNS TABLE (seq bigint, hash varchar)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN QUERY SELECT a.seq, a.hash FROM audit_logs AS a
    WHERE a.seq IS NOT NULL ORDER BY a.seq DESC LIMIT 1;
END;
$$
"""

CHAIN_HEAD_0020 = """
CREATE OR REPLACE FUNCTION opsflow_audit_chain_head(lock_key bigint)
RETURNS TABLE (seq bigint, hash varchar)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN QUERY SELECT a.seq, a.hash FROM audit_logs AS a ORDER BY a.seq DESC LIMIT 1;
END;
$$
"""

CHAINED = ("seq", "prev_hash", "hash")


def upgrade() -> None:
    op.add_column("audit_logs", sa.Column("pending_content", sa.Text(), nullable=True))
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in CHAINED:
        op.alter_column("audit_logs", column, nullable=True)
    op.execute(SEAL)
    op.execute(SEAL_TRIGGER)
    op.execute(CHAIN_HEAD)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CHAIN_HEAD_0020)
        op.execute("DROP TRIGGER IF EXISTS audit_logs_seal ON audit_logs")
        op.execute("DROP FUNCTION IF EXISTS opsflow_audit_seal()")
        # Every committed row is sealed, so this cannot fail on a row of this migration's.
        for column in CHAINED:
            op.alter_column("audit_logs", column, nullable=False)
        op.drop_column("audit_logs", "pending_content")
        return
    op.execute("ALTER TABLE audit_logs DROP COLUMN pending_content")
