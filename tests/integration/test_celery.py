"""The Celery driver of the SLA engine: a real `opsflow worker` and `opsflow beat`.

A task is created through the API with the settable clock hours in the past, so its clocks
are overdue the moment it exists; then a real worker and a real beat (both on the real
clock, sharing a Redis broker) must fire every overdue threshold exactly once. Nothing
sleeps for a deadline: the test only polls the database for the worker's commits.

Runs on PostgreSQL when OPSFLOW_TEST_DATABASE_URL is set, on a SQLite file otherwise; the
broker is the Redis database named by OPSFLOW_TEST_REDIS_URL (flushed before and after).
Without it the process test is skipped, or fails under OPSFLOW_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from opsflow.clock import SettableClock
from opsflow.composition import engine_registry
from opsflow.config import Settings
from opsflow.context import AppContext
from opsflow.db import create_engine
from opsflow.models.audit import AuditLog
from opsflow.models.sla import SlaEvent
from opsflow.workers.celery_app import (
    ENGINE_TICK_JOB,
    TICK_EXPIRES_FRACTION,
    TickSummary,
    beat_schedule,
    create_celery_app,
    engine_tick,
)
from tests.conftest import REQUIRE_SERVICES, make_settings
from tests.factories import ALL_PASSES

REDIS_URL = os.environ.get("OPSFLOW_TEST_REDIS_URL")
ENGINE_INTERVAL = 0.5
STARTED_AGO = timedelta(hours=3)  # far past both deadlines below (15 and 120 minutes)
INCIDENT = {
    "title": "Payment API returns 502",
    "task_type": "INCIDENT",
    "priority": "CRITICAL",
    "start_sla_minutes": 15,
    "resolve_sla_minutes": 120,
}
ALL_THRESHOLDS = {
    f"{kind}_{level}"
    for kind in ("START", "RESOLVE")
    for level in ("WARNING", "CRITICAL", "BREACH")
}


@pytest.fixture
def clock() -> SettableClock:
    # The worker runs on the real clock; this test's API calls happen hours before it.
    return SettableClock(datetime.now(UTC) - STARTED_AGO)


async def _create_task(client: httpx.AsyncClient, headers: dict[str, str]) -> uuid.UUID:
    response = await client.post("/tasks", json=INCIDENT, headers=headers)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def _events(db: AsyncEngine, task_id: uuid.UUID) -> list[tuple[str, str]]:
    """(event type, id) of the task's SLA events."""
    async with db.connect() as connection:
        rows = await connection.execute(
            select(SlaEvent.event_type, SlaEvent.id).where(SlaEvent.task_id == task_id)
        )
        return [(str(event_type), str(event_id)) for event_type, event_id in rows]


# --- configuration and the tick itself (no broker needed) ---


def test_beat_sends_one_tick_per_interval_that_expires_before_the_next() -> None:
    settings = make_settings("sqlite+aiosqlite:///unused.db", engine_interval_seconds=2.5)
    (entry,) = beat_schedule(settings).values()
    assert entry["task"] == ENGINE_TICK_JOB
    assert entry["schedule"] == 2.5
    assert 0 < entry["options"]["expires"] < 2.5
    assert entry["options"]["expires"] == 2.5 * TICK_EXPIRES_FRACTION
    # No ETA anywhere: the schedule is a plain interval and the job takes no arguments.
    assert "eta" not in entry["options"]
    assert "countdown" not in entry["options"]
    assert "args" not in entry


def test_app_uses_the_broker_setting_and_never_acks_late(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPSFLOW_CELERY_BROKER_URL", "CELERY_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://redis.internal:6379/3")
    assert Settings().celery_broker_url == "redis://redis.internal:6379/3"
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://broker.internal:6379/4")
    assert Settings().celery_broker_url == "redis://broker.internal:6379/4"
    monkeypatch.setenv("OPSFLOW_CELERY_BROKER_URL", "redis://opsflow.internal:6379/5")
    settings = make_settings("sqlite+aiosqlite:///unused.db")
    assert settings.celery_broker_url == "redis://opsflow.internal:6379/5"

    app = create_celery_app(settings)
    with app.connection_for_write() as write, app.connection_for_read() as read:
        assert write.hostname == read.hostname == "opsflow.internal"
        assert write.virtual_host == read.virtual_host == "5"
    assert app.conf.task_acks_late is False
    assert ENGINE_TICK_JOB in app.tasks


async def test_tick_drains_full_batches_back_to_back_within_its_budget(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
    database_url: str,
) -> None:
    for _ in range(3):
        await _create_task(client, admin_headers)
    clock.advance(STARTED_AGO)  # six clocks, every threshold overdue

    # Every registered engine, the SLA engine claiming two clocks per pass.
    engines = engine_registry(app_context.settings.model_copy(update={"engine_batch_size": 2}))

    def sla(summary: TickSummary) -> tuple[int, int]:
        return summary.counts["sla"]["clocks"], summary.counts["sla"]["events"]

    budget = await engine_tick(app_context, engines, max_rounds=2)
    assert (budget.rounds, *sla(budget), budget.stopped) == (2, 4, 12, "budget")

    rest = await engine_tick(app_context, engines)
    assert (rest.rounds, *sla(rest), rest.stopped) == (2, 2, 6, "idle")
    assert rest.failed_rounds == 0
    assert rest.as_dict()["counts"]["sla"]["events"] == 6
    # The same round as every driver: the relay, escalation and delivery passes ran too.
    assert set(rest.counts) == set(ALL_PASSES)

    idle = await engine_tick(app_context, engines)
    assert (idle.rounds, *sla(idle), idle.stopped) == (1, 0, 0, "idle")
    passes = app_context.metrics.registry.get_sample_value(
        "opsflow_sla_engine_passes_total", {"outcome": "ok"}
    )
    assert passes == 5  # every SLA pass of every round was counted


# --- a real worker and a real beat ---


@pytest.fixture
def redis_url() -> Iterator[str]:
    """OPSFLOW_TEST_REDIS_URL's database, empty before and after the test."""
    if not REDIS_URL:
        if REQUIRE_SERVICES:
            pytest.fail("OPSFLOW_REQUIRE_SERVICES=1 but OPSFLOW_TEST_REDIS_URL is not set")
        pytest.skip("needs Redis: set OPSFLOW_TEST_REDIS_URL")
    import redis

    connection = redis.Redis.from_url(REDIS_URL)
    try:
        connection.flushdb()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not usable: {exc}")
    try:
        yield REDIS_URL
    finally:
        connection.flushdb()
        connection.close()


@dataclass
class Process:
    name: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def report(self, limit: int = 6000) -> str:
        out = self.stdout.read_text(errors="replace")[-limit:]
        err = self.stderr.read_text(errors="replace")[-limit:]
        return (
            f"--- opsflow {self.name} (pid {self.process.pid}, exit {self.process.returncode})"
            f"\nstdout:\n{out}\nstderr:\n{err}"
        )


class Processes:
    """The test's processes; whatever is still running at the end is killed."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.all: list[Process] = []

    def start(self, name: str, *args: str) -> Process:
        stdout = self.workdir / f"{name}.out"
        stderr = self.workdir / f"{name}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "opsflow", name, *args],
                cwd=self.workdir,  # no stray .env is picked up
                env=self.env,
                stdout=out,
                stderr=err,
            )
        started = Process(name, process, stdout, stderr)
        self.all.append(started)
        return started

    def report(self) -> str:
        return "\n".join(p.report() for p in self.all)

    def check_running(self) -> None:
        for p in self.all:
            if p.process.poll() is not None:
                raise AssertionError(f"opsflow {p.name} exited early\n{self.report()}")

    def terminate(self, timeout: float = 30) -> None:
        """SIGTERM (a warm shutdown for the worker, a schedule sync for beat), then wait."""
        for p in self.all:
            if p.process.poll() is None:
                p.process.send_signal(signal.SIGTERM)
        for p in self.all:
            try:
                p.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.process.kill()
                p.process.wait(timeout=timeout)
                raise AssertionError(
                    f"opsflow {p.name} ignored SIGTERM for {timeout} s\n{self.report()}"
                ) from None

    def kill_all(self) -> None:
        for p in self.all:
            if p.process.poll() is None:
                p.process.kill()
                p.process.wait(timeout=10)


@pytest.fixture
def processes(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[Processes]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"CELERY_BROKER_URL", "REDIS_URL", "DATABASE_URL"}
        and not key.startswith("OPSFLOW_")
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "OPSFLOW_CELERY_BROKER_URL": redis_url,
            "OPSFLOW_ENGINE_INTERVAL_SECONDS": str(ENGINE_INTERVAL),
            "OPSFLOW_DATA_DIR": str(tmp_path / "data"),
            "LOG_LEVEL": "INFO",  # the worker's `sla_pass` lines are part of the evidence
        }
    )
    started = Processes(tmp_path, env)
    try:
        yield started
    finally:
        started.kill_all()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.mark.slow
async def test_worker_and_beat_fire_overdue_thresholds_exactly_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    db: AsyncEngine,
    processes: Processes,
    tmp_path: Path,
) -> None:
    task_id = await _create_task(client, admin_headers)
    assert await _events(db, task_id) == []  # committed, overdue, and nothing fired it yet

    worker = processes.start("worker", "--concurrency", "1")
    beat = processes.start("beat", "--schedule-file", str(tmp_path / "beat" / "schedule"))

    # Poll for the worker's commits (bounded); no deadline is waited for.
    deadline = time.monotonic() + 60
    while True:
        found = {event_type for event_type, _ in await _events(db, task_id)}
        if {"START_BREACH", "RESOLVE_BREACH"} <= found:
            break
        processes.check_running()
        if time.monotonic() > deadline:
            raise AssertionError(f"no breach after 60 s (found {found})\n{processes.report()}")
        await asyncio.sleep(0.2)
    # A few more ticks run meanwhile: they must find nothing more to fire.
    ticks_later = time.monotonic() + 4 * ENGINE_INTERVAL
    while time.monotonic() < ticks_later:
        processes.check_running()
        await asyncio.sleep(0.2)

    processes.terminate()
    report = processes.report()
    assert worker.process.returncode == 0, report
    assert beat.process.returncode == 0, report

    events = await _events(db, task_id)
    # The START breach of a task nobody answered escalates to an admin (no team lead): the
    # relay and the escalation engine run in the same tick, once.
    escalations = [event for event in events if event[0] == "ESCALATION"]
    assert len(escalations) == 1, f"{events}\n{report}"
    events = [event for event in events if event[0] != "ESCALATION"]
    types = [event_type for event_type, _ in events]
    assert sorted(types) == sorted(set(types)), f"a threshold fired twice: {types}\n{report}"
    assert set(types) == ALL_THRESHOLDS, f"{types}\n{report}"  # catch-up records them all

    async with db.connect() as connection:
        audited = dict(
            (
                await connection.execute(
                    select(AuditLog.action, func.count())
                    .where(AuditLog.entity_id == task_id, AuditLog.action.like("SLA\\_%", "\\"))
                    .group_by(AuditLog.action)
                )
            ).all()
        )
        audit_event_ids = {
            str(row[0]["sla_event_id"])
            for row in await connection.execute(
                select(AuditLog.metadata_).where(
                    AuditLog.entity_id == task_id, AuditLog.action.like("SLA\\_%", "\\")
                )
            )
        }
    assert audited == {f"SLA_{t}": 1 for t in ALL_THRESHOLDS}, f"{audited}\n{report}"
    assert audit_event_ids == {event_id for _, event_id in events}, report
    assert '"sla_pass"' in worker.stderr.read_text(), f"the worker did not log its pass\n{report}"
