"""The statement triggers of `tasks` over multi-row statements (PostgreSQL).

A batch writes many tasks with one statement: new ones with one INSERT (`db.insert_rows`),
changed ones with one UPDATE (`tasks.bulk`, the alert intake's re-sends). The report
rollups' trigger and the trigger copying a task's values on its clocks (migrations
0021-0024, 0027) must then count every row of the statement exactly, whichever rows change
what: several tasks moved between teams, states, priorities and tags at once, two tasks
swapping their values, rows changed in columns no trigger keeps, rows not changed at all.
After each statement `opsflow reports rebuild` must find nothing to repair (every rollup
group and every clock's copy of its task's values as recomputed from the rows).

And what they cost: a multi-row INSERT runs the rollups' trigger once, not once per row;
an UPDATE that changes no column the triggers keep writes no rollup and starts no UPDATE
of the clocks (whose own statement triggers would then run).
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.context import AppContext
from opsflow.db import insert_rows, unit_of_work
from opsflow.models.task import Task
from opsflow.reports import rollups
from tests.factories import make_task, make_team

pytestmark = pytest.mark.postgres

# One UPDATE of many tasks at once, each row its own new values (NULL: unchanged).
UPDATE_MANY = text(
    """
    UPDATE tasks AS t SET
        team_id = CASE WHEN v.move_team THEN v.team_id ELSE t.team_id END,
        status = coalesce(v.status, t.status),
        priority = coalesce(v.priority, t.priority),
        customer_tier = coalesce(v.tier, t.customer_tier),
        tags = coalesce(CAST(v.tags AS JSONB), t.tags),
        completed_at = CASE WHEN v.complete THEN t.created_at + interval '42 minutes'
                            ELSE t.completed_at END,
        acknowledged_at = CASE WHEN v.acknowledge THEN t.created_at + interval '3 minutes'
                               ELSE t.acknowledged_at END,
        acknowledged_by = CASE WHEN v.acknowledge THEN t.created_by
                               ELSE t.acknowledged_by END,
        metadata = coalesce(CAST(v.metadata AS JSONB), t.metadata)
    FROM unnest(CAST(:ids AS UUID[]), CAST(:move_team AS BOOLEAN[]), CAST(:team_ids AS UUID[]),
                CAST(:statuses AS TEXT[]), CAST(:priorities AS TEXT[]),
                CAST(:tiers AS TEXT[]), CAST(:tags AS TEXT[]), CAST(:complete AS BOOLEAN[]),
                CAST(:acknowledge AS BOOLEAN[]), CAST(:metadata AS TEXT[]))
        AS v(id, move_team, team_id, status, priority, tier, tags, complete, acknowledge,
             metadata)
    WHERE t.id = v.id
    """
)


def _change(task_id: uuid.UUID, **values: Any) -> dict[str, Any]:
    return {"id": task_id, **values}


async def _update_many(session: AsyncSession, changes: list[dict[str, Any]]) -> None:
    columns = {
        "ids": "id",
        "move_team": "move_team",
        "team_ids": "team_id",
        "statuses": "status",
        "priorities": "priority",
        "tiers": "tier",
        "tags": "tags",
        "complete": "complete",
        "acknowledge": "acknowledge",
        "metadata": "metadata",
    }
    params: dict[str, list[Any]] = {}
    for name, key in columns.items():
        values = [c.get(key) for c in changes]
        if key in ("tags", "metadata"):
            values = [None if v is None else json.dumps(v) for v in values]
        if key in ("move_team", "complete", "acknowledge"):
            values = [bool(v) for v in values]
        params[name] = values
    await session.execute(UPDATE_MANY, params)


async def _exact(ctx: AppContext) -> None:
    """Every rollup group and every clock's copy as recomputed from the rows."""
    async with unit_of_work(ctx.sessions) as session:
        assert await rollups.rebuild(session) == 0


async def _stop_clocks(session: AsyncSession, task_ids: list[uuid.UUID]) -> None:
    """Stop the clocks of these tasks (one statement), so that the clock rollups count them
    and a change of their task's values moves them from one group to another."""
    await session.execute(
        text(
            "UPDATE sla_clocks SET stopped_at = started_at + interval '17 minutes', "
            "working_seconds = 1020, status = 'MET' WHERE task_id = ANY (CAST(:ids AS UUID[]))"
        ),
        {"ids": task_ids},
    )


async def _tasks(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> list[uuid.UUID]:
    made = []
    for n in range(count):
        fields: dict[str, Any] = {
            "task_type": ("INCIDENT", "TASK")[n % 2],
            "priority": ("LOW", "HIGH", "CRITICAL")[n % 3],
            "tags": [["db"], ["db", "network"], []][n % 3],
        }
        made.append(uuid.UUID((await make_task(client, headers, **fields))["id"]))
    return made


async def test_multi_row_statements_keep_the_rollups_and_clock_copies_exact(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    red = uuid.UUID(await make_team(client, admin_headers))
    blue = uuid.UUID(await make_team(client, admin_headers))
    ids = await _tasks(client, admin_headers, 8)
    async with unit_of_work(app_context.sessions) as session:
        await _stop_clocks(session, ids[:6])
    await _exact(app_context)

    # Copies of four tasks under new ids, inserted with one statement.
    async with unit_of_work(app_context.sessions) as session:
        rows = (await session.execute(select(Task.__table__).where(Task.id.in_(ids[:4])))).all()
        copies = [{**row._asdict(), "id": uuid.uuid4()} for row in rows]
        for copy in copies:
            copy["metadata_"] = copy.pop("metadata")
        await insert_rows(session, Task, copies)
    await _exact(app_context)
    copied = [c["id"] for c in copies]

    # One UPDATE: every kind of change at once, and rows that change nothing kept.
    async with unit_of_work(app_context.sessions) as session:
        await _update_many(
            session,
            [
                _change(ids[0], move_team=True, team_id=red),
                _change(ids[1], move_team=True, team_id=blue, priority="MEDIUM"),
                _change(ids[2], status="COMPLETED", complete=True),
                _change(ids[3], tags=["auth"], tier="ENTERPRISE"),
                _change(ids[4], acknowledge=True, move_team=True, team_id=red),
                _change(ids[5], metadata={"note": "nothing a trigger keeps"}),
                _change(ids[6], tags=["auth", "network"]),  # an incident's tags alone
                _change(ids[7]),  # no change at all
                _change(copied[0], move_team=True, team_id=blue, tags=["network"]),
                _change(copied[1], priority="CRITICAL", status="IN_PROGRESS"),
            ],
        )
    await _exact(app_context)

    # Two tasks swap their team, priority, tier and tags in one statement.
    async with unit_of_work(app_context.sessions) as session:
        first = (await session.execute(select(Task.__table__).where(Task.id == ids[0]))).one()
        second = (await session.execute(select(Task.__table__).where(Task.id == ids[1]))).one()
        await _update_many(
            session,
            [
                _change(
                    ids[0],
                    move_team=True,
                    team_id=second.team_id,
                    priority=second.priority,
                    tier=second.customer_tier,
                    tags=second.tags,
                ),
                _change(
                    ids[1],
                    move_team=True,
                    team_id=first.team_id,
                    priority=first.priority,
                    tier=first.customer_tier,
                    tags=first.tags,
                ),
            ],
        )
    await _exact(app_context)

    # Back and forth inside one transaction; then rows with only their metadata changed.
    async with unit_of_work(app_context.sessions) as session:
        await _update_many(session, [_change(i, move_team=True, team_id=blue) for i in ids])
        await _update_many(session, [_change(i, move_team=True, team_id=None) for i in ids[:3]])
        await _update_many(session, [_change(i, metadata={"n": 1}) for i in ids + copied])
    await _exact(app_context)

    # A completed task reopened (its completion leaves the rollups) and the copies deleted.
    async with unit_of_work(app_context.sessions) as session:
        await session.execute(
            text("UPDATE tasks SET status = 'IN_PROGRESS', completed_at = NULL WHERE id = :id"),
            {"id": ids[2]},
        )
        await session.execute(
            text("DELETE FROM tasks WHERE id = ANY (CAST(:ids AS UUID[]))"), {"ids": copied}
        )
    await _exact(app_context)


async def _counts(session: AsyncSession) -> dict[str, int]:
    """What this backend counted so far of the trigger functions' calls and of the rows
    written to the task rollups (read before and after a statement: PostgreSQL may not have
    flushed the counts of the transactions before)."""
    functions = (
        "opsflow_report_rollups",
        "opsflow_task_values_to_clocks",
        "opsflow_report_clock_days",
        "opsflow_report_clock_rollups",
    )
    counts = {}
    for function in functions:
        value = await session.scalar(
            text("SELECT coalesce(pg_stat_get_xact_function_calls(CAST(:f AS regproc)), 0)"),
            {"f": function},
        )
        counts[function] = int(value or 0)
    written = await session.scalar(
        text(
            "SELECT pg_stat_get_xact_tuples_inserted(CAST('report_task_slots' AS regclass))"
            " + pg_stat_get_xact_tuples_updated(CAST('report_task_slots' AS regclass))"
        )
    )
    counts["report_task_slots"] = int(written or 0)
    return counts


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in before}


async def test_a_multi_row_insert_runs_the_rollups_trigger_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    (task_id,) = await _tasks(client, admin_headers, 1)
    async with unit_of_work(app_context.sessions) as session:
        await session.execute(text("SET LOCAL track_functions = 'pl'"))
        row = (await session.execute(select(Task.__table__).where(Task.id == task_id))).one()
        copy = row._asdict()
        copy["metadata_"] = copy.pop("metadata")
        rows = [
            {**copy, "id": uuid.uuid4(), "created_at": row.created_at + timedelta(days=n)}
            for n in range(5)
        ]
        before = await _counts(session)
        await insert_rows(session, Task, rows)
        ran = _delta(before, await _counts(session))
        assert ran["opsflow_report_rollups"] == 1
        assert ran["report_task_slots"] == 5  # a group of each day
    await _exact(app_context)


async def test_an_update_of_columns_no_trigger_keeps_writes_nothing_more(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    ids = await _tasks(client, admin_headers, 3)
    async with unit_of_work(app_context.sessions) as session:
        await _stop_clocks(session, ids)
    async with unit_of_work(app_context.sessions) as session:
        await session.execute(text("SET LOCAL track_functions = 'pl'"))
        slots = await session.scalar(text("SELECT sum(tasks) FROM report_task_slots"))
        before = await _counts(session)
        await _update_many(session, [_change(i, metadata={"count": 2}) for i in ids])
        after = await _counts(session)
        # Both triggers ran; the rollups' wrote nothing, and the copy's started no UPDATE
        # of the clocks (whose own rollup triggers would then have run).
        assert _delta(before, after) == {
            "opsflow_report_rollups": 1,
            "opsflow_task_values_to_clocks": 1,
            "opsflow_report_clock_days": 0,
            "opsflow_report_clock_rollups": 0,
            "report_task_slots": 0,
        }
        assert await session.scalar(text("SELECT sum(tasks) FROM report_task_slots")) == slots
        # A change of a copied value does reach the clocks, and the rollups.
        await _update_many(session, [_change(ids[0], priority="CRITICAL")])
        ran = _delta(after, await _counts(session))
        assert ran["opsflow_report_clock_days"] == 1
        assert ran["report_task_slots"] == 2  # out of its group, into the other
    await _exact(app_context)
