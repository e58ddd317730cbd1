"""The SMTP server down for a while (the sink stopped, then started again on its port).

Tasks assigned to a user are created through a real `opsflow serve` while the mail server
is down; one `opsflow engine --passes all` process relays their events and tries to e-mail
the assignee. The attempts fail (connection refused): each failure schedules a retry, and
after five in a row the destination's circuit breaker opens and holds the rest without
spending their attempts. Then the server comes back.

The breaker's cooldown (60 s, in the engine process's memory) is not waited for: the engine
is restarted (a fresh breaker) and the held rows are made due in the database, which is
what the cooldown running out amounts to.

Afterwards every notification is SENT or DEAD (none left pending, none lost): each SENT one
reached the sink exactly once, no DEAD one did.
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
    login,
    process_env,
    processes,
)
from tests.factories import make_task, make_user

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.postgres]

TASKS = 30


async def _rows(db: AsyncEngine) -> list[tuple[str, str, list[dict[str, object]]]]:
    async with db.connect() as connection:
        result = await connection.execute(
            text("SELECT id, status, attempt_log FROM notifications WHERE channel = 'EMAIL'")
        )
        return [(str(r[0]), str(r[1]), list(r[2])) for r in result]


async def test_mail_sent_or_dead_after_an_smtp_outage(
    chaos_db: Database, smtp_sink: RestartableSmtp, tmp_path: Path
) -> None:
    db = chaos_db.engine
    smtp_sink.stop()
    with processes() as started:
        api = Serve(tmp_path, "serve", chaos_db.url)
        engine = Process(
            tmp_path,
            "engine",
            ["engine", "--passes", "all", "--interval", "0.1"],
            process_env(
                chaos_db.url,
                OPSFLOW_SMTP_HOST="127.0.0.1",
                OPSFLOW_SMTP_PORT=str(smtp_sink.port),
                OPSFLOW_SMTP_STARTTLS="false",
                OPSFLOW_NOTIFICATION_RETRY_BASE_SECONDS="0.2",
            ),
        )
        started.extend([api, engine])
        api.start()
        engine.start()
        admin = await login(api.base)
        async with httpx.AsyncClient(base_url=f"{api.base}/api/v1", timeout=30) as client:
            assignee = await make_user(client, admin, "support")
            for _ in range(TASKS):
                await make_task(client, admin, assigned_to=assignee.id)

        # The outage is felt: every notification tried (failed or held) at least once.
        async with asyncio.timeout(READY_SECONDS):
            while True:
                rows = await _rows(db)
                if len(rows) == TASKS and all(log for _, _, log in rows):
                    break
                await asyncio.sleep(0.1)  # polling the engine's progress
        outage = await _rows(db)
        failed = sum(1 for _, _, log in outage for a in log if not a.get("held"))
        held = sum(1 for _, _, log in outage for a in log if a.get("held"))

        smtp_sink.start()
        back = time.monotonic()
        engine.close()  # its breaker is open for 60 s: a fresh process stands in for that
        async with db.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE notifications SET scheduled_at = now() - interval '1 second' "
                    "WHERE status IN ('PENDING', 'RETRY')"
                )
            )
        engine.start()
        async with asyncio.timeout(READY_SECONDS):
            while any(s in ("PENDING", "RETRY") for _, s, _ in await _rows(db)):  # noqa: ASYNC110
                await asyncio.sleep(0.1)  # polling the engine (another process)
        delivered_in = time.monotonic() - back

    rows = await _rows(db)
    statuses = Counter(status for _, status, _ in rows)
    received = Counter(str(r.message["X-OpsFlow-Notification-Id"]) for r in smtp_sink.sink.received)
    sent = {row_id for row_id, status, _ in rows if status == "SENT"}
    dead = {row_id for row_id, status, _ in rows if status == "DEAD"}
    print(
        f"\nSMTP outage: {len(rows)} notifications, {failed} failed attempts and {held} held "
        f"by the open breaker while down; afterwards {dict(statuses)}, "
        f"{len(smtp_sink.sink.received)} messages received "
        f"({sum(n - 1 for n in received.values())} duplicates), all settled "
        f"{delivered_in:.1f} s after the server was back (engine restart included)"
    )
    assert len(rows) == TASKS
    assert failed >= 1
    assert set(statuses) <= {"SENT", "DEAD"}, statuses  # none lost, none left pending
    assert set(received) == sent  # every SENT one reached the sink, no DEAD one did
    assert not dead & set(received)
    assert max(received.values()) == 1  # none twice
