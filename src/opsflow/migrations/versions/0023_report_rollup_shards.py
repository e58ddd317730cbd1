"""Report rollups spread over shards: concurrent writers no longer queue on one rollup row

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 11:30:00.000000

The triggers of migrations 0021 and 0022 add each statement's changes to one row per group
(quarter hour, priority, type, status, team…) with ``INSERT … ON CONFLICT DO UPDATE``. That
row stays locked until the transaction commits, so every task created, started or
completed in the same quarter hour with the same values waited for the one before it to
commit: 50 concurrent creates ran one at a time. Each group is now kept in up to `SHARDS`
rows, one per writing connection (`pg_backend_pid()` modulo `SHARDS`): concurrent
transactions on different connections write different rows, and the reads, which already
sum their groups, sum the shards with them.

The trigger functions are the ones of 0021 and 0022 with the shard added (`sharded`): the
shard is the last column of each insert, and part of each conflict target.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHARDS = 32
SHARD = f"(pg_backend_pid() % {SHARDS})::smallint"


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
_CLOCKS = _migration("0022_report_clock_rollups")

# Each rollup table and the columns its rows were unique on.
TABLES = {
    "report_task_slots": _TASKS.TASK_KEYS,
    "report_tag_slots": _TASKS.TAG_KEYS,
    "report_ack_slots": _TASKS.ACK_KEYS,
    "report_clock_hours": _CLOCKS.HOUR_KEYS,
    "report_duration_bins": _CLOCKS.BIN_KEYS,
}
# The tables of 0021 let NULL keys (no team, no tier) meet in one group.
NULLS_NOT_DISTINCT = {"report_task_slots", "report_tag_slots", "report_ack_slots"}

_INSERT = re.compile(
    r"(INSERT INTO (report_\w+) AS s \()(?P<columns>.*?)(\)\s*SELECT )(?P<select>.*?)"
    r"(\n\s*FROM \()",
    re.S,
)


def sharded(function: str) -> str:
    """A trigger function of 0021/0022 writing its upserts with the shard of the
    connection: the shard appended to each insert's columns and values, and to its
    conflict target. The positional GROUP BY and ORDER BY stay as they were."""

    def insert(match: re.Match[str]) -> str:
        return f"{match[1]}{match['columns']}, shard{match[4]}{match['select']}, {SHARD}{match[6]}"

    result, count = _INSERT.subn(insert, function)
    for keys in TABLES.values():
        result = result.replace(f"ON CONFLICT ({keys})", f"ON CONFLICT ({keys}, shard)")
    if count == 0 or count != result.count(", shard) DO UPDATE"):
        raise RuntimeError("a rollup insert of the trigger functions was not sharded")
    return result


def _unique(table: str, keys: list[str]) -> None:
    op.drop_index(f"uq_{table}", table_name=table)
    op.create_index(
        f"uq_{table}",
        table,
        keys,
        unique=True,
        postgresql_nulls_not_distinct=table in NULLS_NOT_DISTINCT,
    )


def upgrade() -> None:
    for table, keys in TABLES.items():
        op.add_column(
            table, sa.Column("shard", sa.SmallInteger(), nullable=False, server_default="0")
        )
        _unique(table, [*keys.split(", "), "shard"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(sharded(_TASKS.FUNCTION))
        bind.exec_driver_sql(sharded(_CLOCKS.FUNCTION))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(_TASKS.FUNCTION)
        bind.exec_driver_sql(_CLOCKS.FUNCTION)
    for table, keys in TABLES.items():
        # The shards of each group folded back into one row.
        counts = [
            column["name"]
            for column in sa.inspect(bind).get_columns(table)
            if column["name"] not in {"id", "shard", *keys.split(", ")}
        ]
        sums = ", ".join(f"CAST(sum({name}) AS BIGINT)" for name in counts)
        bind.execute(
            sa.text(
                f"CREATE TEMPORARY TABLE folded AS SELECT {keys}, {sums} FROM {table} "  # noqa: S608
                f"GROUP BY {keys}"
            )
        )
        bind.execute(sa.text(f"DELETE FROM {table}"))  # noqa: S608
        bind.execute(
            sa.text(f"INSERT INTO {table} ({keys}, {', '.join(counts)}) SELECT * FROM folded")  # noqa: S608
        )
        bind.execute(sa.text("DROP TABLE folded"))
        _unique(table, keys.split(", "))
        op.drop_column(table, "shard")
