"""CPU per request inside one process, without a network or a load generator.

Calls the ASGI application directly (the same app `opsflow serve` runs, with its
middleware) one request at a time and reports the process CPU milliseconds each
operation costs, so a change to the request path can be measured in seconds and without
the noise of a busy machine's scheduler. `--profile FILE` writes a pyinstrument profile
of the measured loops (pip install pyinstrument).

    python bench/request_cpu.py                           # SQLite in a temporary folder
    BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/request_cpu.py
    python bench/request_cpu.py --operations get --profile /tmp/get.prof
    python bench/request_cpu.py --database sqlite --calls   # + function calls per request
    python bench/request_cpu.py --database sqlite --calls --calls-dump /tmp/calls  # + pstats
    python bench/request_cpu.py --sla-config docs/examples/sla_config.yaml  # with SLA policies
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from opsflow import schema
from opsflow.app import create_app
from opsflow.auth.principal import Principal
from opsflow.clock import SystemClock
from opsflow.composition import build_context
from opsflow.config import Settings
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.sla_config import service as sla_config

PASSWORD = "Bench-Admin-Pass-1"
OPERATIONS = ("me", "get", "list", "create", "start", "intake")

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Caller:
    """Minimal ASGI client: one request, the status and the body bytes back."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.headers: list[tuple[bytes, bytes]] = []

    async def __call__(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        payload = json.dumps(body).encode() if body is not None else b""
        query = b""
        if "?" in path:
            path, raw = path.split("?", 1)
            query = raw.encode()
        headers = [*self.headers, (b"host", b"bench")]
        if body is not None:
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        status = 0
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


def database(kind: str, folder: str) -> tuple[str, Callable[[], None]]:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{folder}/bench.db", lambda: None
    admin = make_url(
        os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    ).set(drivername="postgresql+asyncpg")
    name = f"cpu_bench_{uuid.uuid4().hex[:8]}"

    async def admin_run(statement: str) -> None:
        engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
        async with engine.connect() as connection:
            await connection.execute(text(statement))
        await engine.dispose()

    asyncio.run(admin_run(f'CREATE DATABASE "{name}"'))
    url = admin.set(database=name).render_as_string(hide_password=False)
    return url, lambda: asyncio.run(admin_run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def in_process_app(url: str) -> tuple[Any, AppContext, Caller]:
    """The application on `url` without its engines, its context (close it at the end)
    and a caller of it (no server)."""
    settings = Settings(
        database_url=url,
        admin_password=PASSWORD,
        log_level="WARNING",
        engine_enabled=False,
        auto_migrate=False,
        # Counted like any request, but never reached.
        rate_limit_per_minute=10**9,
        rate_limit_writes_per_minute=10**9,
        rate_limit_login_per_minute=10**9,
    )
    context = build_context(settings, SystemClock())
    app = create_app(settings, context=context)
    return app, context, Caller(app)


async def import_sla_config(context: AppContext, text: str) -> None:
    """Store an SLA configuration (what `opsflow sla import` does): tasks are created
    against its policies instead of the built-in targets."""
    async with unit_of_work(context.sessions) as session:
        await sla_config.apply_config(
            session, Principal.system("bench"), sla_config.parse(text), context.clock.now()
        )


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    app, context, call = in_process_app(url)
    results: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        status, body = await call(
            "POST", "/api/v1/auth/login", {"username": "admin", "password": PASSWORD}
        )
        assert status == 200, body
        call.headers = [(b"authorization", f"Bearer {json.loads(body)['access_token']}".encode())]
        if args.sla_config_text:
            await import_sla_config(context, args.sla_config_text)
        create = {"title": "bench", "task_type": "INCIDENT", "priority": "HIGH", "tags": ["b"]}
        ids = []
        extra = max(args.requests // args.batches, 1) if args.calls else 0
        for _ in range(args.requests + extra + 70):
            status, body = await call("POST", "/api/v1/tasks", create)
            assert status == 201, body
            ids.append(json.loads(body)["id"])
        pending = iter(ids)
        status, body = await call(
            "POST", "/api/v1/integrations", {"name": "bench", "type": "generic"}
        )
        assert status == 201, body
        intake_path = f"/api/v1/integrations/{json.loads(body)['key']}/events"
        # The same alert again and again: after the first, each is a re-send of an open
        # incident (the steady state of a noisy monitor).
        alert = {
            "event_action": "trigger",
            "dedup_key": "bench",
            "payload": {"summary": "bench", "severity": "warning", "source": "bench"},
        }
        requests: dict[str, Callable[[], Awaitable[tuple[int, bytes]]]] = {
            "me": lambda: call("GET", "/api/v1/auth/me"),
            "get": lambda: call("GET", f"/api/v1/tasks/{ids[0]}"),
            "list": lambda: call("GET", "/api/v1/tasks?page_size=20"),
            "create": lambda: call("POST", "/api/v1/tasks", create),
            "start": lambda: call("PATCH", f"/api/v1/tasks/{next(pending)}/start"),
            "intake": lambda: call("POST", intake_path, alert),
        }
        profiler: Any = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002, async_mode="disabled")
        for op in args.operations:
            for _ in range(20):  # warm the statement caches
                if op != "start":
                    await requests[op]()
            if profiler:
                profiler.start()
            # In batches: on a busy machine other processes only ever add to a batch's
            # figure (cache misses, frequency changes), so the cheapest batch is the most
            # faithful one; the median is printed next to it.
            batches = []
            size = max(args.requests // args.batches, 1)
            for _ in range(args.batches):
                started = time.process_time()
                for _ in range(size):
                    status, body = await requests[op]()
                    assert status < 300, (op, status, body[:300])
                batches.append((time.process_time() - started) * 1000 / size)
            if profiler:
                profiler.stop()
            results[op] = (min(batches), statistics.median(batches))
            if args.calls:
                # Python function calls per request: a deterministic proxy for CPU, for
                # comparing two versions on a machine too busy for CPU time to tell.
                counter = cProfile.Profile()
                counter.enable()
                for _ in range(size):
                    await requests[op]()
                counter.disable()
                stats = pstats.Stats(counter)
                calls = stats.total_calls  # type: ignore[attr-defined]
                if args.calls_dump:
                    stats.dump_stats(f"{args.calls_dump}.{op}")
                results[f"{op}_calls"] = (calls / size, calls / size)
    await context.close()
    if profiler:
        results["profile"] = profiler.output_text(unicode=False, show_all=False)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batches", type=int, default=10, help="measured in this many batches")
    parser.add_argument(
        "--operations",
        type=lambda text: [op for op in text.split(",") if op],
        default=list(OPERATIONS),
    )
    parser.add_argument("--profile", help="write a pyinstrument profile of the measured loops")
    parser.add_argument(
        "--sla-config", metavar="YAML", help="store this SLA configuration before measuring"
    )
    parser.add_argument(
        "--calls",
        action="store_true",
        help="also count Python function calls per request (deterministic; cProfile)",
    )
    parser.add_argument(
        "--calls-dump",
        metavar="PREFIX",
        help="with --calls: write each operation's cProfile stats to PREFIX.<operation>",
    )
    args = parser.parse_args()
    args.sla_config_text = Path(args.sla_config).read_text("utf-8") if args.sla_config else None
    kinds = ("postgresql", "sqlite") if args.database == "both" else (args.database,)
    for kind in kinds:
        with tempfile.TemporaryDirectory() as folder:
            url, drop = database(kind, folder)
            try:
                schema.upgrade(url)
                figures = asyncio.run(measure(url, args))
            finally:
                drop()
        if "profile" in figures:
            Path(args.profile).write_text(figures.pop("profile"))
        line = "  ".join(
            f"{op} {low:,.0f}" if op.endswith("_calls") else f"{op} {low:.2f} ({mid:.2f})"
            for op, (low, mid) in figures.items()
        )
        print(f"{kind:10} CPU ms/request, cheapest batch (median): {line}")


if __name__ == "__main__":
    main()
