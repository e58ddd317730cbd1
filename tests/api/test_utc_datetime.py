"""UTCDateTime reads back aware UTC instants on either database, whatever the column's own
type: PostgreSQL `timestamptz` (asyncpg decodes it to UTC itself and the type adds no
per-value work), a `timestamp` without a time zone, and SQLite's naive text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from opsflow.db import create_engine
from opsflow.kit.types import UTCDateTime

INSTANT = datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)


async def test_instants_come_back_aware_and_in_utc(database_url: str) -> None:
    engine = create_engine(database_url)
    postgres = engine.dialect.name == "postgresql"
    try:
        async with engine.connect() as connection:
            if postgres:
                # The session's zone must not leak into what the application sees.
                await connection.execute(text("SET TIME ZONE 'Asia/Kolkata'"))
                query = text(
                    "SELECT CAST(:at AS timestamptz) AS aware, "
                    "CAST(:naive AS timestamp) AS naive, "
                    "CAST(NULL AS timestamptz) AS missing"
                ).bindparams(at=INSTANT, naive=INSTANT.replace(tzinfo=None))
            else:
                query = text("SELECT :naive AS aware, :naive AS naive, NULL AS missing").bindparams(
                    naive="2026-03-01 12:30:15.250000"
                )
            typed = query.columns(aware=UTCDateTime(), naive=UTCDateTime(), missing=UTCDateTime())
            row = (await connection.execute(typed)).one()
    finally:
        await engine.dispose()
    assert row.aware == INSTANT
    assert row.aware.utcoffset() == timedelta(0)
    assert row.naive == INSTANT
    assert row.naive.tzinfo is UTC
    assert row.missing is None
