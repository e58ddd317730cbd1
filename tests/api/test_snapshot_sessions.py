"""A snapshot unit of work (the reports' sessions) reads every statement from one snapshot
and cannot write, where a plain read-only one (autocommit on PostgreSQL) sees each commit
as it happens. A second connection commits between the two reads, for real."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from opsflow.db import create_engine, create_sessionmaker, unit_of_work

pytestmark = pytest.mark.postgres


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE snapshot_marks (name TEXT NOT NULL)"))
    yield engine
    async with engine.begin() as connection:
        await connection.execute(text("DROP TABLE snapshot_marks"))
    await engine.dispose()


async def _count(session: AsyncSession) -> int:
    result = await session.execute(text("SELECT count(*) FROM snapshot_marks"))
    return int(result.scalar_one())


async def _commit_one(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO snapshot_marks VALUES ('later')"))


@pytest.mark.parametrize(("snapshot", "second_read"), [(True, 0), (False, 1)])
async def test_a_snapshot_unit_of_work_does_not_see_later_commits(
    engine: AsyncEngine, snapshot: bool, second_read: int
) -> None:
    sessions = create_sessionmaker(engine, read_only=True, snapshot=snapshot)
    async with unit_of_work(sessions) as session:
        assert await _count(session) == 0
        await _commit_one(engine)
        assert await _count(session) == second_read


async def test_a_snapshot_unit_of_work_cannot_write(engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(engine, read_only=True, snapshot=True)
    with pytest.raises(DBAPIError, match="read-only transaction"):
        async with unit_of_work(sessions) as session:
            await session.execute(text("INSERT INTO snapshot_marks VALUES ('refused')"))
