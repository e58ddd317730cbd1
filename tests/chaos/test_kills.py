"""API processes and the engine process SIGKILLed mid-load (a throw-away cluster).

Two `opsflow serve --no-engine` instances take a write load (three clients, round robin);
each instance is SIGKILLed once in the middle of it and started again on its port. One
`opsflow engine --passes all` process (SLA, relay, escalation, delivery: what a worker
runs) fires the SLA thresholds of the tasks and e-mails the assignee through a real SMTP
sink; it is SIGKILLed three times while it has work in hand and started again.

Deadlines are not waited for: the START clocks are moved a day into the past in the
database (every threshold due at once), as the engine-process tests do.

Afterwards: every acknowledged create is there (with clocks, audit row, outbox event);
every START clock fired each threshold exactly once (one `sla_events` row and one outbox
event per clock and type); every notification is SENT, one row per event and recipient,
and reached the sink. The same message can reach the sink twice only when the engine was
killed after sending it and before recording it (the next engine resends it, with the same
Message-ID and idempotency key, once the 2 s lease runs out): those resends are counted,
printed, and bounded by kills x the delivery batch.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.chaos.conftest import (
    READY_SECONDS,
    Database,
    Process,
    RestartableSmtp,
    Serve,
    WriteLoad,
    half_writes,
    login,
    missing_writes,
    process_env,
    processes,
)
from tests.factories import make_user

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.postgres]

ENGINE_KILLS = 3
DELIVERY_BATCH = 50  # the delivery pass's default batch: the most one kill can leave unrecorded
# The START clocks of (at most) `n` tasks whose clocks are still ahead moved a day into
# the past: every threshold due at once, no wall-clock wait.
OVERDUE_SQL = """
WITH moved AS (
    UPDATE sla_clocks SET started_at = started_at - interval '1 day',
        deadline = deadline - interval '1 day', next_fire_at = next_fire_at - interval '1 day'
    WHERE id IN (SELECT id FROM sla_clocks WHERE kind = 'START'
                 AND next_fire_at > now() - interval '12 hours' ORDER BY id LIMIT :n)
    RETURNING task_id
)
UPDATE tasks SET start_deadline = start_deadline - interval '1 day'
WHERE id IN (SELECT task_id FROM moved)
"""
THRESHOLDS = {"START_WARNING", "START_CRITICAL", "START_BREACH"}


async def _overdue(db: AsyncEngine, n: int = 1_000_000) -> None:
    async with db.begin() as connection:
        await connection.execute(text(OVERDUE_SQL), {"n": n})


async def _progress(db: AsyncEngine) -> int:
    return await _scalar(
        db,
        "SELECT (SELECT count(*) FROM sla_events) + "
        "(SELECT count(*) FROM notifications WHERE status = 'SENT')",
    )


async def _backlog(db: AsyncEngine) -> dict[str, int]:
    queries = {
        "clocks": "SELECT count(*) FROM sla_clocks WHERE kind = 'START' "
        "AND next_fire_at IS NOT NULL",
        "outbox": "SELECT count(*) FROM outbox_events WHERE published_at IS NULL",
        "notifications": "SELECT count(*) FROM notifications WHERE status IN ('PENDING', 'RETRY')",
    }
    async with db.connect() as connection:
        return {k: int(await connection.scalar(text(q)) or 0) for k, q in queries.items()}


async def _scalar(db: AsyncEngine, sql: str) -> int:
    async with db.connect() as connection:
        return int(await connection.scalar(text(sql)) or 0)


async def test_killed_api_and_engine_lose_nothing_and_fire_once(
    chaos_db: Database, smtp_sink: RestartableSmtp, tmp_path: Path
) -> None:
    db = chaos_db.engine
    with processes() as started:
        apis = [Serve(tmp_path, f"serve-{n}", chaos_db.url) for n in (1, 2)]
        engine = Process(
            tmp_path,
            "engine",
            ["engine", "--passes", "all", "--interval", "0.1"],
            process_env(
                chaos_db.url,
                OPSFLOW_SMTP_HOST="127.0.0.1",
                OPSFLOW_SMTP_PORT=str(smtp_sink.port),
                OPSFLOW_SMTP_STARTTLS="false",
                OPSFLOW_NOTIFICATION_LEASE_SECONDS="2",
                OPSFLOW_NOTIFICATION_RETRY_BASE_SECONDS="0.2",
            ),
        )
        started.extend([*apis, engine])
        for api in apis:
            api.start()
        engine.start()
        admin = await login(apis[0].base)
        async with httpx.AsyncClient(base_url=f"{apis[0].base}/api/v1", timeout=30) as client:
            assignee = await make_user(client, admin, "support")
        body = {
            "task_type": "INCIDENT",
            "priority": "CRITICAL",
            "start_sla_minutes": 15,
            "resolve_sla_minutes": 120,
            "assigned_to": assignee.id,
        }
        load = WriteLoad([a.base for a in apis], admin, clients=2, think=0.2, body=body)
        phases = [time.monotonic()]
        async with load.running():
            for api in apis:
                await load.until_acknowledged(10)
                api.sigkill()
                await load.until_acknowledged(5)  # on the other instance
                await asyncio.to_thread(api.start)
            await load.until_acknowledged(5)
        phases.append(time.monotonic())
        # Each kill lands while the engine has work in hand: a share of the tasks made
        # overdue, the engine seen making progress on it, then SIGKILL.
        busy_at_kill = []
        for _ in range(ENGINE_KILLS):
            before = await _progress(db)
            await _overdue(db, len(load.acknowledged()) // ENGINE_KILLS + 1)
            async with asyncio.timeout(READY_SECONDS):
                while await _progress(db) == before:  # noqa: ASYNC110 (another process)
                    await asyncio.sleep(0.02)  # polling for the engine to take the work
            engine.sigkill()
            busy_at_kill.append(sum((await _backlog(db)).values()))
            engine.start()
        await _overdue(db)
        phases.append(time.monotonic())
        async with asyncio.timeout(READY_SECONDS * 2):
            while any((await _backlog(db)).values()):
                assert engine.alive(), engine.tail()
                await asyncio.sleep(0.1)  # polling for the engine to drain its backlog
        assert all(api.alive() for api in apis)
        phases.append(time.monotonic())

    acknowledged = load.acknowledged()
    missing = await missing_writes(db, acknowledged)
    lost = sorted({t for values in missing.values() for t in values})
    half = await half_writes(db)
    async with db.connect() as connection:
        events, distinct_events = (
            await connection.execute(
                text(
                    "SELECT count(*), count(DISTINCT (clock_id, event_type)) FROM sla_events "
                    "WHERE clock_id IS NOT NULL"
                )
            )
        ).one()
        escalations, distinct_escalations = (
            await connection.execute(
                text(
                    "SELECT count(*), count(DISTINCT (task_id, sla_type, escalation_level)) "
                    "FROM sla_events WHERE clock_id IS NULL"
                )
            )
        ).one()
        per_clock = Counter(
            tuple(sorted(row[0]))
            for row in await connection.execute(
                text(
                    "SELECT array_agg(e.event_type) FROM sla_clocks c "
                    "LEFT JOIN sla_events e ON e.clock_id = c.id "
                    "WHERE c.kind = 'START' GROUP BY c.id"
                )
            )
        )
        sla_outbox, distinct_sla_outbox = (
            await connection.execute(
                text(
                    "SELECT count(*), count(DISTINCT (aggregate_id, event_type, "
                    "payload->>'event_type')) FROM outbox_events WHERE event_type LIKE 'sla.%'"
                )
            )
        ).one()
        notifications = {
            str(row[0]): (row[1], str(row[2]), row[3])
            for row in await connection.execute(
                text("SELECT id, status, source_event_id, address FROM notifications")
            )
        }
    tasks = await _scalar(db, "SELECT count(*) FROM tasks")
    received = Counter(str(r.message["X-OpsFlow-Notification-Id"]) for r in smtp_sink.sink.received)
    resent = sum(n - 1 for n in received.values())
    statuses = Counter(status for status, _, _ in notifications.values())
    per_event = Counter((source, address) for _, source, address in notifications.values())
    kills = engine.kills
    print(f"\nbacklog (clocks + outbox + notifications) at each engine kill: {busy_at_kill}")
    print(
        f"\nkills: API {sum(a.kills for a in apis)}, engine {kills}; creates "
        f"{len(load.outcomes)} sent, {len(acknowledged)} acknowledged, "
        f"{len(acknowledged) - len(lost)} found, {len(lost)} lost, {half} half-written, "
        f"answers {load.statuses()}; {tasks} tasks, {events} SLA events "
        f"({events - distinct_events} duplicates), {escalations} escalations "
        f"({escalations - distinct_escalations} duplicates), {sla_outbox} SLA outbox events "
        f"({sla_outbox - distinct_sla_outbox} duplicates); {len(notifications)} notifications "
        f"{dict(statuses)}, {len(smtp_sink.sink.received)} messages received, "
        f"{resent} resent after a kill (bound {kills * DELIVERY_BATCH}); seconds: load "
        f"{phases[1] - phases[0]:.1f}, engine kills {phases[2] - phases[1]:.1f}, drain "
        f"{phases[3] - phases[2]:.1f}"
    )
    assert all(busy_at_kill), busy_at_kill  # every kill interrupted work in hand
    assert not lost, missing
    assert half == 0
    assert events == distinct_events
    assert escalations == distinct_escalations
    assert set(per_clock) == {tuple(sorted(THRESHOLDS))}, per_clock  # each fired exactly once
    assert sum(per_clock.values()) == tasks
    assert sla_outbox == distinct_sla_outbox
    assert statuses == Counter({"SENT": len(notifications)})
    assert max(per_event.values()) == 1  # one notification per event and recipient
    assert set(received) == set(notifications)  # every notification reached the sink
    assert resent <= kills * DELIVERY_BATCH
