"""The alert intake's lookups of a batch's dedup keys read those keys only (PostgreSQL).

Each group commit looks up the open incident of each of its keys, and which keys ever had
one. With ``dedup_key IN (…)`` the planner read every open incident of the integration
through the first column of the index and filtered the keys (with no statistics, or a plan
prepared while the table was small): a batch's cost grew with the open incidents. Here, with
many open incidents of one source and the plan made generic (as a prepared statement's
becomes), the rows the lookups read are checked to be the keys' own.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.context import AppContext
from opsflow.db import insert_rows, unit_of_work
from opsflow.integrations import repository
from opsflow.models.task import Task
from tests.factories import make_task

pytestmark = pytest.mark.postgres

OPEN = 300


def _rows_read(plan: dict[str, Any]) -> int:
    """Rows the plan's scans of tasks produced or filtered out, over all their loops."""
    total = 0
    if plan.get("Relation Name") == "tasks":
        loops = int(plan.get("Actual Loops", 1))
        total += (int(plan["Actual Rows"]) + int(plan.get("Rows Removed by Filter", 0))) * loops
    for child in plan.get("Plans", []):
        total += _rows_read(child)
    return total


def _sql(statement: Any) -> str:
    return str(getattr(statement, "element", statement).text)


async def _explained(session: AsyncSession, sql: str, keys: list[str], source: str) -> int:
    """Rows of tasks read by `sql` (its parameters `:keys` and `:source`) as a prepared
    statement's generic plan runs it."""
    prepared = sql.replace(":keys", "$1").replace(":source", "$2")
    await session.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
    connection = await session.connection()
    await connection.exec_driver_sql(f"PREPARE lookup(VARCHAR[], VARCHAR) AS {prepared}")
    keys_literal = "ARRAY[" + ", ".join(f"'{k}'" for k in keys) + "]::VARCHAR[]"
    result = await connection.exec_driver_sql(
        f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE lookup({keys_literal}, '{source}')"
    )
    document = result.scalar_one()
    await connection.exec_driver_sql("DEALLOCATE lookup")
    plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
    return _rows_read(plan)


async def test_the_key_lookups_read_only_the_keys_rows(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    task_id = uuid.UUID((await make_task(client, admin_headers, task_type="INCIDENT"))["id"])
    source = "integration:lookup"
    async with unit_of_work(app_context.sessions) as session:
        row = (await session.execute(select(Task.__table__).where(Task.id == task_id))).one()
        base = row._asdict()
        base["metadata_"] = base.pop("metadata")
        await insert_rows(
            session,
            Task,
            [
                {
                    **base,
                    "id": uuid.uuid4(),
                    "source": source,
                    "dedup_key": f"key-{n}",
                    "external_id": None,
                }
                for n in range(OPEN)
            ],
        )
    keys = ["key-7", "key-123", "no-such-key"]
    refs = {(source, key) for key in keys}
    async with unit_of_work(app_context.sessions) as session:
        found = await repository.open_incidents(session, refs)
        assert sorted(k for _, k in found) == ["key-123", "key-7"]
        assert await repository.keys_with_incidents(session, refs) == {
            (source, "key-7"),
            (source, "key-123"),
        }
        for statement in (repository.OPEN_BY_KEYS, repository.KNOWN_KEYS):
            assert await _explained(session, _sql(statement), keys, source) <= len(keys)
