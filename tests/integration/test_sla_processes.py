"""Standalone SLA engine processes side by side, and killed at random, on PostgreSQL.

Thousands of overdue clocks are loaded straight into the database, then real
`opsflow engine` processes drain them. Whatever the interleaving (and
however often a process dies mid-transaction) every threshold of every clock is persisted
exactly once, with one audit row and one outbox event, and the audit chain still verifies.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from opsflow.audit.service import verify
from opsflow.db import create_engine, create_sessionmaker
from tests.processes import Engines

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

THRESHOLDS_PER_CLOCK = 3  # warning, critical, breach
CLOCKS_PER_TASK = 2  # START and RESOLVE
LOAD_USER_ID = uuid.UUID("00000000-0000-0000-0000-00000000e61e")

# Every clock started a day ago: all three thresholds of both clocks are overdue.
LOAD_SQL = (
    """
    INSERT INTO users (id, email, username, full_name, hashed_password, role, is_active,
                       created_at, updated_at)
    VALUES (:user_id, 'sla-load@example.com', 'sla-load', 'SLA load', 'x',
            'admin', true, now(), now())
    """,
    """
    INSERT INTO tasks (id, title, task_type, priority, status, created_by, customer_tier,
                       start_sla_minutes, resolve_sla_minutes, start_sla_source,
                       resolve_sla_source, start_deadline, resolve_deadline, tags, metadata,
                       version, created_at, updated_at)
    SELECT gen_random_uuid(), 'overdue ' || g, 'INCIDENT', 'CRITICAL', 'CREATED',
           :user_id, 'STANDARD', 15, 120, 'request', 'request',
           s.t0 + interval '15 minutes', s.t0 + interval '120 minutes', '[]', '{}', 1,
           s.t0, s.t0
    FROM generate_series(1, CAST(:tasks AS integer)) AS g,
         (SELECT now() - interval '1 day' AS t0) AS s
    """,
    """
    INSERT INTO sla_clocks (id, task_id, kind, status, target_minutes, started_at, deadline,
                            thresholds, pauses, paused_seconds, fired_count, next_fire_at,
                            created_at, updated_at)
    SELECT gen_random_uuid(), t.id, k.kind, 'ACTIVE', k.minutes, t.created_at,
           t.created_at + k.minutes * interval '1 minute', '[75.0, 95.0]', '[]', 0, 0,
           t.created_at + k.minutes * interval '45 seconds', t.created_at, t.created_at
    FROM tasks AS t CROSS JOIN (VALUES ('START', 15), ('RESOLVE', 120)) AS k(kind, minutes)
    """,
)


async def _load_overdue(engine: AsyncEngine, tasks: int) -> int:
    """`tasks` tasks with both clocks overdue on every threshold; returns the clock count."""
    async with engine.begin() as connection:
        for statement in LOAD_SQL:
            await connection.execute(text(statement), {"user_id": LOAD_USER_ID, "tasks": tasks})
        await connection.execute(text("ANALYZE sla_clocks"))
        clocks = int(await connection.scalar(text("SELECT count(*) FROM sla_clocks")) or 0)
    assert clocks == tasks * CLOCKS_PER_TASK
    return clocks


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    assert database_url.startswith("postgresql"), "these tests need PostgreSQL"
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def engines_factory() -> Iterator[list[Engines]]:
    created: list[Engines] = []
    yield created
    for engines in created:
        engines.close()


async def _scalar(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text(sql)) or 0)


async def _remaining(engine: AsyncEngine) -> int:
    return await _scalar(engine, "SELECT count(*) FROM sla_clocks WHERE next_fire_at IS NOT NULL")


async def _assert_everything_fired_once(engine: AsyncEngine, clocks: int, report: str) -> None:
    expected = clocks * THRESHOLDS_PER_CLOCK
    async with engine.connect() as connection:
        total, distinct = (
            await connection.execute(
                text("SELECT count(*), count(DISTINCT (clock_id, event_type)) FROM sla_events")
            )
        ).one()
        unfinished = await connection.scalar(
            text(
                "SELECT count(*) FROM sla_clocks "
                "WHERE next_fire_at IS NOT NULL OR fired_count <> :n OR status <> 'BREACHED'"
            ),
            {"n": THRESHOLDS_PER_CLOCK},
        )
        notifying = await connection.scalar(text("SELECT count(*) FROM sla_events WHERE notify"))
    assert (total, distinct) == (expected, expected), f"events {total}/{distinct}\n{report}"
    assert unfinished == 0, f"{unfinished} clocks not finished\n{report}"
    # Catch-up: all three thresholds recorded, only the breach notifies.
    assert notifying == clocks, report


async def _assert_audit_and_outbox(engine: AsyncEngine, events: int, report: str) -> None:
    async with engine.connect() as connection:
        outbox_total, outbox_distinct = (
            await connection.execute(
                text(
                    "SELECT count(*), count(DISTINCT payload->>'event_id') FROM outbox_events "
                    "WHERE event_type IN ('sla.warning', 'sla.critical', 'sla.breach')"
                )
            )
        ).one()
        without_outbox = await connection.scalar(
            text(
                "SELECT count(*) FROM sla_events AS e WHERE NOT EXISTS ("
                " SELECT 1 FROM outbox_events AS o WHERE o.payload->>'event_id' = e.id::text)"
            )
        )
        audit_total, audit_distinct = (
            await connection.execute(
                text(
                    "SELECT count(*), count(DISTINCT metadata->>'sla_event_id') FROM audit_logs "
                    "WHERE action LIKE 'SLA\\_%'"
                )
            )
        ).one()
    assert (outbox_total, outbox_distinct) == (events, events), report
    assert without_outbox == 0, report
    assert (audit_total, audit_distinct) == (events, events), report
    sessions = create_sessionmaker(engine)
    async with sessions() as session:
        chain = await verify(session, datetime.now(UTC))
    assert chain.valid, f"{chain}\n{report}"
    assert chain.checked >= events


async def _wait_all_exit(engines: Engines, within: float) -> None:
    deadline = time.monotonic() + within
    while engines.running():
        if time.monotonic() > deadline:
            raise AssertionError(f"engines still running after {within} s\n{engines.report()}")
        await asyncio.sleep(0.1)


async def test_four_engine_processes_fire_every_threshold_exactly_once(
    database_url: str, db: AsyncEngine, tmp_path: Path, engines_factory: list[Engines]
) -> None:
    clocks = await _load_overdue(db, tasks=10_000)
    engines = Engines(database_url, tmp_path, batch=500)
    engines_factory.append(engines)
    for _ in range(4):
        engines.start()
    await _wait_all_exit(engines, within=600)
    report = engines.report()

    for engine in engines.all:
        summary = engine.summary()
        assert engine.process.returncode == 0, report
        assert summary is not None, report
        assert summary["reason"] == "idle", report
        assert summary["failed_rounds"] == 0, report
    await _assert_everything_fired_once(db, clocks, report)
    # What the processes say they committed adds up to what is in the table: no pass
    # committed events that another one also counted.
    assert engines.events_reported() == clocks * THRESHOLDS_PER_CLOCK, report
    workers = sum(1 for e in engines.all if e.passes())
    assert workers >= 2, f"only {workers} process(es) did any work\n{report}"
    await _assert_audit_and_outbox(db, clocks * THRESHOLDS_PER_CLOCK, report)
    # Each pass reports the clock reading its events carry (what lateness is measured from).
    started = {datetime.fromisoformat(p["started_at"]) for e in engines.all for p in e.passes()}
    async with db.connect() as connection:
        triggered = set(
            (await connection.execute(text("SELECT DISTINCT triggered_at FROM sla_events")))
            .scalars()
            .all()
        )
    assert triggered <= started, f"{len(triggered - started)} readings unreported\n{report}"


async def test_engines_killed_mid_run_lose_and_duplicate_nothing(
    database_url: str, db: AsyncEngine, tmp_path: Path, engines_factory: list[Engines]
) -> None:
    clocks = await _load_overdue(db, tasks=5_000)
    # Smaller batches than the default: shorter transactions, so work is committed between
    # kills while a draining process still spends nearly all its time inside one.
    engines = Engines(database_url, tmp_path, batch=200)
    engines_factory.append(engines)
    pool, min_kills, max_kills = 4, 5, 10
    rng = random.Random(20260127)
    kills = 0
    for _ in range(pool):
        engines.start()
    deadline = time.monotonic() + 600
    next_kill = time.monotonic() + rng.uniform(0.3, 0.5)
    while True:
        if time.monotonic() > deadline:
            raise AssertionError(f"work not done in 600 s ({kills} kills)\n{engines.report()}")
        remaining = await _remaining(db)
        running = engines.running()
        if remaining == 0 and not running:
            break
        if remaining and time.monotonic() >= next_kill and kills < max_kills:
            # Kill a process that is draining (it has committed a pass, and runs its
            # passes back to back, so it is almost always inside a transaction).
            busy = [e for e in running if e.passes()]
            if busy and rng.choice(busy).sigkill():
                kills += 1
                next_kill = time.monotonic() + rng.uniform(0.3, 0.5)
        # Replace the dead; an idle exit while others held the last rows is replaced too,
        # as long as work remains.
        if remaining:
            for _ in range(pool - len(engines.running())):
                engines.start()
        await asyncio.sleep(0.05)
    for engine in engines.all:
        engine.finish()
    report = engines.report()

    # A process signalled in the instant it exited on its own is not counted as killed.
    landed = sum(1 for e in engines.all if e.process.returncode == -signal.SIGKILL)
    assert landed >= min_kills, f"only {landed} kills landed before the work was done\n{report}"
    for engine in engines.all:
        if engine.process.returncode == -signal.SIGKILL:
            continue
        summary = engine.summary()
        assert engine.process.returncode == 0, report
        assert summary is not None, report
        assert summary["failed_rounds"] == 0, report
    events = clocks * THRESHOLDS_PER_CLOCK
    await _assert_everything_fired_once(db, clocks, report)
    # Passes reported as committed never exceed what is there (a killed process may have
    # committed a last pass without living to report it).
    assert engines.events_reported() <= events, report
    await _assert_audit_and_outbox(db, events, report)
