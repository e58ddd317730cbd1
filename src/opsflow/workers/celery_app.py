"""Celery driver of the SLA engine: `opsflow beat` sends a tick, `opsflow worker` runs it.

The scaled-out run mode: any number of ``opsflow worker`` processes and one
``opsflow beat`` share a Redis broker (``OPSFLOW_CELERY_BROKER_URL``, else
``CELERY_BROKER_URL``, else ``REDIS_URL``). Beat sends one job, ``opsflow.sla.engine_tick``,
every ``OPSFLOW_ENGINE_INTERVAL_SECONDS``. A worker that receives it runs engine rounds back
to back (``workers.rounds.run_round`` over every registered engine: the same round, metrics
and log lines as the loop inside ``opsflow serve``) until a round has no backlog, or the
tick's budget (``TICK_MAX_ROUNDS`` rounds, ``TICK_MAX_SECONDS`` seconds) is spent; the next
tick continues. Each worker process records a heartbeat (driver ``celery``) for ``/health``.

**SLA timers are never Celery ETA/countdown jobs.** The tick only asks the database which
clocks are due (``next_fire_at <= now``). PostgreSQL stays the one source of truth for every
timer: nothing to reschedule when a task is paused, re-prioritised or completed, nothing lost
when Redis is flushed. ETA jobs would be worse on every count: a worker holds them in memory
until they are due (millions of open clocks would not fit), and on Redis a message that is
not acknowledged within the visibility timeout is redelivered to another worker, so a
far-future ETA job is handed out again and again.

Delivery: ticks carry no data and every pass claims its rows with ``FOR UPDATE SKIP LOCKED``
on PostgreSQL (the SLA pass in one transaction, with a unique constraint per (clock, event
type)).
A lost, duplicated or concurrent tick therefore loses or doubles nothing:

* ``acks_late`` stays off. A tick acknowledged and then killed mid-pass rolls its transaction
  back and the next tick (one interval later) claims the same clocks again; ``acks_late``
  would only have Redis redeliver the killed tick after its visibility timeout (an hour),
  long after it expired: pointless.
* Each tick ``expires`` before the next one is sent, so after a worker outage the queued
  backlog is discarded instead of being run one after another. Expiry is an absolute instant
  set by beat and checked by the worker: keep their hosts' clocks in sync (NTP).
* Several beats are harmless (extra ticks cost an empty claim each) but one is enough.

One :class:`EngineRuntime` per worker process keeps a long-lived AppContext (engine,
connection pool, metrics), its engines, its heartbeat and its own asyncio event loop, all
created lazily by the first
tick in that process, i.e. after the prefork pool has forked; every later tick reuses them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown, worker_shutdown

from opsflow.clock import SystemClock
from opsflow.composition import build_context, engine_registry
from opsflow.config import Settings, load_settings
from opsflow.context import AppContext
from opsflow.db import create_engine
from opsflow.observability import tracing
from opsflow.observability.logging import get_logger
from opsflow.workers.contract import Engine
from opsflow.workers.heartbeat import Heartbeat
from opsflow.workers.rounds import run_round

ENGINE_TICK_JOB = "opsflow.sla.engine_tick"
QUEUE = "opsflow"
# A tick drains a backlog for at most this long; the next tick carries on. Short enough that
# a warm shutdown (SIGTERM) waits seconds, not minutes.
TICK_MAX_ROUNDS = 100
TICK_MAX_SECONDS = 10.0
# The prefork pool kills a child whose tick runs longer (a pass stuck on the database); its
# transaction rolls back and a fresh child takes the next tick.
TICK_TIME_LIMIT_SECONDS = 120
# Share of the interval after which an unstarted tick is dropped (beat sent a newer one).
TICK_EXPIRES_FRACTION = 0.9

log = get_logger("opsflow.engine.celery")


@dataclass(frozen=True)
class TickSummary:
    """What one tick did: returned by the job (and so in the worker's log at DEBUG)."""

    rounds: int
    failed_rounds: int
    counts: dict[str, dict[str, int]]  # per engine, its counts summed over the rounds
    stopped: str  # "idle": a round had no backlog; "budget": rounds or time ran out; "failed"
    duration_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "failed_rounds": self.failed_rounds,
            "counts": self.counts,
            "stopped": self.stopped,
            "duration_seconds": self.duration_seconds,
        }


async def engine_tick(
    ctx: AppContext,
    engines: Iterable[Engine],
    *,
    heartbeat: Heartbeat | None = None,
    batch: int | None = None,
    max_rounds: int = TICK_MAX_ROUNDS,
    max_seconds: float = TICK_MAX_SECONDS,
) -> TickSummary:
    """Rounds back to back until one has no backlog, one fails, or the budget is spent.

    A failed round (its passes already logged and counted) ends the tick: the next tick
    retries it.
    """
    engines = tuple(engines)
    started = time.monotonic()
    rounds = 0
    counts: dict[str, dict[str, int]] = {}
    while True:
        done = await run_round(ctx, engines, batch=batch, heartbeat=heartbeat)
        rounds += 1
        for report in done.passes:
            sums = counts.setdefault(report.name, {})
            for key, value in report.counts.items():
                sums[key] = sums.get(key, 0) + value
        if done.failed:
            stopped = "failed"
            break
        if not done.backlog:
            stopped = "idle"
            break
        if rounds >= max_rounds or time.monotonic() - started >= max_seconds:
            stopped = "budget"
            break
    summary = TickSummary(
        rounds=rounds,
        failed_rounds=1 if stopped == "failed" else 0,
        counts=counts,
        stopped=stopped,
        duration_seconds=round(time.monotonic() - started, 6),
    )
    if stopped == "budget":
        log.warning("engine_tick_budget_spent", **summary.as_dict())
    return summary


class EngineRuntime:
    """One worker process's long-lived state: its AppContext and its asyncio event loop.

    Built by the first job that runs in a process. A process that finds state created by
    another pid (inherited through fork) starts afresh and leaves the parent's alone: the
    parent's connections belong to the parent's event loop.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engines = tuple(engine_registry(settings))
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ctx: AppContext | None = None
        self._heartbeat: Heartbeat | None = None

    def tick(self) -> TickSummary:
        """One engine tick in this process (its context and heartbeat made on first use)."""
        loop, ctx = self._ensure()
        return loop.run_until_complete(engine_tick(ctx, self.engines, heartbeat=self._heartbeat))

    def _ensure(self) -> tuple[asyncio.AbstractEventLoop, AppContext]:
        if self._pid != os.getpid() or self._loop is None or self._ctx is None:
            self._loop = asyncio.new_event_loop()
            self._ctx = build_context(self.settings, SystemClock())
            self._heartbeat = Heartbeat(
                driver="celery",
                passes=[engine.name for engine in self.engines],
                interval=self.settings.engine_interval_seconds,
            )
            self._pid = os.getpid()
            log.info("worker_context_ready", pid=self._pid, database=self._ctx.engine.dialect.name)
        return self._loop, self._ctx

    def close(self) -> None:
        """Remove this process's heartbeat, dispose of its pool and close its loop (no-op
        if it has none)."""
        if self._pid != os.getpid() or self._loop is None or self._ctx is None:
            return
        loop, ctx, heartbeat = self._loop, self._ctx, self._heartbeat
        self._loop = self._ctx = self._pid = self._heartbeat = None
        try:
            if heartbeat is not None:
                loop.run_until_complete(heartbeat.stop(ctx))
            loop.run_until_complete(ctx.close())
        finally:
            loop.close()


async def database_state(settings: Settings) -> str:
    """``current``, ``not_current`` (run ``opsflow migrate``) or ``unavailable``.

    Checked by ``opsflow worker`` before it starts: like ``opsflow engine``, a worker never
    migrates (many start at once) and refuses a schema it was not built for.
    """
    from opsflow import schema  # alembic: imported only when a worker starts

    engine = create_engine(settings.database_url, **settings.engine_options())
    try:
        async with engine.connect() as connection:
            current = bool(await connection.run_sync(schema.is_current))
    except Exception:
        log.exception("database_unavailable")
        return "unavailable"
    finally:
        await engine.dispose()
    return "current" if current else "not_current"


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    interval = settings.engine_interval_seconds
    return {
        "sla-engine-tick": {
            "task": ENGINE_TICK_JOB,
            "schedule": interval,
            "options": {"expires": interval * TICK_EXPIRES_FRACTION},
        }
    }


def create_celery_app(settings: Settings | None = None) -> Celery:
    """The Celery app for these settings, with the engine tick job and its beat schedule."""
    settings = settings or load_settings()
    broker = settings.celery_broker_url
    app = Celery("opsflow", broker=broker, set_as_current=False)
    app.conf.update(
        # Celery lets a CELERY_BROKER_URL variable override `broker`; the read/write URLs
        # win over both, so the precedence of the OpsFlow setting is the one that holds.
        broker_read_url=broker,
        broker_write_url=broker,
        task_default_queue=QUEUE,
        task_ignore_result=True,  # no result backend: the job's effect is in the database
        task_acks_late=False,  # see the module docstring: redelivery would add nothing
        worker_prefetch_multiplier=1,  # do not hoard ticks that will expire anyway
        worker_redirect_stdouts=False,  # structlog writes its JSON lines to stderr itself
        broker_connection_retry_on_startup=True,
        enable_utc=True,
        timezone="UTC",
        beat_schedule=beat_schedule(settings),
    )
    if tracing.setup(settings):
        tracing.instrument_celery()
    runtime = EngineRuntime(settings)

    def sla_engine_tick() -> dict[str, Any]:
        return runtime.tick().as_dict()

    app.task(name=ENGINE_TICK_JOB, time_limit=TICK_TIME_LIMIT_SECONDS)(sla_engine_tick)

    def close_runtime(**_: Any) -> None:
        runtime.close()

    # Prefork children get worker_process_shutdown; the solo pool's only process gets
    # worker_shutdown. close() is idempotent and only touches this process's own state.
    worker_process_shutdown.connect(close_runtime, weak=False)
    worker_shutdown.connect(close_runtime, weak=False)
    return app


def __getattr__(name: str) -> Any:
    # `celery -A opsflow.workers.celery_app inspect ping` (health checks) finds `app` here,
    # built from the environment on first use rather than at import.
    if name == "app":
        app = create_celery_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)
