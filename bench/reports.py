"""Report latency over HTTP at growing sizes: p50/p99 of every report endpoint.

For each size, fills a scratch database with `opsflow demo --tasks N` (PostgreSQL: a
database ``opsflow_bench_reports`` created via the server in DATABASE_URL; with
``--sqlite``: a file in a temporary folder), starts a real `opsflow serve --no-engine` on
it, logs in as a demo manager and times ``--requests`` GETs of each report, one at a time.
Prints the demo load speed, then a table of p50/p99 per endpoint and size with the growth
ratio of the p50 from the smallest size to each larger one. An endpoint that answers 404
is reported as missing and skipped.

    DATABASE_URL=postgresql://postgres@127.0.0.1/postgres python bench/reports.py
    python bench/reports.py --sqlite --sizes 100000

With ``--existing URL[,URL…]`` the databases at those URLs (filled earlier by `opsflow
demo`; their password with ``--password``) are measured as they are, nothing is loaded:
each one's size is its number of tasks, and the growth is from the smallest.
Beside the wall-clock p50/p99, the server process's CPU time per
request (from /proc) is printed, since the wall clock is noisy on a shared machine, and on
a PostgreSQL server on the same machine the CPU its backends serving the server spent per
request (the server's pool connects after its first requests, before the timed ones).
``--path`` (repeatable) times those paths instead of the five reports, for instance a
filtered report: ``--path '/reports/sla-compliance?priority=HIGH&customer_tier=PREMIUM'``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import httpx
from _serve import backend_pids, process_cpu, start_server
from sqlalchemy import text
from sqlalchemy.engine import make_url

from opsflow.config import Settings
from opsflow.db import create_engine

PASSWORD = "bench-reports-password"
ENDPOINTS = (
    "/reports/sla-summary",
    "/reports/team-performance",
    "/reports/incidents",
    "/reports/dashboard",
    "/reports/sla-compliance",
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def recreate(admin_url: str, name: str) -> str:
    server = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await server.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def task_count(url: str) -> int:
    engine = create_engine(Settings(database_url=url).database_url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(text("SELECT count(*) FROM tasks"))).scalar_one())
    finally:
        await engine.dispose()


def fill(url: str, tasks: int, workdir: str, password: str) -> float:
    """`opsflow demo --tasks N` on `url`; returns its wall time in seconds."""
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "opsflow", "demo", "--tasks", str(tasks), "--password", password],
        cwd=workdir,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


def backends_cpu(pids: list[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        with contextlib.suppress(OSError):  # ended, or not on this machine
            seconds[pid] = process_cpu(pid)
    return seconds


async def measure(
    base: str, requests: int, pid: int, password: str, url: str, paths: Sequence[str]
) -> dict[str, tuple[float, float] | None]:
    """p50/p99 per endpoint. On PostgreSQL on this machine, also the CPU the database's
    backends serving the server spent per request (from /proc)."""
    local_pg = url.startswith("postgresql")
    results: dict[str, tuple[float, float] | None] = {}
    async with httpx.AsyncClient(base_url=base + "/api/v1", timeout=120) as client:
        login = await client.post("/auth/login", json={"username": "admin", "password": password})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for path in paths:
            first = await client.get(path, headers=headers)  # warms caches, checks the route
            if first.status_code == 404:
                print(f"  {path}: 404, no such endpoint here; skipped")
                results[path] = None
                continue
            first.raise_for_status()
            times = []
            pids = await backend_pids(url) if local_pg else []
            db_before = backends_cpu(pids)
            cpu = process_cpu(pid)
            for _ in range(requests):
                began = time.perf_counter()
                response = await client.get(path, headers=headers)
                times.append((time.perf_counter() - began) * 1000)
                response.raise_for_status()
            cpu_ms = (process_cpu(pid) - cpu) * 1000 / requests
            db_after = backends_cpu(list(db_before))
            db_ms = sum(db_after[p] - db_before[p] for p in db_after) * 1000 / requests
            results[path] = (statistics.median(times), pct(times, 0.99))
            database = f", database CPU {db_ms:.1f} ms/request" if db_before else ""
            print(
                f"  {path}: p50 {results[path][0]:.1f} ms, p95 {pct(times, 0.95):.1f} ms, "
                f"p99 {results[path][1]:.1f} ms, server CPU {cpu_ms:.1f} ms/request"
                f"{database}; load average {os.getloadavg()[0]:.1f}"
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--requests", type=int, default=30, help="timed GETs per endpoint")
    parser.add_argument("--sqlite", action="store_true", help="embedded SQLite files instead")
    parser.add_argument("--database", default="opsflow_bench_reports", help="scratch database")
    parser.add_argument(
        "--existing",
        help="measure these filled databases (URLs separated by commas), load nothing",
    )
    parser.add_argument("--password", default=PASSWORD, help="the demo accounts' password")
    parser.add_argument("--path", action="append", help="time these paths instead")
    args = parser.parse_args()
    paths: Sequence[str] = args.path or ENDPOINTS
    sizes = [int(size) for size in args.sizes.split(",")]
    existing: dict[int, str] = {}
    for url in args.existing.split(",") if args.existing else []:
        existing[asyncio.run(task_count(url))] = url
    if existing:
        sizes = sorted(existing)
    rows: dict[int, dict[str, tuple[float, float] | None]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for size in sizes:
            if existing:
                url = existing[size]
            elif args.sqlite:
                url = f"sqlite+aiosqlite:///{workdir}/reports-{size}.db"
            else:
                base = os.environ.get("DATABASE_URL")
                if not base:
                    raise SystemExit("set DATABASE_URL to a PostgreSQL server, or use --sqlite")
                admin_url = Settings(database_url=base).database_url
                url = asyncio.run(recreate(admin_url, args.database))
            if existing:
                print(f"{size:,} tasks: the existing database")
            else:
                seconds = fill(url, size, workdir, args.password)
                rate = size / seconds
                print(f"{size:,} tasks: demo loaded in {seconds:.1f} s ({rate:,.0f} tasks/s)")
            process, base_url = start_server(workdir, {"DATABASE_URL": url}, ["--no-engine"])
            try:
                measured = measure(base_url, args.requests, process.pid, args.password, url, paths)
                rows[size] = asyncio.run(measured)
            finally:
                process.terminate()
                process.wait(timeout=15)
    smallest = sizes[0]
    print()
    header = f"{'endpoint':<28}" + "".join(f"{f'{s:,} p50/p99 ms':>24}" for s in sizes)
    print(header + "  growth of p50")
    for path in paths:
        cells = []
        for size in sizes:
            value = rows[size].get(path)
            cells.append(f"{value[0]:10.1f} / {value[1]:8.1f}  " if value else f"{'-':>22}  ")
        base_value = rows[smallest].get(path)
        growth = [
            f"x{value[0] / base_value[0]:.1f}"
            for size in sizes[1:]
            if base_value and (value := rows[size].get(path))
        ]
        print(f"{path:<28}" + "".join(cells) + " ".join(growth))


if __name__ == "__main__":
    main()
