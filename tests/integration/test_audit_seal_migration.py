"""Migration 0025 (audit rows sealed at commit) goes up, down and up again on both
databases with a chain in the table: on PostgreSQL the chain's columns accept NULL (until the
seal) and are NOT NULL again after the downgrade; the chain verifies before and after."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from opsflow import schema
from opsflow.audit import service
from opsflow.audit import writer as audit
from opsflow.auth.principal import Principal
from opsflow.db import create_engine, create_sessionmaker, unit_of_work
from tests.conftest import PG_URL, T0, _async_url, _pg_admin


async def _write_and_verify(url: str, rows: int) -> int:
    engine = create_engine(url)
    try:
        sessions = create_sessionmaker(engine)
        for index in range(rows):
            async with unit_of_work(sessions) as session:
                audit.record(
                    session,
                    Principal.system("migration-test"),
                    entity_type="task",
                    entity_id=uuid.uuid4(),
                    action="TASK_UPDATED",
                    now=T0,
                    metadata={"index": index},
                )
        async with sessions() as session:
            verification = await service.verify(session, T0)
        assert verification.valid, verification
        return verification.checked
    finally:
        await engine.dispose()


async def _nullable(url: str) -> dict[str, bool]:
    """Which of the chain's columns (and the content awaiting its seal) accept NULL."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda sync: inspect(sync).get_columns("audit_logs")
            )
    finally:
        await engine.dispose()
    wanted = {"seq", "prev_hash", "hash", "pending_content"}
    return {column["name"]: column["nullable"] for column in columns if column["name"] in wanted}


def _round_trip(url: str, *, sealed_by_database: bool) -> None:
    config = schema.alembic_config(url)
    command.upgrade(config, "head")
    assert asyncio.run(_write_and_verify(url, 2)) == 2
    relaxed = sealed_by_database
    assert asyncio.run(_nullable(url)) == {
        "seq": relaxed,
        "prev_hash": relaxed,
        "hash": relaxed,
        "pending_content": True,
    }
    command.downgrade(config, "0024")
    assert asyncio.run(_nullable(url)) == {"seq": False, "prev_hash": False, "hash": False}
    command.upgrade(config, "head")
    assert asyncio.run(_write_and_verify(url, 1)) == 3


def test_round_trip_on_sqlite(tmp_path: Path) -> None:
    _round_trip(f"sqlite+aiosqlite:///{tmp_path / 'round_trip.db'}", sealed_by_database=False)


@pytest.mark.postgres
def test_round_trip_on_postgresql() -> None:
    assert PG_URL
    admin_url = make_url(_async_url(PG_URL)).render_as_string(hide_password=False)
    name = f"opsflow_seal_{uuid.uuid4().hex[:10]}"
    _pg_admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        _round_trip(url, sealed_by_database=True)
    finally:
        _pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
