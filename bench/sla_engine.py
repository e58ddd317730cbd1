"""SLA engine on PostgreSQL: throughput, lateness, and the cost of a pass against open clocks.

Creates a scratch database (``opsflow_bench_sla``, via the server in DATABASE_URL), migrates
it, loads N open clocks straight with SQL (generate_series: a million in well under a few
minutes) and measures, with real ``opsflow engine`` processes:

(a) throughput: a fraction of the clocks is overdue; K engine processes drain it
    (``--until-idle``); fires per second, for each K in ``--processes``;
(b) lateness: M thresholds come due one after another over the next ~30 s while K engines
    run in real time with a short interval; p50/p99/max of triggered_at - due_at (what
    the engine records) and of committed_at - due_at (when the event was persisted);
(c) the cost of one engine pass with the same number of clocks due among 10,000 and among
    1,000,000 open clocks: wall time of one SLA pass (``SlaEngine.run``) and, from EXPLAIN
    (ANALYZE, BUFFERS) of the claim query it sends, rows examined and buffers touched; then the
    ratio.

Figures are printed, never asserted.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/sla_engine.py
    ... python bench/sla_engine.py --clocks 1000000 --processes 1,4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from _engines import execute, failures, int_list, log, pct, scalar, spawn
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from opsflow import schema
from opsflow.clock import SystemClock
from opsflow.composition import build_context
from opsflow.config import Settings
from opsflow.db import create_engine
from opsflow.sla.engine import SlaEngine

BENCH_USER = uuid.UUID("00000000-0000-0000-0000-0000000be4c4")
# MEDIUM priority defaults: the warning is at 75 % (360 / 3,240 min), the critical at 95 %,
# 96 minutes or more later: once a clock's warning fired, it stays quiet for the whole run.
START_MINUTES, RESOLVE_MINUTES = 480, 4320
# The 75 % instant is `started_at + target_minutes * 45 s` exactly, as the engine computes it.
WARNING_OFFSET = "c.target_minutes * interval '45 seconds'"


# --------------------------------------------------------------------------- database


async def vacuum(admin: AsyncEngine) -> None:
    async with admin.connect() as connection:
        await connection.execute(text("VACUUM ANALYZE sla_clocks"))
        await connection.execute(text("VACUUM ANALYZE sla_events"))


async def load(engine: AsyncEngine, admin: AsyncEngine, clocks: int) -> float:
    """Exactly `clocks` open clocks (two per task), none due: warnings 1 to 8 days ahead."""
    started = time.perf_counter()
    tasks = (clocks + 1) // 2
    await execute(
        engine,
        "TRUNCATE sla_events, sla_clocks, outbox_events, audit_logs, tasks, users CASCADE",
    )
    await execute(
        engine,
        "INSERT INTO users (id, email, username, full_name, hashed_password, role, is_active,"
        " created_at, updated_at) VALUES (:id, 'bench-sla@example.com', 'bench-sla',"
        " 'SLA bench', 'x', 'admin', true, now(), now())",
        id=BENCH_USER,
    )
    await execute(
        engine,
        """
        INSERT INTO tasks (id, title, task_type, priority, status, created_by, customer_tier,
                           start_sla_minutes, resolve_sla_minutes, start_sla_source,
                           resolve_sla_source, start_deadline, resolve_deadline, tags,
                           metadata, version, created_at, updated_at)
        SELECT md5('bench-task-' || g)::uuid, 'bench ' || g, 'INCIDENT', 'MEDIUM', 'CREATED',
               :user, 'STANDARD', :start, :resolve, 'default', 'default',
               now() + interval '1 day', now() + interval '3 days', '[]', '{}', 1,
               now(), now()
        FROM generate_series(1, CAST(:tasks AS integer)) AS g
        """,
        user=BENCH_USER,
        start=START_MINUTES,
        resolve=RESOLVE_MINUTES,
        tasks=tasks,
    )
    await execute(
        engine,
        f"""
        INSERT INTO sla_clocks (id, task_id, kind, status, target_minutes, started_at,
                                deadline, thresholds, pauses, paused_seconds, fired_count,
                                next_fire_at, created_at, updated_at)
        SELECT gen_random_uuid(), w.task_id, w.kind, 'ACTIVE', w.minutes,
               w.warn - w.minutes * interval '45 seconds',
               w.warn + w.minutes * interval '15 seconds',
               '[75.0, 95.0]', '[]', 0, 0, w.warn, now(), now()
        FROM (
            SELECT md5('bench-task-' || g)::uuid AS task_id, k.kind, k.minutes,
                   now() + interval '1 day' + random() * interval '7 days' AS warn,
                   2 * (g - 1) + k.n AS i
            FROM generate_series(1, CAST(:tasks AS integer)) AS g
            CROSS JOIN (VALUES (0, 'START', {START_MINUTES}),
                               (1, 'RESOLVE', {RESOLVE_MINUTES})) AS k(n, kind, minutes)
        ) AS w
        WHERE w.i < :clocks
        """,
        tasks=tasks,
        clocks=clocks,
    )
    await vacuum(admin)
    async with admin.connect() as connection:
        await connection.execute(text("VACUUM ANALYZE tasks"))
    return time.perf_counter() - started


async def reset(engine: AsyncEngine, admin: AsyncEngine) -> None:
    """Forget every event; every clock open again with its warning days ahead."""
    await execute(engine, "TRUNCATE sla_events, outbox_events, audit_logs")
    await execute(
        engine,
        f"""
        UPDATE sla_clocks AS c
        SET fired_count = 0, status = 'ACTIVE', breached_at = NULL,
            next_fire_at = w.warn, started_at = w.warn - {WARNING_OFFSET},
            deadline = w.warn - {WARNING_OFFSET} + c.target_minutes * interval '1 minute'
        FROM (SELECT id, now() + interval '1 day' + random() * interval '7 days' AS warn
              FROM sla_clocks
              WHERE fired_count > 0 OR next_fire_at IS NULL
                 OR next_fire_at < now() + interval '2 hours') AS w
        WHERE c.id = w.id
        """,
    )
    await vacuum(admin)


async def make_due(engine: AsyncEngine, count: int, warn_sql: str, **params: Any) -> None:
    """Move the warning of `count` untouched clocks to `warn_sql` (may use r = 1..count)."""
    await execute(
        engine,
        f"""
        UPDATE sla_clocks AS c
        SET next_fire_at = p.warn, started_at = p.warn - {WARNING_OFFSET},
            deadline = p.warn - {WARNING_OFFSET} + c.target_minutes * interval '1 minute'
        FROM (SELECT id, {warn_sql} AS warn
              FROM (SELECT id, row_number() OVER () AS r FROM sla_clocks
                    WHERE fired_count = 0 AND next_fire_at > now() + interval '1 hour'
                    LIMIT :count) AS picked) AS p
        WHERE c.id = p.id
        """,
        count=count,
        **params,
    )


# --------------------------------------------------------------------------- processes


def parse_instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --------------------------------------------------------------------------- (a)


async def throughput(
    engine: AsyncEngine, admin: AsyncEngine, url: str, workdir: str, args: argparse.Namespace
) -> None:
    due = max(1, round(args.clocks * args.due_fraction))
    log(
        f"\n(a) throughput: {due:,} of {args.clocks:,} open clocks overdue "
        f"(1 threshold each), engines --until-idle --batch {args.batch}"
    )
    header = (
        "processes",
        "events",
        "wall s",
        "events/s",
        "engine s",
        "events/s*",
        "passes",
        "CPU ms/ev",
        "ev/CPU-s",
    )
    log("  " + " ".join(f"{h:>10}" for h in header))
    for count in args.processes:
        await reset(engine, admin)
        await make_due(
            engine, due, "now() - interval '1 second' - random() * interval '10 minutes'"
        )
        await vacuum(admin)
        started = time.perf_counter()
        engines = [
            spawn(url, workdir, "--until-idle", "--batch", str(args.batch)) for _ in range(count)
        ]
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if all(e.process.poll() is not None for e in engines):
                break
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - started
        for e in engines:
            e.finish()
        passes = [p for e in engines for p in e.records("sla_pass")]
        events = sum(p["events"] for p in passes)
        cpu = sum(x["cpu_seconds"] for e in engines for x in e.records("engine_exit"))
        stored = await scalar(engine, "SELECT count(*) FROM sla_events")
        if passes:
            first = min(parse_instant(p["started_at"]) for p in passes)
            last = max(parse_instant(p["committed_at"]) for p in passes)
            span = (last - first).total_seconds()
        else:
            span = 0.0
        cells = (
            f"{count:>10}",
            f"{stored:>10,}",
            f"{wall:>10.2f}",
            f"{stored / wall:>10.0f}",
            f"{span:>10.2f}",
            f"{events / span if span else 0:>10.0f}",
            f"{len(passes):>10}",
            f"{cpu * 1000 / events if events else 0:>10.3f}",
            f"{events / cpu if cpu else 0:>10.0f}",
        )
        log("  " + " ".join(cells))
        problems = failures(engines)
        if problems or stored != due:
            log(f"  !! expected {due} events, found {stored}\n{problems}")
    log("  wall: spawn to last exit (includes interpreter start-up);")
    log("  engine s / events/s*: first pass start to last commit, across the processes;")
    log("  CPU ms/ev, ev/CPU-s: the engines' own CPU time (rounds only) per event, and the")
    log("  events one busy core of this process would fire (what a loaded box cannot hide)")


# --------------------------------------------------------------------------- (b)


async def lateness(
    engine: AsyncEngine, admin: AsyncEngine, url: str, workdir: str, args: argparse.Namespace
) -> None:
    count, window, lead = args.realtime_due, args.realtime_window, 2.0
    log(
        f"\n(b) lateness: {count:,} warnings due one after another over {window:.0f} s "
        f"({count / window:.0f}/s) among {args.clocks:,} open clocks; "
        f"{args.realtime_processes} engine(s), --interval {args.realtime_interval} "
        f"--batch {args.batch}"
    )
    await reset(engine, admin)
    engines = [
        spawn(url, workdir, "--interval", str(args.realtime_interval), "--batch", str(args.batch))
        for _ in range(args.realtime_processes)
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(e.ready() for e in engines):
            if time.monotonic() > deadline or any(e.process.poll() is not None for e in engines):
                log("  !! engines did not start\n" + "\n".join("".join(e.stderr) for e in engines))
                return
            await asyncio.sleep(0.05)
        t0 = datetime.now(UTC)
        await make_due(
            engine,
            count,
            "CAST(:t0 AS timestamptz) + (CAST(:lead AS float8)"
            " + CAST(:window AS float8) * (r - 1) / CAST(:spread AS float8))"
            " * interval '1 second'",
            t0=t0,
            lead=lead,
            window=window,
            spread=count,
        )
        end = time.monotonic() + lead + window
        deadline = end + args.timeout
        while time.monotonic() < deadline:
            fired = await scalar(engine, "SELECT count(*) FROM sla_events")
            if fired >= count and time.monotonic() > end:
                break
            await asyncio.sleep(0.25)
    finally:
        for e in engines:
            e.finish()
    committed = {
        parse_instant(p["started_at"]): parse_instant(p["committed_at"])
        for e in engines
        for p in e.records("sla_pass")
    }
    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT due_at, triggered_at FROM sla_events"))).all()
    fired_lag = [(t - d).total_seconds() for d, t in rows]
    stored_lag = [(committed[t] - d).total_seconds() for d, t in rows if t in committed]
    log(f"  events persisted: {len(rows):,} of {count:,}")
    log("  " + " ".join(f"{h:>10}" for h in ("lateness", "p50 ms", "p99 ms", "max ms", "n")))
    for name, values in (("triggered", fired_lag), ("committed", stored_lag)):
        if values:
            cells = [pct(values, 0.5) * 1000, pct(values, 0.99) * 1000, max(values) * 1000]
            log(f"  {name:>10} " + " ".join(f"{c:>10.0f}" for c in cells) + f" {len(values):>10,}")
    log("  triggered: triggered_at - due_at (the pass's clock reading, as stored);")
    log("  committed: the pass's commit returned - due_at (persisted)")
    problems = failures(engines)
    if problems:
        log(f"  !! engine failures:\n{problems}")


# --------------------------------------------------------------------------- (c)


@dataclass
class PassCost:
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    claim_ms: list[float] = field(default_factory=list)
    rows_examined: list[int] = field(default_factory=list)
    buffers: list[int] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    clocks: list[int] = field(default_factory=list)


def plan_rows_examined(node: dict[str, Any]) -> int:
    """Rows the scans of a plan produced or threw away (per loop times loops)."""
    rows = 0
    if "Scan" in node.get("Node Type", ""):
        per_loop = (
            node.get("Actual Rows", 0)
            + node.get("Rows Removed by Filter", 0)
            + node.get("Rows Removed by Index Recheck", 0)
        )
        rows += int(per_loop * node.get("Actual Loops", 1))
    for child in node.get("Plans", []):
        rows += plan_rows_examined(child)
    return rows


async def pass_cost(engine: AsyncEngine, url: str, due: int, repeats: int) -> PassCost:
    """`repeats` passes of `due` due clocks, each preceded by EXPLAIN of its claim query."""
    settings = Settings(database_url=url, log_level="WARNING")
    ctx = build_context(settings, SystemClock())
    captured: list[tuple[str, Any]] = []
    counting = [0]

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        counting[0] += 1
        if "SKIP LOCKED" in statement and not captured:
            captured.append((statement, parameters))

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", capture)
    cost = PassCost()
    try:
        for attempt in range(repeats + 1):  # the first pass warms up and captures the query
            await make_due(
                engine, due, "now() - interval '1 second' - r * interval '1 millisecond'"
            )
            if captured:
                statement, parameters = captured[0]
                fresh = tuple(
                    datetime.now(UTC) if isinstance(p, datetime) else p for p in parameters
                )
                async with ctx.engine.connect() as connection:
                    transaction = await connection.begin()
                    plan = (
                        await connection.exec_driver_sql(
                            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, fresh
                        )
                    ).scalar_one()
                    await transaction.rollback()
                document = plan if isinstance(plan, list) else json.loads(plan)
                top = document[0]["Plan"]
                claim_ms = float(document[0]["Execution Time"])
                examined = plan_rows_examined(top)
                buffers = int(top.get("Shared Hit Blocks", 0)) + int(
                    top.get("Shared Read Blocks", 0)
                )
            counting[0] = 0
            started, cpu_started = time.perf_counter(), time.process_time()
            result = await SlaEngine().run(ctx, batch=due)
            wall = (time.perf_counter() - started) * 1000
            cpu = (time.process_time() - cpu_started) * 1000
            if attempt == 0:
                continue
            cost.wall_ms.append(wall)
            cost.cpu_ms.append(cpu)
            cost.claim_ms.append(claim_ms)
            cost.rows_examined.append(examined)
            cost.buffers.append(buffers)
            cost.statements.append(counting[0])
            cost.clocks.append(result.counts["clocks"])
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", capture)
        await ctx.close()
    return cost


async def pass_costs(
    engine: AsyncEngine, admin: AsyncEngine, url: str, loaded: int, args: argparse.Namespace
) -> None:
    due = args.pass_due
    log(
        f"\n(c) one engine pass, {due} clocks due, against the number of open clocks "
        f"(median of {args.repeats} passes)"
    )
    results: dict[int, PassCost] = {}
    # Reuse what is loaded first; load the other sizes after.
    for size in sorted(args.pass_sizes, key=lambda s: (s != loaded, s)):
        if size == loaded:
            await reset(engine, admin)
        else:
            seconds = await load(engine, admin, size)
            loaded = size
            log(f"  loaded {size:,} open clocks in {seconds:.1f} s")
        results[size] = await pass_cost(engine, url, due, args.repeats)
    header = (
        "open",
        "claimed",
        "pass ms",
        "claim ms",
        "rows exam.",
        "buffers",
        "statements",
        "CPU ms",
    )
    log("  " + " ".join(f"{h:>11}" for h in header))

    def medians(cost: PassCost) -> list[float]:
        return [
            statistics.median(cost.wall_ms),
            statistics.median(cost.claim_ms),
            statistics.median(cost.rows_examined),
            statistics.median(cost.buffers),
            statistics.median(cost.statements),
            statistics.median(cost.cpu_ms),
        ]

    for size in sorted(results):
        m = medians(results[size])
        log(
            f"  {size:>11,} {statistics.median(results[size].clocks):>11.0f} "
            f"{m[0]:>11.1f} {m[1]:>11.3f} {m[2]:>11.0f} {m[3]:>11.0f} {m[4]:>11.0f}"
            f" {m[5]:>11.1f}"
        )
    sizes = sorted(results)
    if len(sizes) > 1:
        small, large = medians(results[sizes[0]]), medians(results[sizes[-1]])
        ratios = [b / a if a else float("nan") for a, b in zip(small, large, strict=True)]
        log(
            f"  {'ratio':>11} {sizes[-1] // sizes[0]:>10}x "
            + " ".join(f"{r:>11.2f}" for r in ratios)
        )
    log("  pass ms: SlaEngine.run wall time (claim, fire, audit, outbox, commit);")
    log("  claim ms / rows exam. / buffers: EXPLAIN (ANALYZE, BUFFERS) of the claim query;")
    log("  statements: SQL statements the pass sent; CPU ms: this process's CPU time for it")


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
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        version = await scalar(engine, "SHOW server_version")
        cpus = os.cpu_count()
        log(f"PostgreSQL {version}, {cpus} CPUs, database {args.database}")
        seconds = await load(engine, admin, args.clocks)
        log(f"loaded {args.clocks:,} open clocks in {seconds:.1f} s")
        with tempfile.TemporaryDirectory() as workdir:
            if "a" in args.parts:
                await throughput(engine, admin, url, workdir, args)
            if "b" in args.parts:
                await lateness(engine, admin, url, workdir, args)
        if "c" in args.parts:
            await pass_costs(engine, admin, url, args.clocks, args)
    finally:
        log(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        await engine.dispose()
        await admin.dispose()
        if not args.keep:
            async with server.connect() as connection:
                await connection.execute(
                    text(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
                )
        await server.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clocks", type=int, default=100_000, help="open clocks to load")
    parser.add_argument(
        "--due-fraction", type=float, default=0.05, help="(a) fraction of them overdue"
    )
    parser.add_argument(
        "--processes", type=int_list, default=[1, 4], help="(a) engine processes, e.g. 1,4"
    )
    parser.add_argument("--batch", type=int, default=500, help="clocks claimed per pass")
    parser.add_argument("--realtime-due", type=int, default=3000, help="(b) thresholds coming due")
    parser.add_argument("--realtime-window", type=float, default=30.0, help="(b) over seconds")
    parser.add_argument("--realtime-processes", type=int, default=2, help="(b) engines")
    parser.add_argument("--realtime-interval", type=float, default=0.1, help="(b) --interval")
    parser.add_argument(
        "--pass-sizes",
        type=int_list,
        default=[10_000, 1_000_000],
        help="(c) open clock counts to compare",
    )
    parser.add_argument("--pass-due", type=int, default=500, help="(c) clocks due per pass")
    parser.add_argument("--repeats", type=int, default=5, help="(c) passes measured per size")
    parser.add_argument("--parts", default="abc", help="which measurements to run")
    parser.add_argument("--timeout", type=float, default=900, help="bound on each wait, s")
    parser.add_argument("--database", default="opsflow_bench_sla", help="scratch database")
    parser.add_argument("--admin-url", default=None, help="server URL (default DATABASE_URL)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
