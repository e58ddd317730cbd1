"""The connection pool against a real PostgreSQL server that restarts under it.

A connection is pinged before use only after it sat idle (opsflow.db.IDLE_PING_SECONDS);
these tests set that threshold to zero instead of waiting, and use a throw-away cluster so
the shared server is never restarted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from opsflow import db
from tests.processes import PostgresCluster, postgres_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    with postgres_cluster() as server:
        yield server


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("select pg_backend_pid()"))).scalar_one())


async def test_an_idle_connection_is_replaced_after_a_restart(
    cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.create_engine(cluster.url(), pool_size=1, max_overflow=0)
    try:
        before = await _backend_pid(engine)
        assert await _backend_pid(engine) == before  # the pooled connection is reused
        cluster.restart()
        monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)
        # The ping finds the old connection dead; the pool hands out a new one and the
        # statement succeeds without the caller seeing an error.
        after = await _backend_pid(engine)
        assert after != before
    finally:
        await engine.dispose()


async def test_a_busy_connection_that_died_fails_once_then_the_pool_reconnects(
    cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection used moments ago is not pinged: if the server restarted meanwhile, that
    one statement fails with a disconnect (the API answers 503), and the error invalidates
    the pool so the next checkout opens a fresh connection."""
    engine = db.create_engine(cluster.url(), pool_size=1, max_overflow=0)
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 3600.0)
    try:
        before = await _backend_pid(engine)
        cluster.restart()
        with pytest.raises(DBAPIError) as failure:
            await _backend_pid(engine)
        assert failure.value.connection_invalidated
        assert await _backend_pid(engine) != before
    finally:
        await engine.dispose()
