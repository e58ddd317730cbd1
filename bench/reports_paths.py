"""The reports' fast path (quarter-hour rollups) against the live path, on one database.

Calls the report service functions directly (no HTTP) on the database at --url (filled by
`opsflow demo`), default filters (the last 30 days), each report --reads times the fast
way and the live way (`rollups.live_only()`), alternating, after one warm-up each. Prints
per report and path the wall-clock p50/max, this process's CPU and the PostgreSQL
backend's CPU per read (from /proc: the server runs on this machine), whether the two
answers are equal, and the load average. `--filter name=value` (repeatable: task_type,
priority, team_id, customer_tier) filters the tasks; `--report NAME` (repeatable) reads
only those reports.

    python bench/reports_paths.py --url postgresql://postgres@127.0.0.1/opsflow_bench
    python bench/reports_paths.py --url … --report sla-compliance --filter priority=HIGH
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.clock import SystemClock
from opsflow.config import Settings
from opsflow.db import create_engine, create_sessionmaker
from opsflow.reports import rollups
from opsflow.reports import service as reports
from opsflow.reports.repository import ReportFilters


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Report = Callable[[AsyncSession, ReportFilters, Any], Awaitable[Any]]
REPORTS: dict[str, Report] = {
    "sla-summary": lambda s, f, now: reports.sla_summary(s, f, "day", now),
    "team-performance": reports.team_performance,
    "incidents": reports.incidents,
    "dashboard": reports.dashboard,
    "sla-compliance": reports.sla_compliance,
}


async def run(url: str, reads: int, chosen: dict[str, Any], names: list[str]) -> None:
    engine = create_engine(Settings(database_url=url).database_url)
    sessions = create_sessionmaker(engine)
    now = SystemClock().now()
    filters = ReportFilters(start=now - timedelta(days=30), end=now, **chosen)
    try:
        for name, report in REPORTS.items():
            if names and name not in names:
                continue
            figures: dict[str, list[tuple[float, float, float]]] = {"fast": [], "live": []}
            answers: dict[str, Any] = {}
            for index in range(2 * (reads + 1)):
                path = "fast" if index % 2 == 0 else "live"
                async with sessions() as session, session.begin():
                    backend = int(
                        (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                    )
                    db_cpu, own_cpu = cpu_seconds(backend), time.process_time()
                    began = time.perf_counter()
                    if path == "fast":
                        answer = await report(session, filters, now)
                    else:
                        with rollups.live_only():
                            answer = await report(session, filters, now)
                    wall = time.perf_counter() - began
                    db = cpu_seconds(backend) - db_cpu
                    own = time.process_time() - own_cpu
                answers[path] = answer.model_dump()
                if index >= 2:  # the first of each is the warm-up
                    figures[path].append((wall * 1000, db * 1000, own * 1000))
            same = "equal" if answers["fast"] == answers["live"] else "DIFFERENT"
            for path, rows in figures.items():
                walls = sorted(r[0] for r in rows)
                print(
                    f"{name:<18} {path}: wall p50 {statistics.median(walls):7.1f} ms, "
                    f"max {walls[-1]:7.1f} ms; CPU per read: database "
                    f"{statistics.mean(r[1] for r in rows):6.1f} ms, Python "
                    f"{statistics.mean(r[2] for r in rows):6.1f} ms"
                )
            print(f"{name:<18} answers {same}")
    finally:
        await engine.dispose()
    print("load average: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a database filled by `opsflow demo`")
    parser.add_argument("--reads", type=int, default=5, help="timed reads per report and path")
    parser.add_argument("--filter", action="append", default=[], help="name=value")
    parser.add_argument("--report", action="append", default=[], choices=sorted(REPORTS))
    args = parser.parse_args()
    chosen: dict[str, Any] = dict(item.split("=", 1) for item in args.filter)
    if "team_id" in chosen:
        chosen["team_id"] = uuid.UUID(chosen["team_id"])
    print(f"filters: {chosen or 'none'}")
    asyncio.run(run(args.url, args.reads, chosen, args.report))


if __name__ == "__main__":
    main()
