"""Ingestion CPU inside one process: ticket batches and alert events through the ASGI app.

Calls the application in process (as `bench/request_cpu.py` does: its middleware, no network,
no load generator) and prints, for each phase, wall time and the process CPU it took, so a
change to the ingestion path can be measured next to the previous code at the same moment
of a busy machine. Phases: a batch of N new tickets, the same batch again, the batch with a
newer version (`--rounds` times); then alert events from `--senders` concurrent requests
(group-committed): a first trigger of K keys, K repeats (severity alternating, so about half
the keys escalate once), K plain re-sends (nothing but the alert's count and last seen
change), K/10 Alertmanager notifications of 10 alerts, and as many group
re-sends; on PostgreSQL each alert phase also prints the CPU its database's backends took
(the application's pool, read from /proc). `--profile PREFIX` writes a pyinstrument
profile of each phase (last round).

    BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/ingest_cpu.py
    python bench/ingest_cpu.py --database sqlite --alert-keys 500 --profile /tmp/ingest
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import random
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _serve import process_cpu
from ingest import _event, _notification, _tickets
from request_cpu import PASSWORD, database, in_process_app
from sqlalchemy import event, text

from opsflow import schema


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


class Statements:
    """Counts the SQL statements the application sends (each executemany once), by shape."""

    def __init__(self, engine: Any) -> None:
        self.seen: Counter[str] = Counter()
        event.listen(engine.sync_engine, "before_cursor_execute", self._count)

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen[" ".join(statement.split())[:90]] += 1

    def take(self) -> Counter[str]:
        seen, self.seen = self.seen, Counter()
        return seen


class Phase:
    """Times one phase (wall and process CPU), optionally under pyinstrument; with
    `statements`, prints the statements it sent per group commit, by shape."""

    def __init__(
        self,
        name: str,
        profile: str | None,
        statements: Statements | None = None,
        batches: Callable[[], float] | None = None,
        calls: bool = False,
        database_cpu: Callable[[], Awaitable[float | None]] | None = None,
    ) -> None:
        self.name, self.profile = name, profile
        self.statements, self.batches, self.calls = statements, batches, calls
        self.database_cpu = database_cpu

    async def run(self, work: Callable[[], Awaitable[Any]], count: int) -> None:
        profiler: Any = None
        if self.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
        # Read before the statements are counted: its query is not the application's.
        database = await self.database_cpu() if self.database_cpu else None
        if self.statements:
            self.statements.take()
        commits = self.batches() if self.batches else 0.0
        counter = cProfile.Profile() if self.calls else None
        cpu, wall = time.process_time(), time.perf_counter()
        if counter is not None:
            counter.enable()
        await work()
        if counter is not None:
            counter.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        seen = self.statements.take() if self.statements else Counter()
        if profiler:
            profiler.stop()
            _write(f"{self.profile}-{self.name}.txt", profiler.output_text(unicode=False))
        print(
            f"  {self.name:<12} {count:>6}: wall {wall * 1000:7.0f} ms, CPU {cpu * 1000:7.0f} ms"
            f" ({cpu * 1000 / count:.3f} ms each)"
        )
        if database is not None and self.database_cpu:
            spent = (await self.database_cpu() or database) - database
            print(
                f"    PostgreSQL backends: CPU {spent * 1000:7.0f} ms"
                f" ({spent * 1000 / count:.3f} ms each)"
            )
        if counter is not None:
            # Python function calls per event: a deterministic proxy for CPU, for comparing
            # two versions on a machine too busy for CPU time to tell.
            total = pstats.Stats(counter).total_calls  # type: ignore[attr-defined]
            print(f"    {total / count:,.0f} Python function calls per event")
            if self.profile:
                counter.dump_stats(f"{self.profile}-{self.name}.pstats")
        if self.statements and self.batches:
            commits = max(self.batches() - commits, 1.0)
            print(
                f"    {commits:.0f} group commits, {sum(seen.values()) / commits:.1f} "
                "statements each:"
            )
            for shape, times in seen.most_common(12):
                print(f"    {times / commits:6.1f}  {shape}")


async def measure(url: str, args: argparse.Namespace) -> None:
    app, context, call = in_process_app(url)

    async def expect(status: int, method: str, path: str, body: Any) -> dict[str, Any]:
        got, answer = await call(method, path, body)
        assert got == status, (path, got, answer[:300])
        return dict(json.loads(answer))

    async with app.router.lifespan_context(app):
        token = (
            await expect(
                200, "POST", "/api/v1/auth/login", {"username": "admin", "password": PASSWORD}
            )
        )["access_token"]
        call.headers = [(b"authorization", f"Bearer {token}".encode())]
        n = args.tickets
        for round_ in range(args.rounds):
            profile = args.profile if round_ == args.rounds - 1 else None
            run = f"r{round_}"
            print(f"round {round_ + 1}: batches of {n} tickets")
            for name, minute, title in (
                ("created", 0, "Export hangs"),
                ("unchanged", 0, "Export hangs"),
                ("updated", 5, "Export still hangs"),
            ):
                body = {"tickets": _tickets(n, run, minute, title)}
                await Phase(name, profile).run(
                    lambda body=body: expect(200, "POST", "/api/v1/tickets", body), n
                )
        if args.alert_keys <= 0:
            await context.close()
            return
        keys = {}
        for kind in ("generic", "alertmanager"):
            created = await expect(
                201, "POST", "/api/v1/integrations", {"name": f"cpu-{kind}", "type": kind}
            )
            keys[kind] = created["key"]
        call.headers = []
        k = args.alert_keys
        names = [f"host-{i:05d}/disk" for i in range(k)]
        rng = random.Random(7)
        groups = max(k // 10, 1)
        phases = [
            ("first", "events", [_event(name, 0) for name in names], 1),
            ("repeat", "events", [_event(rng.choice(names), i) for i in range(1, k + 1)], 1),
            # Severity never worse than the incident's: every one a plain re-send.
            ("resend", "events", [_event(rng.choice(names), 0) for _ in range(k)], 1),
            ("am-first", "alertmanager", [_notification(g, 10) for g in range(groups)], 10),
            (
                "am-resend",
                "alertmanager",
                [_notification(rng.randrange(groups), 10) for _ in range(groups)],
                10,
            ),
        ]
        statements = Statements(context.engine) if args.statements else None

        async def database_cpu() -> float | None:
            """CPU seconds of this database's backends so far (the app's pool; None on
            SQLite or where /proc does not show them)."""
            if context.engine.dialect.name != "postgresql":
                return None
            async with context.engine.connect() as connection:
                pids = await connection.scalars(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                )
                try:
                    return sum(process_cpu(pid) for pid in pids)
                except OSError:
                    return None

        def commits() -> float:
            value = context.metrics.registry.get_sample_value("opsflow_alert_batch_requests_count")
            return float(value or 0.0)

        print(f"alert events, {args.senders} concurrent requests (per event):")
        for name, path, bodies, per in phases:
            kind = "generic" if path == "events" else "alertmanager"
            url_path = f"/api/v1/integrations/{keys[kind]}/{path}"
            pending = iter(bodies)

            async def sender(url_path: str = url_path, pending: Any = pending) -> None:
                for body in pending:
                    await expect(202, "POST", url_path, body)

            async def send_all(sender: Callable[[], Awaitable[None]] = sender) -> None:
                await asyncio.gather(*(sender() for _ in range(args.senders)))

            phase = Phase(name, args.profile, statements, commits, args.calls, database_cpu)
            await phase.run(send_all, len(bodies) * per)
    await context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--alert-keys", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument(
        "--calls", action="store_true", help="count the Python function calls per event"
    )
    parser.add_argument(
        "--statements", action="store_true", help="count the SQL statements per group commit"
    )
    parser.add_argument("--profile", help="write pyinstrument profiles to PREFIX-<phase>.txt")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url, drop = database(args.database, folder)
        try:
            schema.upgrade(url)
            asyncio.run(measure(url, args))
        finally:
            drop()


if __name__ == "__main__":
    main()
