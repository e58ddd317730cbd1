"""On SQLite the write units of work of one process take turns on an asyncio lock, first
come first served, instead of polling SQLite's busy handler; reads never queue, and a unit
of work opened inside a writing one does not wait for itself.

A real SQLite file; nothing waits on a timer: each step yields to the event loop until
the others have run as far as they can.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from opsflow.db import create_engine, create_sessionmaker, unit_of_work

# A failure bound: a unit of work that deadlocked would wait this long for its turn.
LONG_TURN_MS = 600_000


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(
        f"sqlite+aiosqlite:///{tmp_path}/writers.db", sqlite_busy_timeout_ms=LONG_TURN_MS
    )
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE marks (name TEXT NOT NULL)"))
    yield engine
    await engine.dispose()


async def settle() -> None:
    """Let every other task run until it blocks (a few hundred loop turns; the aiosqlite
    threads answer in between)."""
    for _ in range(200):
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)


async def marks(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list((await connection.execute(text("SELECT name FROM marks"))).scalars())


async def test_writers_wait_their_turn_in_arrival_order(engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(engine)
    release = asyncio.Event()
    entered: list[str] = []

    async def first() -> None:
        async with unit_of_work(sessions) as session:
            entered.append("first")
            await session.execute(text("INSERT INTO marks VALUES ('first')"))
            await release.wait()

    async def writer(name: str) -> None:
        async with unit_of_work(sessions) as session:
            entered.append(name)
            await session.execute(text(f"INSERT INTO marks VALUES ('{name}')"))

    async with asyncio.timeout(60):
        holder = asyncio.create_task(first())
        await settle()
        waiting = []
        for name in ("second", "third", "fourth"):
            waiting.append(asyncio.create_task(writer(name)))
            await settle()
        # Without the queue each would have entered its block (the session begins lazily)
        # and be polling SQLite's busy handler at its first statement.
        assert entered == ["first"]
        release.set()
        await asyncio.gather(holder, *waiting)
    assert entered == ["first", "second", "third", "fourth"]
    assert sorted(await marks(engine)) == ["first", "fourth", "second", "third"]


async def test_reads_do_not_queue_behind_a_writer(engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(engine)
    reads = create_sessionmaker(engine, read_only=True)
    release = asyncio.Event()

    async def holder() -> None:
        async with unit_of_work(sessions) as session:
            await session.execute(text("INSERT INTO marks VALUES ('held')"))
            await release.wait()

    async with asyncio.timeout(60):
        task = asyncio.create_task(holder())
        await settle()
        async with unit_of_work(reads) as session:
            seen = (await session.execute(text("SELECT count(*) FROM marks"))).scalar_one()
        assert seen == 0  # the writer has not committed; the read did not wait for it
        release.set()
        await task
    assert await marks(engine) == ["held"]


async def test_a_unit_of_work_inside_a_writing_one_does_not_wait_for_itself(
    engine: AsyncEngine,
) -> None:
    sessions = create_sessionmaker(engine)
    async with asyncio.timeout(60):
        async with unit_of_work(sessions) as outer:
            async with unit_of_work(sessions) as inner:
                # Only reads: a second writer in the same process would wait on SQLite's
                # lock held by the outer transaction, as it always has.
                await inner.execute(text("SELECT count(*) FROM marks"))
            await outer.execute(text("INSERT INTO marks VALUES ('outer')"))
    assert await marks(engine) == ["outer"]


async def test_a_failed_unit_of_work_gives_its_turn_back(engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(engine)

    async def failing() -> None:
        async with unit_of_work(sessions) as session:
            await session.execute(text("INSERT INTO marks VALUES ('rolled back')"))
            raise RuntimeError("the work failed")

    with pytest.raises(RuntimeError):
        await failing()
    async with asyncio.timeout(60), unit_of_work(sessions) as session:
        await session.execute(text("INSERT INTO marks VALUES ('next')"))
    assert await marks(engine) == ["next"]
