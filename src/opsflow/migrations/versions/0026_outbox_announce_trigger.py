"""PostgreSQL: a transaction that inserts outbox rows notifies the relays itself

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Until now every unit of work that wrote outbox rows sent `SELECT pg_notify(...)` before
# its COMMIT: a round trip of its own on every write request. The statement trigger below
# sends the same notification from inside the INSERT. Its payload is the writing process's
# token, which OpsFlow sets on each of its connections as `opsflow.wake_token` when it
# opens them (`events/wake.py`); a connection without one (psql, a process configured with
# OPSFLOW_OUTBOX_NOTIFY=false) notifies nothing. PostgreSQL delivers a notification only if
# the transaction commits, and folds identical ones of a transaction into one.
ANNOUNCE = """
CREATE OR REPLACE FUNCTION opsflow_outbox_announce() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    token text := current_setting('opsflow.wake_token', true);
BEGIN
    IF token IS NOT NULL AND token <> '' THEN
        PERFORM pg_notify('opsflow_outbox', token);
    END IF;
    RETURN NULL;
END;
$$
"""
TRIGGER = """
CREATE TRIGGER outbox_events_announce AFTER INSERT ON outbox_events
FOR EACH STATEMENT EXECUTE FUNCTION opsflow_outbox_announce()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ANNOUNCE)
        op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_events_announce ON outbox_events")
        op.execute("DROP FUNCTION IF EXISTS opsflow_outbox_announce()")
