"""Ticket ingestion against a real `opsflow serve`: a 1,000-ticket batch, and a bare baseline.

Creates a scratch database on the PostgreSQL server in DATABASE_URL (or uses SQLite when
DATABASE_URL is unset), starts `opsflow serve` on it (no engine: the batch alone is measured)
and times, over HTTP:

- a batch of N new tickets (`created`), the same batch again (`unchanged`), and the batch
  with a newer `updated_at` and another title (`updated`);
- the baseline: the same N rows written into `tasks` with one bare multi-row INSERT (no
  clocks, audit or events), over the same database;

and prints each time, tickets per second and the ratio to the baseline. Then alert events:
a generic integration receives a trigger for each of K dedup keys (each opens an incident),
then R repeats spread over those keys (each only updates its open incident), sent over
HTTP by C concurrent senders; events per second are printed for both phases. Figures are
printed, never asserted.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/ingest.py
    python bench/ingest.py --tickets 1000 --rounds 3 --alert-keys 10000 --alert-repeats 20000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from _engines import execute, log
from _serve import start_server
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from opsflow import schema
from opsflow.config import Settings
from opsflow.db import create_engine
from opsflow.models.task import Task

ADMIN_PASSWORD = "bench-admin-password-1"


def _tickets(n: int, run: str, minute: int, title: str) -> list[dict[str, Any]]:
    stamp = (datetime(2026, 1, 27, 10, 0, tzinfo=UTC) + timedelta(minutes=minute)).isoformat()
    return [
        {
            "external_id": f"{run}-{i}",
            "title": f"{title} {i}",
            "description": "Customer reports the export hangs at 99 %.",
            "priority": ("P0", "P1", "P2", "P3")[i % 4],
            "customer_tier": ("enterprise", "premium", "standard", "basic")[i % 4],
            "status": "open",
            "tags": ["bench"],
            "updated_at": stamp,
        }
        for i in range(n)
    ]


def _post(client: httpx.Client, headers: dict[str, str], tickets: list[Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    response = client.post("/tickets", json={"tickets": tickets}, headers=headers)
    took = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"batch failed: {response.status_code} {response.text[:500]}")
    return took, response.json()["summary"]


async def _baseline(url: str, n: int, creator: uuid.UUID) -> float:
    engine = create_engine(Settings(database_url=url).database_url)
    now = datetime.now(UTC)
    rows = [
        {
            "id": uuid.uuid4(),
            "title": f"Baseline {i}",
            "description": "Customer reports the export hangs at 99 %.",
            "task_type": "TASK",
            "priority": "HIGH",
            "status": "CREATED",
            "created_by": creator,
            "customer_tier": "STANDARD",
            "start_sla_minutes": 60,
            "resolve_sla_minutes": 480,
            "start_sla_source": "default",
            "resolve_sla_source": "default",
            "start_deadline": now,
            "resolve_deadline": now,
            "tags": ["bench"],
            "metadata_": {},
            "source": "baseline",
            "external_id": f"base-{uuid.uuid4().hex}",
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(n)
    ]
    try:
        started = time.perf_counter()
        async with engine.begin() as connection:
            await connection.execute(insert(Task), rows)
        return time.perf_counter() - started
    finally:
        await engine.dispose()


async def _admin_id(url: str) -> uuid.UUID:
    from sqlalchemy import text

    engine = create_engine(Settings(database_url=url).database_url)
    try:
        async with engine.connect() as connection:
            value = await connection.scalar(text("SELECT id FROM users WHERE username = 'admin'"))
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    finally:
        await engine.dispose()


def _event(key: str, n: int) -> dict[str, Any]:
    return {
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": f"Disk almost full on {key}",
            "severity": ("warning", "error")[n % 2],
            "source": key,
            "custom_details": {"free_percent": n % 10},
        },
    }


async def _send_all(base: str, path: str, bodies: list[dict[str, Any]], senders: int) -> float:
    """Post every body (C at a time); the seconds it took."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            response = await client.post(path, json=body)
            if response.status_code != 202:
                raise SystemExit(f"event failed: {response.status_code} {response.text[:300]}")

    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(sender(client) for _ in range(senders)))
        return time.perf_counter() - started


def _alerts(
    client: httpx.Client, base: str, headers: dict[str, str], keys: int, repeats: int, senders: int
) -> None:
    created = client.post(
        "/integrations", json={"name": "bench", "type": "generic"}, headers=headers
    )
    if created.status_code != 201:
        raise SystemExit(f"integration failed: {created.status_code} {created.text[:300]}")
    path = f"/api/v1/integrations/{created.json()['key']}/events"
    names = [f"host-{i:05d}/disk" for i in range(keys)]
    rng = random.Random(7)
    first = asyncio.run(_send_all(base, path, [_event(k, 0) for k in names], senders))
    again = [_event(rng.choice(names), n) for n in range(1, repeats + 1)]
    second = asyncio.run(_send_all(base, path, again, senders))
    incidents = client.get(
        "/tasks", params={"task_type": "INCIDENT", "page_size": 1}, headers=headers
    ).json()["pagination"]["total_items"]
    log(f"alert events over {keys} dedup keys, {senders} concurrent senders, one process:")
    log(f"  first trigger of each key (opens an incident): {keys / first:.0f} events/s")
    log(f"  {repeats} repeats (deduplicated onto open incidents): {repeats / second:.0f} events/s")
    total = keys + repeats
    log(
        f"  all {total} events: {total / (first + second):.0f} events/s; "
        f"{incidents} incidents open (expected {keys})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--alert-keys", type=int, default=10_000)
    parser.add_argument("--alert-repeats", type=int, default=20_000)
    parser.add_argument("--senders", type=int, default=8)
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="opsflow-bench-ingest-")
    server_url = os.environ.get("DATABASE_URL")
    scratch = None
    if server_url:
        scratch = f"opsflow_bench_ingest_{uuid.uuid4().hex[:8]}"
        admin_url = Settings(database_url=server_url).database_url
        asyncio.run(_create_database(admin_url, scratch))
        url = make_url(admin_url).set(database=scratch).render_as_string(hide_password=False)
    else:
        url = f"sqlite+aiosqlite:///{workdir}/bench.db"
    schema.upgrade(url)
    env = {
        "DATABASE_URL": url,
        "OPSFLOW_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "OPSFLOW_ENGINE_ENABLED": "false",
        "OPSFLOW_LOG_LEVEL": "WARNING",
    }
    process, base = start_server(workdir, env)
    try:
        with httpx.Client(base_url=f"{base}/api/v1", timeout=600) as client:
            token = client.post(
                "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            n = args.tickets
            log(f"database: {make_url(url).get_backend_name()}, batch of {n} tickets")
            created, unchanged, updated = [], [], []
            for round_ in range(args.rounds):
                run = f"r{round_}-{uuid.uuid4().hex[:6]}"
                took, summary = _post(client, headers, _tickets(n, run, 0, "Export hangs"))
                assert summary["created"] == n, summary
                created.append(took)
                took, summary = _post(client, headers, _tickets(n, run, 0, "Export hangs"))
                assert summary["unchanged"] == n, summary
                unchanged.append(took)
                took, summary = _post(client, headers, _tickets(n, run, 5, "Export still hangs"))
                assert summary["updated"] == n, summary
                updated.append(took)
            if args.alert_keys > 0:
                _alerts(client, base, headers, args.alert_keys, args.alert_repeats, args.senders)
        creator = asyncio.run(_admin_id(url))
        baseline = [asyncio.run(_baseline(url, n, creator)) for _ in range(args.rounds)]
    finally:
        process.terminate()
        process.wait(timeout=30)
        if scratch is not None and server_url:
            asyncio.run(_drop_database(Settings(database_url=server_url).database_url, scratch))

    base_time = statistics.median(baseline)
    log(f"bare multi-row INSERT of {n} task rows: median {base_time * 1000:.0f} ms")
    for name, times in (("created", created), ("unchanged", unchanged), ("updated", updated)):
        median = statistics.median(times)
        log(
            f"{name:>9}: median {median * 1000:.0f} ms ({n / median:.0f} tickets/s), "
            f"{median / base_time:.1f}x the bare insert; all: "
            + ", ".join(f"{t * 1000:.0f}" for t in times)
        )


async def _create_database(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        await execute(engine, f'CREATE DATABASE "{name}"')
    finally:
        await engine.dispose()


async def _drop_database(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        await execute(engine, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await engine.dispose()


if __name__ == "__main__":
    main()
