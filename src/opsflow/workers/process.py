"""``opsflow engine``: the engines as a process of their own (any number side by side).

Each process runs rounds of the selected passes (`workers/rounds.run_round`, the same round
as the loop inside ``opsflow serve`` and the Celery job) until it is stopped, or — with
``--until-idle`` — until a round in which no selected pass took anything, or — with
``--once`` — after one round. The command and its options are in `opsflow.cli`; this module
is the loop and its output. A looping process whose passes include the relay waits at most
its interval between rounds: a commit that wrote outbox events wakes it at once (its own
commits directly; other processes' through PostgreSQL notifications on a listening
connection of its own, see `events/wake.py`).

Output: stdout carries one JSON object per line, for machines (tests, benchmarks):

* ``{"event": "<name>_pass", ...}`` for every pass that took something, with its counts
  (``sla``: clocks, events; ``relay``: events, failed; ``escalation``: steps, fired;
  ``delivery``: claimed, sent, failed), ``pid``, ``round``, ``backlog``, ``started_at`` (the
  clock reading the pass acted at: every SLA event's ``triggered_at``), ``committed_at``
  (wall clock right after it returned, so ``committed_at - due_at`` bounds the lateness of
  persistence), ``duration_seconds`` and, for the SLA pass, ``max_lag_seconds``;
* ``{"event": "engine_exit", ...}`` once, on exit: ``reason`` (``idle``, ``once``,
  ``stopped``, ``failures``, ``database_unavailable``, ``schema_not_current``), ``rounds``,
  ``failed_rounds``, the lateness totals, ``elapsed_seconds`` and ``cpu_seconds`` (wall and
  CPU time of the process since its rounds began) and per selected pass its counts summed.

Logs (failures with their traceback) go to stderr. SIGTERM or SIGINT: the pass in flight
finishes (and commits), then the process exits with status 0; a second signal abandons the
pass (its transaction rolls back). A round fails when any of its passes raised (the rest of
the round still runs). Exit status 1: rounds kept failing (``--once``: its round failed;
otherwise ``--max-failures`` consecutive failed rounds) or the database could not be
reached at start. Exit status 2: bad configuration or a database not migrated to the
current schema (the engine never migrates, so that many can start at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from opsflow.clock import SystemClock
from opsflow.composition import build_context
from opsflow.config import Settings
from opsflow.context import AppContext
from opsflow.observability.logging import get_logger
from opsflow.observability.metrics import serve_process_metrics
from opsflow.workers.contract import EngineRegistry, PassReport
from opsflow.workers.heartbeat import Heartbeat
from opsflow.workers.rounds import Cadence, RoundReport, Waker, run_round

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
DEFAULT_MAX_FAILURES = 5

log = get_logger("opsflow.engine.process")


@dataclass(frozen=True)
class Options:
    engines: EngineRegistry  # the selected passes, in round order
    interval: float
    once: bool = False
    until_idle: bool = False
    max_failures: int | None = None  # consecutive failed rounds before giving up; None: never
    batch: int | None = None  # every selected pass's batch; None: each engine's own


@dataclass
class Totals:
    """What this process did, for the exit summary."""

    rounds: int = 0
    failed_rounds: int = 0
    lags: int = 0
    max_lag_seconds: float = 0.0
    lag_sum_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)
    # CPU time of this process (all threads) when its rounds began: start-up not counted.
    cpu_started: float = field(default_factory=time.process_time)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # per pass, summed

    def add(self, report: PassReport) -> None:
        sums = self.counts.setdefault(report.name, {})
        for key, value in report.counts.items():
            sums[key] = sums.get(key, 0) + value
        for _, lag in report.lags:
            self.lags += 1
            self.lag_sum_seconds += lag
            self.max_lag_seconds = max(self.max_lag_seconds, lag)


class EngineProcess:
    def __init__(self, ctx: AppContext, options: Options, out: TextIO) -> None:
        self.ctx = ctx
        self.options = options
        self.out = out
        self.totals = Totals()
        self.heartbeat = Heartbeat(
            driver="engine", passes=options.engines.names, interval=options.interval
        )
        self.stopping = asyncio.Event()
        self._current: asyncio.Task[RoundReport] | None = None

    def request_stop(self) -> None:
        """First signal: finish the pass in flight. Second: abandon it (it rolls back)."""
        if self.stopping.is_set():
            if self._current is not None and not self._current.done():
                self._current.cancel()
            return
        self.stopping.set()

    async def run(self) -> int:
        # A looping process is woken by commits that wrote outbox rows (`Waker`).
        looping = not (self.options.once or self.options.until_idle)
        waker = Waker(self.ctx, self.options.engines if looping else ())
        waker.start()
        try:
            return await self._run(waker)
        finally:
            await waker.stop()
            await self.heartbeat.stop(self.ctx)

    async def _run(self, waker: Waker) -> int:
        consecutive_failures = 0
        reason, status = "stopped", EXIT_OK
        # Once and until-idle runs run every engine in every round; only a loop is woken.
        cadence = Cadence(self.options.engines, self.options.interval, self.ctx.clock)
        while not self.stopping.is_set():
            waker.round_starts()
            done = await self._round(cadence.next_round())
            if done is None:  # abandoned by a second signal
                break
            if done.failed:
                consecutive_failures += 1
                self.totals.failed_rounds += 1
                limit = self.options.max_failures
                if limit is not None and consecutive_failures >= limit:
                    reason, status = "failures", EXIT_FAILED
                    break
                await self._pause(self.options.interval)
                cadence.waited(False)  # the next round runs every engine
                continue
            consecutive_failures = 0
            self.totals.rounds += 1
            if self.options.once:
                reason = "once"
                break
            if self.options.until_idle:
                if not done.worked:
                    reason = "idle"
                    break
                continue  # draining: back to back until a round finds nothing
            wait = cadence.after(done)
            if wait is not None:
                cadence.waited(await waker.wait(self.stopping, wait))
        self.emit_exit(reason)
        return status

    async def _round(self, engines: EngineRegistry) -> RoundReport | None:
        """One round of `engines`, as the task a second signal cancels."""
        self._current = asyncio.create_task(
            run_round(
                self.ctx,
                engines,
                batch=self.options.batch,
                heartbeat=self.heartbeat,
                on_pass=self._on_pass,
                should_stop=self.stopping.is_set,
            )
        )
        try:
            return await self._current
        except asyncio.CancelledError:
            return None
        finally:
            self._current = None

    def _on_pass(self, report: PassReport) -> None:
        self.totals.add(report)
        if not report.worked:
            return
        record: dict[str, Any] = {
            "event": f"{report.name}_pass",
            "pid": os.getpid(),
            "round": self.totals.rounds + 1,
            **report.counts,
            "backlog": report.backlog,
            "started_at": report.at.isoformat() if report.at else None,
            "committed_at": self.ctx.clock.now().isoformat(),
            "duration_seconds": round(report.duration_seconds, 6),
        }
        if report.lags:
            record["max_lag_seconds"] = round(report.max_lag_seconds, 6)
        self._write(record)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    def _write(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.out.flush()

    def emit_exit(self, reason: str) -> None:
        totals = self.totals
        mean = totals.lag_sum_seconds / totals.lags if totals.lags else 0.0
        self._write(
            {
                "event": "engine_exit",
                "pid": os.getpid(),
                "reason": reason,
                "rounds": totals.rounds,
                "failed_rounds": totals.failed_rounds,
                "max_lag_seconds": round(totals.max_lag_seconds, 6),
                "mean_lag_seconds": round(mean, 6),
                "elapsed_seconds": round(time.monotonic() - totals.started, 3),
                "cpu_seconds": round(time.process_time() - totals.cpu_started, 3),
                "passes_selected": list(self.options.engines.names),
                **{name: totals.counts.get(name, {}) for name in self.options.engines.names},
            }
        )


async def _schema_is_current(ctx: AppContext) -> bool:
    from opsflow import schema  # alembic: imported only once the process has started

    async with ctx.engine.connect() as connection:
        return bool(await connection.run_sync(schema.is_current))


async def serve(settings: Settings, options: Options, out: TextIO = sys.stdout) -> int:
    ctx = build_context(settings, SystemClock())
    stop_metrics = None
    if settings.metrics_port is not None:  # this process's instruments on a port of its own
        stop_metrics = serve_process_metrics(
            settings.metrics_port, settings.metrics_host, ctx.metrics.exposed
        )
    try:
        process = EngineProcess(ctx, options, out)
        try:
            current = await _schema_is_current(ctx)
        except Exception:
            log.exception("database_unavailable")
            process.emit_exit("database_unavailable")
            return EXIT_FAILED
        if not current:
            log.error("schema_not_current", hint="run `opsflow migrate` (or serve) first")
            process.emit_exit("schema_not_current")
            return EXIT_CONFIG
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, process.request_stop)
        try:
            log.info(
                "started",
                pid=os.getpid(),
                database=ctx.engine.dialect.name,
                passes=",".join(options.engines.names),
                batch=options.batch,
                interval=options.interval,
                mode="once" if options.once else "until-idle" if options.until_idle else "loop",
            )
            return await process.run()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    finally:
        if stop_metrics is not None:
            stop_metrics()
        await ctx.close()
