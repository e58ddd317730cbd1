"""Shared pieces of the chaos suite: a throw-away PostgreSQL cluster migrated for one test,
`opsflow serve` / `opsflow engine` processes that can be SIGKILLed and started again on the
same port, an SMTP sink that can be stopped and started again on the same port, and a write
load that records every answer.

Every scenario prints its figures (writes acknowledged, found, duplicates, recovery
seconds) and asserts the invariants; the only time bound asserted is the 5 s recovery of the
API after a database restart, which is a requirement of the product.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from opsflow import schema
from opsflow.db import create_engine
from tests.processes import PostgresCluster, free_port, postgres_cluster, stop
from tests.sinks import SmtpSink

ADMIN_PASSWORD = "Chaos-Admin-Pass-1"
READY_SECONDS = 60  # a safety net for a process to come up, not a timing assertion


@dataclass
class Database:
    cluster: PostgresCluster
    url: str
    engine: AsyncEngine


@pytest.fixture
async def chaos_db() -> AsyncIterator[Database]:
    """A database `opsflow` in a throw-away cluster of this test, migrated to head."""
    with postgres_cluster() as cluster:
        admin = create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as connection:
                await connection.execute(text('CREATE DATABASE "opsflow"'))
        finally:
            await admin.dispose()
        url = cluster.url("opsflow")
        await asyncio.to_thread(schema.upgrade, url)
        engine = create_engine(url)
        try:
            yield Database(cluster, url, engine)
        finally:
            await engine.dispose()


def process_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of one process. The per-user request limits are raised far above what
    these tests send: they drive the API as fast as it answers from one admin account, so how
    many requests fit into a kill or an outage depends on the machine's speed, and a limit
    reached there would fail the test for a reason it is not about (the limits have their own
    tests; with Redis away they still count, per process)."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "OPSFLOW_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "OPSFLOW_PASSWORD_TIME_COST": "1",
        "OPSFLOW_PASSWORD_MEMORY_COST_KIB": "1024",
        "LOG_LEVEL": "WARNING",
        "OPSFLOW_RATE_LIMIT_PER_MINUTE": "1000000",
        "OPSFLOW_RATE_LIMIT_WRITES_PER_MINUTE": "1000000",
        **extra,
    }


class Process:
    """One `opsflow` command with its output appended to `workdir/<name>.log`; SIGKILL and
    start again (a server on the same port)."""

    def __init__(self, workdir: Path, name: str, arguments: list[str], env: dict[str, str]) -> None:
        self.workdir = workdir
        self.name = name
        self.arguments = arguments
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "opsflow", *self.arguments],
                cwd=self.workdir,  # no stray .env is picked up
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def sigkill(self) -> None:
        assert self.process is not None
        assert self.process.poll() is None, self.tail()
        self.process.kill()
        self.process.wait(timeout=10)
        self.kills += 1

    def close(self) -> None:
        if self.alive():
            assert self.process is not None
            stop(self.process)

    def tail(self, limit: int = 3000) -> str:
        text_ = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name}\n{text_[-limit:]}"


class Serve(Process):
    """`opsflow serve --no-engine` on a port of its own, kept across restarts."""

    def __init__(self, workdir: Path, name: str, database_url: str, **extra: str) -> None:
        self.port = free_port()
        super().__init__(
            workdir,
            name,
            ["serve", "--port", str(self.port), "--no-engine"],
            process_env(database_url, **extra),
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        super().start()
        deadline = time.monotonic() + READY_SECONDS
        while True:
            assert self.alive(), f"{self.name} exited early\n{self.tail()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/ready", timeout=1).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"{self.name} not ready\n{self.tail()}"
            time.sleep(0.1)  # polling for the server to come up, not waiting on a deadline


@contextlib.contextmanager
def processes() -> Iterator[list[Process]]:
    """Every process appended to the list is ended afterwards; their logs are printed when
    the test fails."""
    started: list[Process] = []
    try:
        yield started
    except BaseException:
        for process in started:
            print(process.tail())
        raise
    finally:
        for process in started:
            process.close()


class RestartableSmtp:
    """The SMTP sink of tests/sinks.py on a fixed loopback port, stopped and started again
    on that same port; what it received survives its restarts."""

    def __init__(self) -> None:
        self.sink = SmtpSink()
        self.port = free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def keys(self) -> list[str]:
        """The idempotency key of every message received (one per delivery)."""
        return [str(r.message["X-OpsFlow-Idempotency-Key"]) for r in self.sink.received]


@pytest.fixture
def smtp_sink() -> Iterator[RestartableSmtp]:
    sink = RestartableSmtp()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@dataclass
class Outcome:
    status: int | None  # None: no answer (the connection failed)
    task_id: str | None
    code: str | None
    at: float  # time.monotonic() of the answer


def _envelope_code(response: httpx.Response) -> str:
    """The error code of an answer in the error envelope; `NOT_AN_ENVELOPE` otherwise."""
    try:
        body = response.json()
        error = body["error"]
        assert set(body) == {"error"}
        assert set(error) >= {"code", "message", "timestamp", "request_id"}
        assert error["request_id"] == response.headers["x-request-id"]
        return str(error["code"])
    except (ValueError, KeyError, TypeError, AssertionError):
        return "NOT_AN_ENVELOPE"


@dataclass
class WriteLoad:
    """Clients creating tasks in a loop through the given API bases (round robin), each
    answer recorded."""

    bases: list[str]
    headers: dict[str, str]
    clients: int = 3
    think: float = 0.0  # seconds a client waits after an acknowledged create
    body: dict[str, Any] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _client(self, number: int) -> None:
        turn = number
        async with httpx.AsyncClient(timeout=30) as client:
            while not self._stop.is_set():
                base = self.bases[turn % len(self.bases)]
                turn += 1
                body = {"title": f"chaos-{uuid.uuid4().hex[:8]}", **self.body}
                try:
                    response = await client.post(
                        f"{base}/api/v1/tasks", json=body, headers=self.headers
                    )
                except httpx.TransportError:
                    self.outcomes.append(Outcome(None, None, None, time.monotonic()))
                    await asyncio.sleep(0.05)  # the instance is down: do not spin
                    continue
                ok = 200 <= response.status_code < 300
                self.outcomes.append(
                    Outcome(
                        response.status_code,
                        response.json()["id"] if ok else None,
                        None if ok else _envelope_code(response),
                        time.monotonic(),
                    )
                )
                # Back off a little after a failure, as a client would.
                await asyncio.sleep(self.think if ok else 0.05)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WriteLoad]:
        tasks = [asyncio.create_task(self._client(n)) for n in range(self.clients)]
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*tasks)

    def acknowledged(self) -> list[str]:
        return [o.task_id for o in self.outcomes if o.task_id is not None]

    def statuses(self) -> dict[int | None, int]:
        counts: dict[int | None, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts

    async def until_acknowledged(self, count: int) -> None:
        """Until `count` more creates than now have been acknowledged."""
        target = len(self.acknowledged()) + count
        async with asyncio.timeout(READY_SECONDS):
            while len(self.acknowledged()) < target:  # noqa: ASYNC110 (the clients are tasks of this loop)
                await asyncio.sleep(0.02)  # polling the load's progress


async def login(
    base: str, username: str = "admin", password: str = ADMIN_PASSWORD
) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{base}/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def missing_writes(db: AsyncEngine, task_ids: list[str]) -> dict[str, list[str]]:
    """Of the acknowledged task ids: those without their row, their two SLA clocks, their
    `task.created` audit row or their `task.created` outbox event."""
    ids = [uuid.UUID(t) for t in task_ids]
    checks = {
        "task": "SELECT id FROM tasks WHERE id = ANY(:ids)",
        "clocks": "SELECT task_id FROM sla_clocks WHERE task_id = ANY(:ids) "
        "GROUP BY task_id HAVING count(*) = 2",
        "audit": "SELECT DISTINCT entity_id FROM audit_logs WHERE entity_id = ANY(:ids) "
        "AND entity_type = 'task'",
        "outbox": "SELECT DISTINCT aggregate_id FROM outbox_events WHERE aggregate_id = ANY(:ids) "
        "AND event_type = 'task.created'",
    }
    missing: dict[str, list[str]] = {}
    async with db.connect() as connection:
        for name, sql in checks.items():
            found = {str(r[0]) for r in await connection.execute(text(sql), {"ids": ids})}
            missing[name] = sorted(set(task_ids) - found)
    return missing


async def half_writes(db: AsyncEngine) -> int:
    """Tasks in the database (acknowledged or not) missing their clocks, audit row or
    outbox event: a create is all or nothing."""
    async with db.connect() as connection:
        ids = [str(r[0]) for r in await connection.execute(text("SELECT id FROM tasks"))]
    missing = await missing_writes(db, ids)
    return len({t for values in missing.values() for t in values})
