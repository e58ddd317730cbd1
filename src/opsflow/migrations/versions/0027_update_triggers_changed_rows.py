"""PostgreSQL: the statement triggers on UPDATE of tasks look only at the rows whose values
they keep changed (the report rollups, the task's values copied on its clocks)

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 19:40:00.000000

Most UPDATEs of tasks change nothing either trigger keeps: an alert's re-sends write only
`metadata`, a comment or a snooze other columns. Until now the rollups' trigger still
grouped all the statement's old and new rows three times (their sums cancelling to
nothing), and the copy trigger joined all its new rows with `sla_clocks` (a sequential scan
of the table whenever the planner preferred one) and ran an UPDATE of `sla_clocks` even when
it changed no row, firing that table's own statement triggers.

Now both first pair each new row with the old row of the same id:

- the rollups' trigger adds only the rows whose rollup columns (`ROLLUP_COLUMNS`) differ
  from their old row's (-1 for the old row, +1 for the new one); a row and its old row with
  the same values would add and subtract the very same sums, so the totals are those of
  0023's trigger, and a statement changing none writes nothing;
- the copy trigger writes the clocks of the tasks whose copied values (`VALUES`) changed,
  found by the index on `sla_clocks.task_id`. A clock's copy equals its task's values from
  its insert on (its BEFORE INSERT trigger) and is moved with every change of them, so the
  clocks of a task whose values did not change are already right (`opsflow reports
  rebuild` checks and repairs the copies, as before).

An UPDATE that changes a primary key (OpsFlow never does) still counts right: a row without
an old row of its id and values counts whole.

And tasks' pages are filled to `FILLFACTOR` % only: an update that changes no indexed column
(an alert's re-send: `metadata`) then finds room for the new row version on its page and
is a HOT update, which writes none of the table's fifteen indexes. Full pages made most of
them write every index. It applies to the pages written from now on (a `VACUUM FULL` of
tasks applies it to the others).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _migration(name: str) -> ModuleType:
    """An earlier migration of this folder, for its frozen SQL."""
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"opsflow_migration_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_TASKS = _migration("0021_report_rollups")
_SHARDS = _migration("0023_report_rollup_shards")
_CLOCKS = _migration("0024_report_clock_filters")

# Every column of tasks the rollups' statements read (`d.<column>` in 0021's statements).
ROLLUP_COLUMNS = (
    "created_at",
    "priority",
    "task_type",
    "status",
    "team_id",
    "assigned_to",
    "customer_tier",
    "completed_at",
    "sla_breach_at",
    "tags",
    "acknowledged_at",
    "acknowledged_by",
)
VALUES = _CLOCKS.VALUES
FILLFACTOR = 80


def _unmatched(others: str, columns: Sequence[str]) -> str:
    """The condition on a transition row `r`: no row of transition table `others` has its
    id and its `columns`."""
    same = " AND ".join(f"m.{c} IS NOT DISTINCT FROM r.{c}" for c in columns)
    return f"NOT EXISTS (SELECT FROM {others} AS m WHERE m.id = r.id AND {same})"


CHANGED_OLD = (
    "SELECT -1 AS sign, r.* FROM old_rows AS r "  # noqa: S608
    f"WHERE {_unmatched('new_rows', ROLLUP_COLUMNS)}"
)
CHANGED_NEW = (
    "SELECT 1 AS sign, r.* FROM new_rows AS r "  # noqa: S608
    f"WHERE {_unmatched('old_rows', ROLLUP_COLUMNS)}"
)

# 0021's function with 0023's shards; only its UPDATE branch differs. The EXISTS on the new
# rows is enough: the ids are unique in both tables, which hold as many rows each, so when
# every new row has its old row, every old row has its new one.
ROLLUPS = _SHARDS.sharded(f"""
CREATE OR REPLACE FUNCTION opsflow_report_rollups() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_TASKS._statements(_TASKS.NEW)}
    ELSIF TG_OP = 'DELETE' THEN
        {_TASKS._statements(_TASKS.OLD)}
    ELSIF TG_OP = 'UPDATE' THEN
        IF EXISTS (SELECT FROM new_rows AS r
                   WHERE {_unmatched("old_rows", ROLLUP_COLUMNS)}) THEN
            {_TASKS._statements(CHANGED_OLD + " UNION ALL " + CHANGED_NEW)}
        END IF;
    ELSE
        DELETE FROM report_task_slots;
        DELETE FROM report_tag_slots;
        DELETE FROM report_ack_slots;
    END IF;
    RETURN NULL;
END;
$$
""")  # noqa: S608

COPY_ON_TASK_UPDATE = f"""
CREATE OR REPLACE FUNCTION opsflow_task_values_to_clocks() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed uuid[];
BEGIN
    SELECT array_agg(r.id) INTO changed FROM new_rows AS r
    WHERE {_unmatched("old_rows", VALUES)};
    IF changed IS NOT NULL THEN
        UPDATE sla_clocks AS c SET {", ".join(f"{v} = n.{v}" for v in VALUES)}
        FROM new_rows AS n
        WHERE c.task_id = ANY (changed) AND n.id = c.task_id
          AND ({", ".join(f"c.{v}" for v in VALUES)})
              IS DISTINCT FROM ({", ".join(f"n.{v}" for v in VALUES)});
    END IF;
    RETURN NULL;
END;
$$
"""  # noqa: S608
COPY_TRIGGER = (
    "CREATE TRIGGER tasks_values_to_clocks AFTER UPDATE ON tasks "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION opsflow_task_values_to_clocks()"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    bind.exec_driver_sql(f"ALTER TABLE tasks SET (fillfactor = {FILLFACTOR})")
    bind.exec_driver_sql(ROLLUPS)
    bind.exec_driver_sql("DROP TRIGGER tasks_values_to_clocks ON tasks")
    bind.exec_driver_sql(COPY_ON_TASK_UPDATE)
    bind.exec_driver_sql(COPY_TRIGGER)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    bind.exec_driver_sql("ALTER TABLE tasks RESET (fillfactor)")
    bind.exec_driver_sql(_SHARDS.sharded(_TASKS.FUNCTION))
    bind.exec_driver_sql("DROP TRIGGER tasks_values_to_clocks ON tasks")
    previous = _CLOCKS.COPY_ON_TASK_UPDATE
    bind.exec_driver_sql(previous.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    bind.exec_driver_sql(_CLOCKS.COPY_TRIGGERS[1])
