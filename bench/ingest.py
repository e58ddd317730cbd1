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
HTTP by C concurrent senders; events per second are printed for both phases. The senders are
`wrk` (installed from Debian if missing; 2 threads, C connections), so the load generator
takes little of the machine's CPU; ``--load python`` sends from Python client processes
instead. Figures are printed, never asserted.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/ingest.py
    python bench/ingest.py --tickets 1000 --rounds 3 --alert-keys 10000 --alert-repeats 20000
    python bench/ingest.py --rounds 0 --load python --clients 2 --senders 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from _engines import execute, log
from _serve import backend_pids, process_cpu, start_server
from request_path import LUA, ensure_wrk
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from opsflow import schema
from opsflow.config import Settings
from opsflow.db import create_engine
from opsflow.models.task import Task

ADMIN_PASSWORD = "bench-admin-password-1"
POLL_SECONDS = 1.0


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


def _notification(group: int, size: int) -> dict[str, Any]:
    """An Alertmanager (webhook version 4) notification: a group of `size` firing alerts, the
    whole membership, as Alertmanager re-sends it at every group interval."""
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": "DiskFull", "instance": f"host-{group:04d}-{i:02d}"},
            "annotations": {"summary": f"Disk almost full on host-{group:04d}-{i:02d}"},
            "startsAt": "2026-01-27T10:25:00.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": f"{group:08x}{i:08x}",
        }
        for i in range(size)
    ]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="DiskFull", group="{group}"}}',
        "status": "firing",
        "receiver": "opsflow",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": alerts,
    }


async def _send_async(base: str, path: str, bodies: list[dict[str, Any]], senders: int) -> None:
    """Post every body, `senders` at a time, over keep-alive connections."""
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
        await asyncio.gather(*(sender(client) for _ in range(senders)))


def _client_process(args: tuple[str, str, list[dict[str, Any]], int]) -> None:
    asyncio.run(_send_async(*args))


def _send_wrk(base: str, path: str, bodies: list[dict[str, Any]], connections: int) -> float:
    """Post every body once with wrk (2 threads, `connections` keep-alive connections); the
    seconds from wrk's first request to its last answer. wrk runs for its whole ``-d`` even
    when its threads are done, so the server's count of applied alert requests (its
    metrics, read every POLL_SECONDS) tells when the run is over; wrk is then stopped with SIGINT,
    which makes it print its summary. A failed answer stops the benchmark. (A connection
    whose thread has no body left sends GETs of the path, answered 405 without reaching the
    intake, until the thread's last body is answered.)"""
    threads = 2
    command = [ensure_wrk(), f"-t{threads}", f"-c{connections}", "-d3600s", "--timeout", "60s"]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as file:
        file.writelines(json.dumps(body, separators=(",", ":")) + "\n" for body in bodies)
    applied = _batches(base)[1]
    try:
        process = subprocess.Popen(
            [*command, "-s", str(LUA), base],
            env={**os.environ, "OP": "post", "POST_PATH": path, "BODIES": file.name}
            | {"THREADS": str(threads)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while _batches(base)[1] - applied < len(bodies) and process.poll() is None:
            # Not more often: each scrape also counts tasks, clocks and outbox rows in
            # the database, which would add to the CPU measured per event on both sides.
            time.sleep(POLL_SECONDS)
        time.sleep(0.5)  # the last answers reach wrk, whose threads then note their stop
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        os.unlink(file.name)
    rows = [r for r in out.splitlines() if r.startswith("{")]
    if not rows:
        raise SystemExit(f"wrk failed: {err[-500:]}")
    data = json.loads(rows[0])
    if data["failed"] or data["socket_errors"]:
        raise SystemExit(f"events failed: {out[-500:]}")
    return float(data["duration_us"]) / 1e6


def _send_all(
    base: str, path: str, bodies: list[dict[str, Any]], args: argparse.Namespace
) -> float:
    """Post every body: with wrk, or from `clients` processes of `senders` concurrent
    requests each (the load comes from outside the server); the seconds it took."""
    clients, senders = args.clients, args.senders
    if args.load == "wrk":
        return _send_wrk(base, path, bodies, clients * senders)
    shares = [bodies[i::clients] for i in range(clients)]
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        started = time.perf_counter()
        pool.map(_client_process, [(base, path, share, senders) for share in shares])
        return time.perf_counter() - started


def _database_cpu(url: str) -> float:
    """CPU time the PostgreSQL server processes of the scratch database have used so far
    (their backends, read from /proc: the database must run on this machine). Backends are
    pooled by the server under test, so the same ones serve a whole phase."""
    total = 0.0
    for pid in asyncio.run(backend_pids(url)) if url.startswith("postgresql") else []:
        try:
            total += process_cpu(pid)
        except (FileNotFoundError, PermissionError):
            continue
    return total


def _children_cpu() -> float:
    """CPU time of this process's finished children (the load generator: wrk or the
    client processes)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _py_spy(pid: int, path: str) -> subprocess.Popen[bytes]:
    """py-spy sampling the server until stopped with SIGINT (collapsed stacks in `path`)."""
    beside = Path(sys.executable).parent / "py-spy"
    spy = str(beside) if beside.exists() else "py-spy"
    options = ["--format", "raw", "--rate", "200", "--nonblocking", "--output", path]
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _batches(base: str) -> tuple[float, float]:
    """The server's group commits so far: (count, requests)."""
    text = httpx.get(f"{base}/metrics").text
    values = {}
    for line in text.splitlines():
        for name in ("opsflow_alert_batch_requests_count", "opsflow_alert_batch_requests_sum"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    return (
        values.get("opsflow_alert_batch_requests_count", 0.0),
        values.get("opsflow_alert_batch_requests_sum", 0.0),
    )


def _alerts(
    client: httpx.Client,
    base: str,
    headers: dict[str, str],
    server_pid: int,
    args: argparse.Namespace,
) -> None:
    keys, repeats = args.alert_keys, args.alert_repeats
    created = client.post(
        "/integrations", json={"name": "bench", "type": "generic"}, headers=headers
    )
    if created.status_code != 201:
        raise SystemExit(f"integration failed: {created.status_code} {created.text[:300]}")
    path = f"/api/v1/integrations/{created.json()['key']}/events"
    names = [f"host-{i:05d}/disk" for i in range(keys)]
    rng = random.Random(7)
    phases = [
        ("first trigger of each key (opens an incident)", [_event(k, 0) for k in names]),
        (
            "repeats over the open keys (deduplicated)",
            [_event(rng.choice(names), n) for n in range(1, repeats + 1)],
        ),
    ]
    senders = (
        f"wrk, {args.clients * args.senders} connections"
        if args.load == "wrk"
        else f"{args.clients} client processes x {args.senders} concurrent requests"
    )
    log(f"alert events over {keys} dedup keys: {senders}, one server process:")
    total_events, total_time = 0, 0.0
    for number, (name, bodies) in enumerate(phases):
        cpu, batches = process_cpu(server_pid), _batches(base)
        database, sender = _database_cpu(args.database), _children_cpu()
        spy = _py_spy(server_pid, f"{args.profile}-{number}.txt") if args.profile else None
        took = _send_all(base, path, bodies, args)
        cpu, after = process_cpu(server_pid) - cpu, _batches(base)
        database, sender = _database_cpu(args.database) - database, _children_cpu() - sender
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        count, requests = after[0] - batches[0], after[1] - batches[1]
        log(
            f"  {len(bodies)} {name}: {len(bodies) / took:.0f} events/s; server CPU "
            f"{cpu * 1000 / len(bodies):.2f} ms/event ({len(bodies) / cpu:.0f} events per "
            f"CPU-second); {requests / max(count, 1):.1f} requests per commit; PostgreSQL "
            f"{database * 1000 / len(bodies):.2f} ms/event, load generator "
            f"{sender * 1000 / len(bodies):.2f} ms/event; {os.getloadavg()[0]:.1f} load"
        )
        total_events, total_time = total_events + len(bodies), total_time + took
    incidents = client.get(
        "/tasks", params={"task_type": "INCIDENT", "page_size": 1}, headers=headers
    ).json()["pagination"]["total_items"]
    log(
        f"  all {total_events} events: {total_events / total_time:.0f} events/s; "
        f"{incidents} incidents open (expected {keys})"
    )
    if args.group_size > 0:
        _notifications(client, base, headers, server_pid, args)


def _notifications(
    client: httpx.Client,
    base: str,
    headers: dict[str, str],
    server_pid: int,
    args: argparse.Namespace,
) -> None:
    """The same keys and repeats as Alertmanager sends them: groups of `group_size` alerts
    per notification, each group re-sent whole."""
    size = args.group_size
    groups = max(args.alert_keys // size, 1)
    created = client.post(
        "/integrations", json={"name": "bench-am", "type": "alertmanager"}, headers=headers
    )
    path = f"/api/v1/integrations/{created.json()['key']}/alertmanager"
    rng = random.Random(11)
    phases = [
        ("first notification of each group (opens its incidents)", list(range(groups))),
        (
            "group re-sends (deduplicated)",
            [rng.randrange(groups) for _ in range(max(args.alert_repeats // size, 1))],
        ),
    ]
    log(f"Alertmanager notifications of {size} alerts, {groups} groups ({groups * size} keys):")
    for name, chosen in phases:
        bodies = [_notification(g, size) for g in chosen]
        cpu, batches = process_cpu(server_pid), _batches(base)
        took = _send_all(base, path, bodies, args)
        cpu, after = process_cpu(server_pid) - cpu, _batches(base)
        count, requests = after[0] - batches[0], after[1] - batches[1]
        events = len(bodies) * size
        log(
            f"  {len(bodies)} {name}: {events / took:.0f} alert events/s "
            f"({len(bodies) / took:.0f} requests/s); server CPU {cpu * 1000 / events:.2f} "
            f"ms/event; {requests / max(count, 1):.1f} requests per commit"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--alert-keys", type=int, default=10_000)
    parser.add_argument("--alert-repeats", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument(
        "--group-size", type=int, default=10, help="alerts per Alertmanager notification (0: none)"
    )
    parser.add_argument("--senders", type=int, default=16, help="concurrent requests each")
    parser.add_argument(
        "--profile", help="sample the server with py-spy: collapsed stacks in PREFIX-<phase>.txt"
    )
    parser.add_argument(
        "--load", choices=("wrk", "python"), default="wrk", help="what sends the alert events"
    )
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
    args.database = url
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
                _alerts(client, base, headers, process.pid, args)
        creator = asyncio.run(_admin_id(url))
        baseline = [asyncio.run(_baseline(url, n, creator)) for _ in range(args.rounds)]
    finally:
        process.terminate()
        process.wait(timeout=30)
        if scratch is not None and server_url:
            asyncio.run(_drop_database(Settings(database_url=server_url).database_url, scratch))

    if not baseline:  # --rounds 0: alert events only
        return
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
