"""Webhook delivery on PostgreSQL: delivery throughput, and SLA instant -> handed to the sink.

Creates a scratch database (``opsflow_bench_notifications``, via the server in DATABASE_URL),
migrates it, and runs an HTTP/1.1 sink (keep-alive, answers 200 at once) on its own event
loop in a thread of this process. Real ``opsflow engine`` processes do
the work:

(a) throughput: N PENDING webhook notifications to one subscription (loaded with SQL) are
    drained by K processes ``--passes delivery --until-idle --batch B``, for each K in
    ``--processes``; deliveries/s over the sink's first to last request (and over the wall
    time, spawn to last exit, which includes interpreter start-up), next to a bare baseline:
    the same number of POSTs (same body and headers) sent one after another by one httpx
    client straight to the sink; then the ratio engine/baseline;
(b) latency: M tasks whose START breach comes due one after another over ``--window``
    seconds, a webhook subscription on ``sla.breach``, K processes ``--passes all
    --interval I`` running in real time: p50/p99/max of the sink's receive instant minus the
    event's ``due_at`` (``data.due_at`` of the webhook body: the SLA engine's outbox payload),
    with the SLA engine's own share (``triggered_at - due_at``) for comparison.

Figures are printed, never asserted. PostgreSQL only (several processes side by side).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/notifications.py
    ... python bench/notifications.py --notifications 20000 --processes 1,4 --parts ab
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from _engines import execute, failures, int_list, log, pct, scalar, spawn
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from opsflow import schema
from opsflow.config import Settings
from opsflow.db import create_engine

BENCH_USER = uuid.UUID("00000000-0000-0000-0000-0000000be4c5")
WEBHOOK_ID = uuid.UUID("00000000-0000-0000-0000-0000000be4c6")
SECRET = "whsec_bench-notifications"


# --------------------------------------------------------------------------- the sink


@dataclass
class Hit:
    at: float  # time.time() when the request was read
    key: str | None
    body: bytes


class Sink:
    """A keep-alive HTTP/1.1 receiver on its own loop in a thread: records, answers 200."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/opsflow"

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers: dict[str, str] = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    if line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.hits.append(Hit(time.time(), headers.get("idempotency-key"), body))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()


# --------------------------------------------------------------------------- database


async def reset(engine: AsyncEngine, url: str, event_types: str) -> None:
    await execute(
        engine,
        "TRUNCATE notifications, webhook_subscriptions, sla_events, sla_clocks,"
        " outbox_events, audit_logs, tasks, users CASCADE",
    )
    await execute(
        engine,
        "INSERT INTO users (id, email, username, full_name, hashed_password, role, is_active,"
        " created_at, updated_at) VALUES (:id, 'bench-notify@example.com', 'bench-notify',"
        " 'Notification bench', 'x', 'admin', true, now(), now())",
        id=BENCH_USER,
    )
    await execute(
        engine,
        "INSERT INTO webhook_subscriptions (id, name, url, secret, event_types, is_active,"
        " created_by, created_at, updated_at) VALUES (:id, 'bench-sink', :url, :secret,"
        f" '{event_types}', true, NULL, now(), now())",
        id=WEBHOOK_ID,
        url=url,
        secret=SECRET,
    )


async def load_notifications(engine: AsyncEngine, url: str, count: int) -> None:
    """`count` PENDING webhook deliveries, as the relay's webhook consumer queues them."""
    await execute(
        engine,
        """
        WITH e AS (SELECT gen_random_uuid() AS id, g
                   FROM generate_series(1, CAST(:count AS integer)) AS g)
        INSERT INTO notifications (id, webhook_id, source_event_id, notification_type,
            channel, recipient, address, body, payload, status, attempts, max_attempts,
            scheduled_at, attempt_log, dedup_key, created_at, updated_at)
        SELECT gen_random_uuid(), :webhook, e.id, 'sla.breach', 'WEBHOOK', 'bench-sink', :url,
               '', jsonb_build_object('id', e.id::text, 'type', 'sla.breach',
                   'occurred_at', now(), 'data', jsonb_build_object(
                       'event_type', 'START_BREACH', 'severity', 'CRITICAL',
                       'sla_type', 'START', 'due_at', now(), 'expected_deadline', now(),
                       'task', jsonb_build_object('id', gen_random_uuid()::text,
                           'title', 'bench ' || e.g, 'priority', 'HIGH', 'status', 'CREATED'))),
               'PENDING', 0, 3, now() - interval '1 second', '[]'::jsonb,
               e.id::text || ':webhook:' || :suffix, now(), now()
        FROM e
        """,
        count=count,
        webhook=WEBHOOK_ID,
        url=url,
        suffix=str(WEBHOOK_ID),
    )
    await execute(engine, "ANALYZE notifications")


async def load_breaches(
    engine: AsyncEngine, count: int, t0: datetime, lead: float, window: float
) -> None:
    """`count` tasks whose START clock has fired warning and critical: the breach is next,
    due at t0 + lead + window * (r - 1) / count."""
    await execute(
        engine,
        """
        WITH d AS (SELECT g, gen_random_uuid() AS task_id,
                          CAST(:t0 AS timestamptz) + (CAST(:lead AS float8)
                          + CAST(:window AS float8) * (g - 1) / CAST(:count AS float8))
                          * interval '1 second' AS due
                   FROM generate_series(1, CAST(:count AS integer)) AS g),
             t AS (
                INSERT INTO tasks (id, title, task_type, priority, status, created_by,
                    customer_tier, start_sla_minutes, resolve_sla_minutes, start_sla_source,
                    resolve_sla_source, start_deadline, resolve_deadline, tags, metadata,
                    version, created_at, updated_at)
                SELECT task_id, 'breach ' || g, 'INCIDENT', 'HIGH', 'CREATED', :user,
                       'STANDARD', 10, 600, 'request', 'request', due,
                       due + interval '590 minutes', '[]', '{}', 1,
                       due - interval '10 minutes', due - interval '10 minutes'
                FROM d RETURNING id)
        INSERT INTO sla_clocks (id, task_id, kind, status, target_minutes, started_at, deadline,
                                thresholds, pauses, paused_seconds, fired_count, next_fire_at,
                                created_at, updated_at)
        SELECT gen_random_uuid(), d.task_id, 'START', 'ACTIVE', 10, d.due - interval '10 minutes',
               d.due, '[75.0, 95.0]', '[]', 0, 2, d.due, d.due - interval '10 minutes',
               d.due - interval '10 minutes'
        FROM d
        """,
        t0=t0,
        lead=lead,
        window=window,
        count=count,
        user=BENCH_USER,
    )
    await execute(engine, "ANALYZE sla_clocks")


# --------------------------------------------------------------------------- processes


# --------------------------------------------------------------------------- (a)


async def baseline(
    sink: Sink, body: bytes, headers: dict[str, str], count: int
) -> tuple[float, float]:
    """Seconds for `count` sequential POSTs by one httpx client (keep-alive) to the sink, and
    the CPU seconds of the thread sending them (the sink's thread not counted)."""
    async with httpx.AsyncClient(timeout=10) as client:
        started, cpu_started = time.perf_counter(), time.thread_time()
        for n in range(count):
            response = await client.post(
                sink.url, content=body, headers={**headers, "Idempotency-Key": f"bare-{n}"}
            )
            response.raise_for_status()
        return time.perf_counter() - started, time.thread_time() - cpu_started


async def throughput(
    engine: AsyncEngine, url: str, sink: Sink, workdir: str, args: argparse.Namespace
) -> None:
    count = args.notifications
    log(
        f"\n(a) throughput: {count:,} queued webhook deliveries to one local sink, "
        f"engines --passes delivery --until-idle --batch {args.batch}"
    )
    header = ("processes", "sent", "wall s", "sent/s", "sink s", "sent/s*", "vs bare", "CPU ms")
    log("  " + " ".join(f"{h:>10}" for h in header))
    sample: Hit | None = None
    bare_rate = bare_cpu = 0.0
    rows: list[tuple[int, int, float, float, float]] = []
    for processes in args.processes:
        await reset(engine, sink.url, '["sla.*"]')
        await load_notifications(engine, sink.url, count)
        sink.hits.clear()
        started = time.perf_counter()
        engines = [
            spawn(url, workdir, "--passes", "delivery", "--until-idle", "--batch", str(args.batch))
            for _ in range(processes)
        ]
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if all(e.process.poll() is not None for e in engines):
                break
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - started
        for e in engines:
            e.finish()
        sent = int(await scalar(engine, "SELECT count(*) FROM notifications WHERE status = 'SENT'"))
        hits = list(sink.hits)
        span = (hits[-1].at - hits[0].at) if len(hits) > 1 else 0.0
        sample = sample or (hits[0] if hits else None)
        cpu = sum(x["cpu_seconds"] for e in engines for x in e.records("engine_exit"))
        rows.append((processes, sent, wall, span, cpu))
        problems = failures(engines)
        if problems or sent != count or len(hits) != count:
            log(f"  !! expected {count} sent, found {sent} ({len(hits)} requests)\n{problems}")
    if sample is not None:
        headers = {"Content-Type": "application/json", "X-OpsFlow-Event": "sla.breach"}
        seconds, bare_cpu = await baseline(sink, sample.body, headers, count)
        bare_rate = count / seconds
    for processes, sent, wall, span, cpu in rows:
        rate = sent / span if span else 0.0
        cells = (
            f"{processes:>10}",
            f"{sent:>10,}",
            f"{wall:>10.2f}",
            f"{sent / wall:>10.0f}",
            f"{span:>10.2f}",
            f"{rate:>10.0f}",
            f"{rate / bare_rate if bare_rate else 0:>10.2f}",
            f"{cpu * 1000 / sent if sent else 0:>10.3f}",
        )
        log("  " + " ".join(cells))
    log(
        f"  bare: {count:,} sequential POSTs by one httpx client: {bare_rate:,.0f}/s, "
        f"CPU {bare_cpu * 1000 / count if sample else 0:.3f} ms per POST"
    )
    log("  wall: spawn to last exit (includes interpreter start-up);")
    log("  sink s / sent/s*: the sink's first to last request; vs bare: sent/s* / bare;")
    log("  CPU ms: the engines' CPU time (rounds only) per delivery, next to the bare client's")


# --------------------------------------------------------------------------- (b)


async def latency(
    engine: AsyncEngine, url: str, sink: Sink, workdir: str, args: argparse.Namespace
) -> None:
    count, window, lead = args.breaches, args.window, 2.0
    log(
        f"\n(b) SLA instant -> webhook at the sink: {count:,} breaches due one after another "
        f"over {window:.0f} s ({count / window:.0f}/s); {args.realtime_processes} engine(s) "
        f"--passes all --interval {args.interval}"
    )
    await reset(engine, sink.url, '["sla.breach"]')
    sink.hits.clear()
    engines = [
        spawn(url, workdir, "--passes", "all", "--interval", str(args.interval))
        for _ in range(args.realtime_processes)
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(e.ready() for e in engines):
            if time.monotonic() > deadline or any(e.process.poll() is not None for e in engines):
                log("  !! engines did not start\n" + "\n".join("".join(e.stderr) for e in engines))
                return
            await asyncio.sleep(0.05)
        await load_breaches(engine, count, datetime.now(UTC), lead, window)
        end = time.monotonic() + lead + window
        deadline = end + args.timeout
        while time.monotonic() < deadline:
            if len(sink.hits) >= count and time.monotonic() > end:
                break
            await asyncio.sleep(0.25)
    finally:
        for e in engines:
            e.finish()
    delivered: dict[str, float] = {}
    for hit in list(sink.hits):
        payload = json.loads(hit.body)
        if payload.get("type") != "sla.breach" or hit.key in delivered:
            continue
        due = datetime.fromisoformat(payload["data"]["due_at"].replace("Z", "+00:00"))
        delivered[str(hit.key)] = hit.at - due.timestamp()
    async with engine.connect() as connection:
        fired = (
            await connection.execute(text("SELECT due_at, triggered_at FROM sla_events"))
        ).all()
    fired_lag = [(t - d).total_seconds() for d, t in fired]
    log(f"  breaches fired: {len(fired):,}, webhooks received: {len(delivered):,} of {count:,}")
    log("  " + " ".join(f"{h:>10}" for h in ("from due", "p50 ms", "p99 ms", "max ms", "n")))
    for name, values in (("triggered", fired_lag), ("at sink", list(delivered.values()))):
        if values:
            cells = [pct(values, 0.5) * 1000, pct(values, 0.99) * 1000, max(values) * 1000]
            log(f"  {name:>10} " + " ".join(f"{c:>10.0f}" for c in cells) + f" {len(values):>10,}")
    if delivered:
        log(f"  mean at sink: {statistics.fmean(delivered.values()) * 1000:.0f} ms")
    log("  triggered: the SLA pass's clock reading - due_at (as stored);")
    log("  at sink: the sink read the request - due_at (SLA pass, relay, delivery, HTTP)")
    problems = failures(engines)
    if problems:
        log(f"  !! engine failures:\n{problems}")


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> None:
    log(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    base = os.environ.get("DATABASE_URL")
    if not base:
        raise SystemExit("set DATABASE_URL to a PostgreSQL server (its database is the admin one)")
    admin_url = Settings(database_url=args.admin_url or base).database_url
    if not admin_url.startswith("postgresql"):
        raise SystemExit("this benchmark needs PostgreSQL")
    url = make_url(admin_url).set(database=args.database).render_as_string(hide_password=False)
    server = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with server.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)'))
        await connection.execute(text(f'CREATE DATABASE "{args.database}"'))
    await asyncio.to_thread(schema.upgrade, url)
    engine = create_engine(url)
    sink = Sink()
    sink.start()
    try:
        version = await scalar(engine, "SHOW server_version")
        log(f"PostgreSQL {version}, {os.cpu_count()} CPUs, database {args.database}")
        with tempfile.TemporaryDirectory() as workdir:
            if "a" in args.parts:
                await throughput(engine, url, sink, workdir, args)
            if "b" in args.parts:
                await latency(engine, url, sink, workdir, args)
    finally:
        sink.stop()
        await engine.dispose()
        if not args.keep:
            async with server.connect() as connection:
                await connection.execute(
                    text(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
                )
        await server.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--notifications", type=int, default=2000, help="(a) queued webhook deliveries"
    )
    parser.add_argument(
        "--processes", type=int_list, default=[1, 3], help="(a) engine processes, e.g. 1,3"
    )
    parser.add_argument("--batch", type=int, default=50, help="(a) deliveries claimed per pass")
    parser.add_argument("--breaches", type=int, default=500, help="(b) breaches coming due")
    parser.add_argument("--window", type=float, default=20.0, help="(b) over seconds")
    parser.add_argument("--realtime-processes", type=int, default=2, help="(b) engines")
    parser.add_argument("--interval", type=float, default=0.1, help="(b) engines' --interval")
    parser.add_argument("--parts", default="ab", help="which measurements to run")
    parser.add_argument("--timeout", type=float, default=300, help="bound on each wait, s")
    parser.add_argument("--database", default="opsflow_bench_notifications", help="scratch db")
    parser.add_argument("--admin-url", default=None, help="server URL (default DATABASE_URL)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
