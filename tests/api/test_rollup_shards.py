"""Concurrent writers of one rollup group do not wait for each other (PostgreSQL).

The report rollups are kept by triggers on `tasks` and `sla_clocks` in the writing
transaction; each group (quarter hour, priority, type, status…) used to be one row, locked
until that transaction committed, so every concurrent create of the same kind queued
behind the one before. Now each connection writes its own shard of the group. Two
connections here each create a task of the same group and hold their transactions open:
the second must not wait for the first (its lock timeout would fail it), and once both
commit the rollups still equal what a rebuild computes.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from opsflow.context import AppContext
from opsflow.models.task import Task
from opsflow.reports import rollups
from tests.factories import make_task

pytestmark = pytest.mark.postgres

SHARDS = 32


def _copy(task_id: uuid.UUID) -> str:
    """A copy of the task under a new id: the same rollup group."""
    columns = [c.name for c in Task.__table__.columns if c.name != "id"]
    return (
        f"INSERT INTO tasks (id, {', '.join(columns)}) "
        f"SELECT :new_id, {', '.join(columns)} FROM tasks WHERE id = '{task_id}'"
    )


async def _connections_on_two_shards(ctx: AppContext) -> list[AsyncConnection]:
    """Connections until two of them write different shards (their backend pids differ
    modulo the shard count)."""
    opened: list[AsyncConnection] = []
    shards: dict[int, AsyncConnection] = {}
    while len(shards) < 2:
        connection = await ctx.engine.connect()
        opened.append(connection)
        pid = int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        shards.setdefault(pid % SHARDS, connection)
    for connection in opened:
        if connection not in shards.values():
            await connection.close()
    return list(shards.values())


async def test_two_transactions_add_to_one_group_without_waiting(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    task_id = uuid.UUID((await make_task(client, admin_headers, title="shard"))["id"])
    first, second = await _connections_on_two_shards(app_context)
    try:
        await first.execute(text(_copy(task_id)), {"new_id": uuid.uuid4()})  # held open
        await second.execute(text("SET LOCAL lock_timeout = '5s'"))
        # Without shards this waits for `first` to commit, and fails after the timeout.
        await second.execute(text(_copy(task_id)), {"new_id": uuid.uuid4()})
        await second.commit()
        await first.commit()
    finally:
        await first.close()
        await second.close()

    async with app_context.sessions() as session:
        groups = await session.execute(
            text(
                "SELECT count(DISTINCT shard), sum(tasks) FROM report_task_slots "
                "WHERE priority = (SELECT priority FROM tasks WHERE id = :id)"
            ),
            {"id": task_id},
        )
        shards, tasks = groups.one()
        assert shards >= 2
        assert tasks == 3
        assert await rollups.rebuild(session) == 0  # nothing to fix: they add up
