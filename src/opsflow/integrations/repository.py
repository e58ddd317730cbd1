"""Queries for alert integrations: integrations, their event log, their incidents, key locks."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow import db
from opsflow.kit.pagination import PageParams
from opsflow.models.integration import AlertFlap, Integration, IntegrationEvent
from opsflow.models.task import Task


async def named(session: AsyncSession, name: str) -> Integration | None:
    return await session.scalar(select(Integration).where(Integration.name == name))


async def by_key_hash(session: AsyncSession, key_hash: str) -> Integration | None:
    return await session.scalar(select(Integration).where(Integration.key_hash == key_hash))


async def page_of(session: AsyncSession, page: PageParams) -> tuple[list[Integration], int]:
    total = int(await session.scalar(select(func.count()).select_from(Integration)) or 0)
    rows = await session.scalars(
        select(Integration).order_by(Integration.name).offset(page.offset).limit(page.page_size)
    )
    return list(rows), total


async def events_of(
    session: AsyncSession, integration_id: uuid.UUID, page: PageParams
) -> tuple[list[IntegrationEvent], int]:
    """An integration's event log, newest first, one page."""
    where = IntegrationEvent.integration_id == integration_id
    total = int(
        await session.scalar(select(func.count()).select_from(IntegrationEvent).where(where)) or 0
    )
    rows = await session.scalars(
        select(IntegrationEvent)
        .where(where)
        .order_by(IntegrationEvent.received_at.desc(), IntegrationEvent.id)
        .offset(page.offset)
        .limit(page.page_size)
    )
    return list(rows), total


async def prune_events(session: AsyncSession, integration_id: uuid.UUID, cutoff: datetime) -> None:
    await session.execute(
        delete(IntegrationEvent).where(
            IntegrationEvent.integration_id == integration_id,
            IntegrationEvent.received_at < cutoff,
        )
    )


async def by_key_hashes(session: AsyncSession, key_hashes: set[str]) -> dict[str, Integration]:
    rows = await session.scalars(select(Integration).where(Integration.key_hash.in_(key_hashes)))
    return {row.key_hash: row for row in rows}


async def by_ids(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, Integration]:
    rows = await session.scalars(select(Integration).where(Integration.id.in_(ids)))
    return {row.id: row for row in rows}


async def lock_all(session: AsyncSession, lock_ids: list[int]) -> None:
    """Transaction-scoped advisory locks (PostgreSQL), taken in the given order, with one
    statement."""
    if lock_ids:
        await session.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(k)) FROM "
                "(SELECT k FROM unnest(CAST(:ids AS BIGINT[])) AS k ORDER BY k) AS s"
            ),
            {"ids": lock_ids},
        )


CHUNK = 500


# PostgreSQL: each key looked up alone, in the index its lookup needs, whatever the
# statistics say. With ``dedup_key IN (…)`` the planner may (and, with no statistics yet or
# a plan prepared while the table was small, did) read every open incident of the source
# through the first column of the index and filter the keys: a cost per batch growing with
# the number of open incidents. A LATERAL subquery with LIMIT or OFFSET is neither pulled up
# into a join nor given the outer conditions, so each key is one probe:
# - the open incident: of (source, key) in the unique index of the open incidents (at most
#   one row, so LIMIT 1 changes nothing);
# - any incident of the key: of the key in the index on dedup_key, the source and deletion
#   checked on the few rows found.
_TASK_COLUMNS = cast(Table, Task.__table__).columns
# The columns named in the model's order: `.columns` matches them by position.
OPEN_BY_KEYS = text(
    f"SELECT {', '.join(f't.{c.name}' for c in _TASK_COLUMNS)} "  # noqa: S608
    "FROM unnest(CAST(:keys AS VARCHAR[])) AS k(key) "
    "CROSS JOIN LATERAL (SELECT * FROM tasks WHERE tasks.source = :source "
    "AND tasks.dedup_key = k.key AND tasks.completed_at IS NULL "
    "AND tasks.deleted_at IS NULL LIMIT 1) AS t"
).columns(*_TASK_COLUMNS)
KNOWN_KEYS = text(
    "SELECT DISTINCT m.dedup_key FROM unnest(CAST(:keys AS VARCHAR[])) AS k(key) "
    "CROSS JOIN LATERAL (SELECT tasks.dedup_key, tasks.source, tasks.deleted_at FROM tasks "
    "WHERE tasks.dedup_key = k.key OFFSET 0) AS m "
    "WHERE m.source = :source AND m.deleted_at IS NULL"
)


def _by_source(refs: set[tuple[str, str]]) -> dict[str, list[str]]:
    by_source: dict[str, list[str]] = {}
    for source, key in refs:
        by_source.setdefault(source, []).append(key)
    return by_source


async def open_incidents(
    session: AsyncSession, refs: set[tuple[str, str]]
) -> dict[tuple[str, str], Task]:
    """The open incident of each (source, dedup key), where there is one."""
    postgres = session.get_bind().dialect.name == "postgresql"
    found: dict[tuple[str, str], Task] = {}
    for source, keys in _by_source(refs).items():
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            if postgres:
                rows = await session.scalars(
                    select(Task).from_statement(OPEN_BY_KEYS),
                    {"keys": chunk, "source": source},
                )
            else:
                rows = await session.scalars(
                    select(Task).where(
                        Task.source == source,
                        Task.dedup_key.in_(chunk),
                        Task.completed_at.is_(None),
                        Task.deleted_at.is_(None),
                    )
                )
            for row in rows:
                found[(source, row.dedup_key or "")] = row
    return found


async def keys_with_incidents(
    session: AsyncSession, refs: set[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which of these (source, dedup key) had an incident, open or not."""
    postgres = session.get_bind().dialect.name == "postgresql"
    found: set[tuple[str, str]] = set()
    for source, keys in _by_source(refs).items():
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            if postgres:
                rows = await session.scalars(KNOWN_KEYS, {"keys": chunk, "source": source})
            else:
                rows = await session.scalars(
                    select(Task.dedup_key)
                    .where(
                        Task.source == source,
                        Task.dedup_key.in_(chunk),
                        Task.deleted_at.is_(None),
                    )
                    .distinct()
                )
            found.update((source, key) for key in rows if key is not None)
    return found


# One statement for all the rows (their ids and values as two arrays). An executemany
# would run the statement once per row on the server, and with it, once per row, the
# statement-level triggers of `tasks` (the report rollups, the values copied to the
# clocks: migrations 0021-0024), each a scan of its transition tables.
_SET_METADATA = text(
    "UPDATE tasks SET metadata = CAST(v.value AS JSONB) "
    "FROM unnest(CAST(:ids AS UUID[]), CAST(:values AS TEXT[])) AS v(id, value) "
    "WHERE tasks.id = v.id"
)


async def set_metadata(session: AsyncSession, values: dict[uuid.UUID, dict[str, Any]]) -> None:
    """Replace the `metadata` of these tasks, nothing else (one statement, many rows)."""
    if not values:
        return
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            _SET_METADATA,
            {"ids": list(values), "values": [json.dumps(v) for v in values.values()]},
        )
        return
    table = cast(Table, Task.__table__)
    statement = (
        update(table)
        .where(table.c.id == bindparam("task_id"))
        .values(metadata=bindparam("new_metadata"))
    )
    await session.execute(
        statement,
        [{"task_id": task_id, "new_metadata": value} for task_id, value in values.items()],
    )


async def add_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """The event log rows of a batch, with one statement (`db.insert_rows`)."""
    await db.insert_rows(session, IntegrationEvent, rows)


async def latest_incident(
    session: AsyncSession, source: str, dedup_key: str, *, open_only: bool
) -> Task | None:
    """The newest live incident of this source and dedup key (only an open one if asked)."""
    query = select(Task).where(
        Task.source == source, Task.dedup_key == dedup_key, Task.deleted_at.is_(None)
    )
    if open_only:
        query = query.where(Task.completed_at.is_(None))
    return await session.scalar(query.order_by(Task.created_at.desc()).limit(1))


async def claim_flaps(session: AsyncSession, now: datetime, limit: int) -> list[AlertFlap]:
    """Lock up to `limit` flapping incidents due for a check (``FOR UPDATE SKIP LOCKED`` on
    PostgreSQL: passes side by side take different ones; SQLite serialises writers)."""
    return await db.claim_due(session, AlertFlap, AlertFlap.settle_at, now, limit)


async def next_flap(session: AsyncSession) -> datetime | None:
    value: datetime | None = await session.scalar(select(func.min(AlertFlap.settle_at)))
    return value
