"""The SLA engine as its own process: scale out by starting more of them, no broker needed.

    python -m opsflow.workers.standalone [--batch N] [--interval S] [--once] [--until-idle]

Settings come from the environment like every other OpsFlow process (``DATABASE_URL``,
``OPSFLOW_ENGINE_BATCH_SIZE``, ``OPSFLOW_ENGINE_INTERVAL_SECONDS``, ``LOG_LEVEL``, ...). The
schema must already be migrated (``opsflow serve`` or ``opsflow migrate`` does it); the engine
never migrates, so that many engines can start at once.

Any number of these processes may run side by side, with or without the engines embedded in
``opsflow serve``: each pass claims its clocks with ``FOR UPDATE SKIP LOCKED`` and commits
everything it fired in one transaction, so a process killed at any instant leaves nothing
half-done and another engine picks its clocks up.

Loop: a full batch means more may be due, so the next pass starts at once; otherwise the
process waits ``--interval`` seconds. ``--until-idle`` drains instead: passes run back to back
and the process exits after the first pass that claims nothing. ``--once`` runs one pass.

Output: stdout carries one JSON object per line, for machines (tests, benchmarks):

* ``{"event": "sla_pass", ...}`` for every pass that fired something: clocks, events,
  ``max_lag_seconds`` (due instant -> the pass's clock reading, which is every event's
  ``triggered_at``), ``started_at`` (that reading) and ``committed_at`` (wall clock right after
  the commit returned, so ``committed_at - due_at`` bounds the lateness of persistence);
* ``{"event": "sla_engine_exit", ...}`` once, on exit, with the totals and the reason
  (``idle``, ``once``, ``stopped``, ``failures``, ``database_unavailable``,
  ``schema_not_current``).

Logs (failures with their traceback) go to stderr. SIGTERM or SIGINT: the pass in flight
finishes and commits, then the process exits with status 0; a second signal abandons the
pass (its transaction rolls back). Exit status 1: the run stopped because passes kept failing
(``--once``: its pass failed; ``--until-idle``: ``--max-failures`` consecutive failures) or
the database could not be reached at start (a supervisor restarts the process).
Exit status 2: bad configuration or a database that is not migrated to the current schema.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from opsflow.clock import Clock, SystemClock
from opsflow.config import ConfigError, Settings, load_settings
from opsflow.context import AppContext
from opsflow.observability.logging import configure as configure_logging
from opsflow.observability.logging import get_logger
from opsflow.sla.engine import PassResult, run_once, wait_before_next_pass

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
DEFAULT_MAX_FAILURES = 5

log = get_logger("opsflow.engine.standalone")


@dataclass(frozen=True)
class Options:
    batch: int
    interval: float
    once: bool
    until_idle: bool
    max_failures: int | None  # consecutive failed passes before giving up; None: never


@dataclass
class Totals:
    """What this process did, for the exit summary."""

    passes: int = 0
    passes_with_events: int = 0
    failed_passes: int = 0
    clocks: int = 0
    events: int = 0
    max_lag_seconds: float = 0.0
    lag_sum_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def add(self, result: PassResult) -> None:
        self.passes += 1
        self.clocks += result.clocks
        self.events += result.events
        if result.events:
            self.passes_with_events += 1
        self.max_lag_seconds = max(self.max_lag_seconds, *result.lag_seconds, 0.0)
        self.lag_sum_seconds += sum(result.lag_seconds)


class RecordingClock:
    """The system clock, remembering its last reading: the pass's `now` (= `triggered_at`)."""

    def __init__(self, inner: Clock) -> None:
        self._inner = inner
        self.last: datetime | None = None

    def now(self) -> datetime:
        self.last = self._inner.now()
        return self.last


class StandaloneEngine:
    def __init__(self, ctx: AppContext, options: Options, out: TextIO) -> None:
        self.ctx = ctx
        self.options = options
        self.out = out
        self.clock = RecordingClock(ctx.clock)
        self.totals = Totals()
        self.stopping = asyncio.Event()
        self._current: asyncio.Task[PassResult] | None = None

    def request_stop(self) -> None:
        """First signal: finish the pass in flight. Second: abandon it (it rolls back)."""
        if self.stopping.is_set():
            if self._current is not None and not self._current.done():
                self._current.cancel()
            return
        self.stopping.set()

    async def run(self) -> int:
        consecutive_failures = 0
        reason = "stopped"
        status = EXIT_OK
        while not self.stopping.is_set():
            started = time.monotonic()
            self._current = asyncio.create_task(
                run_once(self.ctx.sessions, self.clock, batch=self.options.batch)
            )
            try:
                result = await self._current
            except asyncio.CancelledError:
                reason = "stopped"
                break
            except Exception:
                consecutive_failures += 1
                self.totals.failed_passes += 1
                log.exception("sla_pass_failed", consecutive_failures=consecutive_failures)
                limit = self.options.max_failures
                if limit is not None and consecutive_failures >= limit:
                    reason, status = "failures", EXIT_FAILED
                    break
                await self._pause(self.options.interval)
                continue
            finally:
                self._current = None
            consecutive_failures = 0
            self.totals.add(result)
            if result.events:
                self._emit_pass(result, time.monotonic() - started)
            if self.options.once:
                reason = "once"
                break
            if self.options.until_idle:
                if result.clocks == 0:
                    reason = "idle"
                    break
                continue  # draining: back to back until a pass finds nothing
            if result.clocks < self.options.batch:
                await self._pause(
                    wait_before_next_pass(result, self.clock.now(), self.options.interval)
                )
        self.emit_exit(reason)
        return status

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    def _write(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.out.flush()

    def _emit_pass(self, result: PassResult, duration: float) -> None:
        started_at = self.clock.last
        self._write(
            {
                "event": "sla_pass",
                "pid": os.getpid(),
                "pass": self.totals.passes,
                "clocks": result.clocks,
                "events": result.events,
                "max_lag_seconds": round(max(result.lag_seconds, default=0.0), 6),
                "started_at": started_at.isoformat() if started_at else None,
                "committed_at": self.ctx.clock.now().isoformat(),
                "duration_seconds": round(duration, 6),
            }
        )

    def emit_exit(self, reason: str) -> None:
        totals = self.totals
        self._write(
            {
                "event": "sla_engine_exit",
                "pid": os.getpid(),
                "reason": reason,
                "passes": totals.passes,
                "passes_with_events": totals.passes_with_events,
                "failed_passes": totals.failed_passes,
                "clocks": totals.clocks,
                "events": totals.events,
                "max_lag_seconds": round(totals.max_lag_seconds, 6),
                "mean_lag_seconds": round(totals.lag_sum_seconds / totals.events, 6)
                if totals.events
                else 0.0,
                "elapsed_seconds": round(time.monotonic() - totals.started, 3),
            }
        )


def parse_args(argv: Sequence[str] | None, settings: Settings) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m opsflow.workers.standalone",
        description="Run the SLA engine as a standalone process (any number side by side).",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=settings.engine_batch_size,
        help="clocks claimed per pass (default: OPSFLOW_ENGINE_BATCH_SIZE, %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=settings.engine_interval_seconds,
        help="seconds to wait after a pass that was not full (default: %(default)s)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="run one pass and exit")
    mode.add_argument(
        "--until-idle", action="store_true", help="run passes until one claims nothing, then exit"
    )
    parser.add_argument(
        "--max-failures",
        type=int,
        default=None,
        help=(
            "give up after this many consecutive failed passes (default: 1 with --once, "
            f"{DEFAULT_MAX_FAILURES} with --until-idle, never otherwise)"
        ),
    )
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    if args.interval <= 0:
        parser.error("--interval must be positive")
    max_failures: int | None = args.max_failures
    if max_failures is None:
        if args.once:
            max_failures = 1
        elif args.until_idle:
            max_failures = DEFAULT_MAX_FAILURES
    elif max_failures < 1:
        parser.error("--max-failures must be at least 1")
    return Options(
        batch=args.batch,
        interval=args.interval,
        once=bool(args.once),
        until_idle=bool(args.until_idle),
        max_failures=max_failures,
    )


async def _schema_is_current(ctx: AppContext) -> bool:
    from opsflow import schema  # alembic: imported only once the process has started

    async with ctx.engine.connect() as connection:
        return bool(await connection.run_sync(schema.is_current))


async def serve(settings: Settings, options: Options, out: TextIO = sys.stdout) -> int:
    ctx = AppContext.build(settings, SystemClock())
    try:
        engine = StandaloneEngine(ctx, options, out)
        try:
            current = await _schema_is_current(ctx)
        except Exception:
            log.exception("database_unavailable")
            engine.emit_exit("database_unavailable")
            return EXIT_FAILED
        if not current:
            log.error("schema_not_current", hint="run `opsflow migrate` (or serve) first")
            engine.emit_exit("schema_not_current")
            return EXIT_CONFIG
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, engine.request_stop)
        try:
            log.info(
                "started",
                pid=os.getpid(),
                database=ctx.engine.dialect.name,
                batch=options.batch,
                interval=options.interval,
                mode="once" if options.once else "until-idle" if options.until_idle else "loop",
            )
            return await engine.run()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    finally:
        await ctx.close()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings()
    except (ConfigError, ValueError) as exc:
        print(f"opsflow engine: bad configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    options = parse_args(argv, settings)
    configure_logging(settings.log_level, settings.log_json)
    try:
        return asyncio.run(serve(settings, options))
    except ConfigError as exc:
        print(f"opsflow engine: bad configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
