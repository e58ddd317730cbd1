"""Read-only units of work (the safe HTTP methods) on PostgreSQL run in autocommit.

Under READ COMMITTED a transaction gives each statement its own snapshot anyway, so the
BEGIN and COMMIT round trips are dropped; a write in such a unit of work would then not be
atomic, so it is refused.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from opsflow.context import AppContext
from opsflow.db import unit_of_work

pytestmark = pytest.mark.postgres


async def test_each_statement_of_a_read_unit_is_its_own_transaction(
    app_context: AppContext,
) -> None:
    if app_context.engine.dialect.name != "postgresql":
        pytest.skip("SQLite read transactions keep one snapshot")
    probe = text("select txid_current()")
    async with unit_of_work(app_context.read_sessions) as session:
        alone = {await session.scalar(probe), await session.scalar(probe)}
    async with unit_of_work(app_context.sessions) as session:
        together = {await session.scalar(probe), await session.scalar(probe)}
    assert len(alone) == 2
    assert len(together) == 1


async def test_a_read_unit_refuses_to_write(app_context: AppContext) -> None:
    if app_context.engine.dialect.name != "postgresql":
        pytest.skip("SQLite read units are transactions")
    with pytest.raises(RuntimeError, match="read-only unit of work tried to write"):
        async with unit_of_work(app_context.read_sessions) as session:
            await session.execute(text("update users set full_name = full_name"))
