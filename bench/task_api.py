"""Task API latency over real HTTP against a running `opsflow serve`.

Starts a server (embedded SQLite in a temporary folder, or the database in DATABASE_URL),
then drives it from one process with C concurrent clients: create, start, complete and
list tasks, plus GET /health as the bare baseline (routing + middleware + one SELECT 1).
Prints p50/p95/p99 per operation, throughput and the ratio to the baseline.

    python bench/task_api.py --tasks 500 --concurrency 10
    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1/bench python bench/task_api.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import httpx
from _serve import start_server

PASSWORD = "Bench-Admin-Pass-1"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(base: str, tasks: int, concurrency: int) -> None:
    timings: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", limits=limits, timeout=30) as http:
        login = await http.post("/auth/login", json={"username": "admin", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        semaphore = asyncio.Semaphore(concurrency)

        async def timed(name: str, call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
            async with semaphore:
                started = time.perf_counter()
                response = await call()
                timings[name].append((time.perf_counter() - started) * 1000)
                if response.status_code >= 400:
                    errors[name] += 1
                return response

        async def lifecycle(index: int) -> None:
            created = await timed(
                "POST /tasks",
                lambda: http.post(
                    "/tasks",
                    json={
                        "title": f"bench task {index}",
                        "task_type": "INCIDENT",
                        "priority": "HIGH",
                        "tags": ["bench"],
                    },
                    headers=headers,
                ),
            )
            task_id = created.json()["id"]
            await timed(
                "PATCH start", lambda: http.patch(f"/tasks/{task_id}/start", headers=headers)
            )
            await timed("GET /tasks/{id}", lambda: http.get(f"/tasks/{task_id}", headers=headers))
            await timed(
                "PATCH complete",
                lambda: http.patch(f"/tasks/{task_id}/complete", json={}, headers=headers),
            )
            await timed(
                "GET /tasks?page_size=20",
                lambda: http.get(
                    "/tasks", params={"page_size": 20, "sort": "deadline"}, headers=headers
                ),
            )
            await timed("GET /health (baseline)", lambda: http.get(f"{base}/health"))

        started = time.perf_counter()
        await asyncio.gather(*(lifecycle(i) for i in range(tasks)))
        elapsed = time.perf_counter() - started

    baseline = statistics.median(timings["GET /health (baseline)"])
    total = sum(len(v) for v in timings.values())
    print(
        f"{tasks} task lifecycles, concurrency {concurrency}: {total} requests in {elapsed:.1f} s "
        f"({total / elapsed:.0f} req/s)"
    )
    header = ("operation", "n", "p50 ms", "p95 ms", "p99 ms", "x base", "errors")
    print(f"{header[0]:28} " + " ".join(f"{h:>8}" for h in header[1:]))
    for name, values in timings.items():
        ratio = statistics.median(values) / baseline
        cells = (pct(values, 0.5), pct(values, 0.95), pct(values, 0.99), ratio)
        print(
            f"{name:28} {len(values):8d} "
            + " ".join(f"{c:8.1f}" for c in cells)
            + f" {errors[name]:8d}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        env = {"OPSFLOW_ADMIN_PASSWORD": PASSWORD}
        if os.environ.get("DATABASE_URL"):
            env["DATABASE_URL"] = os.environ["DATABASE_URL"]
        process, base = start_server(workdir, env)
        try:
            print(f"database: {os.environ.get('DATABASE_URL', 'embedded SQLite')}")
            asyncio.run(run(base, args.tasks, args.concurrency))
        finally:
            process.terminate()
            process.wait(timeout=15)


if __name__ == "__main__":
    main()
