"""Delivery engines side by side, killed at random, on PostgreSQL: every webhook delivered.

Hundreds of PENDING webhook notifications to one subscription are loaded straight into the
database, then three real `opsflow engine --passes delivery` processes
send them to an HTTP sink in this test (a receiver: it records every request and its
``Idempotency-Key``, answers 200 — and 500 to a scripted share — after a short think) while
one of them is SIGKILLed every few hundred milliseconds and replaced. With a 2 s lease a
killed process's deliveries come back quickly.

At the end every notification is SENT, with one successful attempt in its log; the
receiver, deduplicating by key as it should, processed each exactly once; the same key
processed twice happens only for deliveries in flight when a process died, so the duplicates
are bounded by kills x batch; and the signatures verify.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from opsflow.db import create_engine
from opsflow.notifications.channels import verify
from tests.processes import EngineProcess, Engines
from tests.sinks import HttpSink, Reply

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NOTIFICATIONS = 400
BATCH = 20
POOL = 3
MIN_KILLS, MAX_KILLS = 5, 8
FAIL_EVERY = 40  # every 40th request of the first NOTIFICATIONS is answered 500
THINK_SECONDS = 0.02  # the receiver's time per request (a real one does some work)
LEASE_SECONDS = 2
DEADLINE_SECONDS = 180
SECRET = "whsec_delivery-chaos-secret"
WEBHOOK_ID = uuid.UUID("00000000-0000-0000-0000-0000000c4a05")


class ThinkingSink(HttpSink):
    """The scripted sink, taking `think` seconds before it reads and answers a request."""

    def __init__(self, think: float) -> None:
        super().__init__()
        self.think = think

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(self.think)
        await super()._handle(reader, writer)


async def _load(engine: AsyncEngine, url: str, count: int) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO webhook_subscriptions (id, name, url, secret, event_types,"
                " is_active, created_by, created_at, updated_at)"
                " VALUES (:id, 'chaos-sink', :url, :secret, '[\"sla.breach\"]', true, NULL,"
                " now(), now())"
            ),
            {"id": WEBHOOK_ID, "url": url, "secret": SECRET},
        )
        # What the relay's webhook consumer queues (webhooks/service.py), minus the task.
        await connection.execute(
            text(
                """
                WITH e AS (SELECT gen_random_uuid() AS id, g
                           FROM generate_series(1, CAST(:count AS integer)) AS g)
                INSERT INTO notifications (id, webhook_id, source_event_id, notification_type,
                    channel, recipient, address, body, payload, status, attempts,
                    max_attempts, scheduled_at, attempt_log, dedup_key, created_at, updated_at)
                SELECT gen_random_uuid(), :webhook, e.id, 'sla.breach', 'WEBHOOK', 'chaos-sink',
                       :url, '',
                       jsonb_build_object('id', e.id::text, 'type', 'sla.breach',
                                          'occurred_at', now(), 'data', jsonb_build_object(
                                              'event_type', 'START_BREACH', 'n', e.g)),
                       'PENDING', 0, 5, now() - interval '1 second', '[]'::jsonb,
                       e.id::text || ':webhook:' || :key_suffix, now(), now()
                FROM e
                """
            ),
            {"webhook": WEBHOOK_ID, "key_suffix": str(WEBHOOK_ID), "url": url, "count": count},
        )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    assert database_url.startswith("postgresql"), "these tests need PostgreSQL"
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


class DeliveryEngines(Engines):
    """`--passes delivery` processes with a short lease; every one is ended in `close`."""

    def __init__(self, database_url: str, workdir: Path) -> None:
        super().__init__(database_url, workdir, BATCH)

    def arguments(self) -> list[str]:
        return ["--passes", "delivery", "--interval", "0.05", "--batch", str(self.batch)]

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            "OPSFLOW_NOTIFICATION_LEASE_SECONDS": str(LEASE_SECONDS),
            "OPSFLOW_NOTIFICATION_RETRY_BASE_SECONDS": "0.2",
        }


def _delivery_passes(engine: EngineProcess) -> list[dict[str, object]]:
    return [r for r in engine.records() if r.get("event") == "delivery_pass"]


@pytest.fixture
def delivery_engines(database_url: str, tmp_path: Path) -> Iterator[DeliveryEngines]:
    engines = DeliveryEngines(database_url, tmp_path)
    yield engines
    engines.close()


async def _unsent(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        query = text("SELECT count(*) FROM notifications WHERE status <> 'SENT'")
        return int(await connection.scalar(query) or 0)


async def test_killed_delivery_engines_deliver_everything_once_per_key(
    db: AsyncEngine, delivery_engines: DeliveryEngines
) -> None:
    sink = ThinkingSink(THINK_SECONDS)
    script: list[Reply | str] = [
        Reply(500, b"try again") if i % FAIL_EVERY == FAIL_EVERY - 1 else Reply()
        for i in range(NOTIFICATIONS)
    ]
    sink.script = list(script)
    await sink.start()
    try:
        await _load(db, f"{sink.url}/hooks/opsflow", NOTIFICATIONS)
        engines = delivery_engines
        rng = random.Random(20260128)
        kills = 0
        for _ in range(POOL):
            engines.start()
        started = time.monotonic()
        deadline = started + DEADLINE_SECONDS
        next_kill = started + rng.uniform(0.3, 0.6)
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not all sent in {DEADLINE_SECONDS} s ({kills} kills)\n{engines.report()}"
                )
            if await _unsent(db) == 0:
                break
            running = engines.running()
            if time.monotonic() >= next_kill and kills < MAX_KILLS:
                # A process that has delivered something is (nearly always) in a pass.
                busy = [e for e in running if _delivery_passes(e)]
                if busy and rng.choice(busy).sigkill():
                    kills += 1
                    next_kill = time.monotonic() + rng.uniform(0.3, 0.6)
            for _ in range(POOL - len(engines.running())):
                engines.start()
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        engines.close()
    finally:
        await sink.stop()
    report = engines.report()

    landed = sum(1 for e in engines.all if e.process.returncode == -signal.SIGKILL and e.killed)
    assert landed >= MIN_KILLS, f"only {landed} kills landed before the work was done\n{report}"
    for engine in engines.all:
        assert "delivery_pass_failed" not in "".join(engine.stderr), report

    # The database: every row SENT once, one successful attempt in its log.
    async with db.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT id, status, attempts, sent_at,"
                    " (SELECT count(*) FROM jsonb_array_elements(attempt_log) AS a"
                    "  WHERE (a->>'ok')::boolean) AS ok_attempts"
                    " FROM notifications"
                )
            )
        ).all()
    assert len(rows) == NOTIFICATIONS
    for row_id, status, attempts, sent_at, ok_attempts in rows:
        assert (status, ok_attempts) == ("SENT", 1), (row_id, status, ok_attempts)
        assert attempts >= 1, (row_id, attempts)
        assert sent_at is not None, row_id
    # What the processes reported as recorded adds up to no more than the rows (a killed
    # process may have recorded a last delivery without living to report it).
    reported = sum(int(str(p["sent"])) for e in engines.all for p in _delivery_passes(e))
    assert reported <= NOTIFICATIONS, report

    # The receiver: the i-th request got the i-th scripted reply (then 200).
    expected = {f"opsflow-{row[0]}" for row in rows}
    keys = [r.headers.get("idempotency-key") for r in sink.requests]
    statuses = [
        reply.status
        if isinstance(reply := script[i] if i < len(script) else Reply(), Reply)
        else 200
        for i in range(len(keys))
    ]
    assert set(keys) == expected, "the sink did not see every notification's key (or saw more)"
    processed = Counter(key for key, status in zip(keys, statuses, strict=True) if status == 200)
    assert set(processed) == expected  # after dedup by key: each processed exactly once
    duplicates = sum(n - 1 for n in processed.values())
    failures = statuses.count(500)
    print(
        f"\n{NOTIFICATIONS} notifications, {len(keys)} requests, {failures} answered 500, "
        f"{landed} kills, {duplicates} duplicate deliveries (bound {landed * BATCH}), "
        f"{len(engines.all)} processes, {elapsed:.1f} s"
    )
    assert duplicates <= landed * BATCH, report

    # Signatures verify, as a receiver checks them.
    now = datetime.now(UTC)
    for request in random.Random(7).sample(sink.requests, 40):
        assert request.method == "POST"
        assert request.path == "/hooks/opsflow"
        assert request.headers["x-opsflow-event"] == "sla.breach"
        assert request.headers["x-opsflow-delivery"] == request.headers["idempotency-key"]
        assert verify(
            SECRET,
            request.headers["x-opsflow-timestamp"],
            request.body,
            request.headers["x-opsflow-signature"],
            now,
        ), request.headers
        assert request.json()["type"] == "sla.breach"
