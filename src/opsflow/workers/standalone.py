"""The engines as their own process: scale out by starting more of them, no broker needed.

    python -m opsflow.workers.standalone [--passes sla,relay,escalation,delivery|all]
        [--batch N] [--interval S] [--once] [--until-idle]

``--passes`` picks what each round runs, in this order: ``sla`` (the SLA engine), ``relay``
(the outbox relay: plans escalation runs, queues notifications and webhook deliveries),
``escalation`` (fires due escalation steps), ``delivery`` (sends due notifications); ``all``
is all four, the same passes as the loop embedded in ``opsflow serve``. Default: ``sla``.
The non-SLA passes are `opsflow.workers.embedded.follow_pass`, the embedded loop's own.

Settings come from the environment like every other OpsFlow process (``DATABASE_URL``,
``OPSFLOW_ENGINE_BATCH_SIZE``, ``OPSFLOW_ENGINE_INTERVAL_SECONDS``,
``OPSFLOW_NOTIFICATION_LEASE_SECONDS``, ``LOG_LEVEL``, ...). The schema must already be
migrated (``opsflow serve`` or ``opsflow migrate`` does it); the engine never migrates, so
that many engines can start at once.

Any number of these processes may run side by side, with or without the engines embedded in
``opsflow serve``: each pass claims its rows with ``FOR UPDATE SKIP LOCKED``. An SLA or relay
or escalation pass commits everything it did in one transaction, so a process killed at any
instant leaves nothing half-done and another engine picks its rows up. A delivery pass leases
what it claims: a killed process's deliveries are sent again when their lease runs out
(``OPSFLOW_NOTIFICATION_LEASE_SECONDS``), with the same idempotency key.

Loop: a full batch in any pass means more may be due, so the next round starts at once;
otherwise the process waits until the next known due instant, at most ``--interval`` seconds.
``--until-idle`` drains instead: rounds run back to back and the process exits after the
first round in which no selected pass did anything. ``--once`` runs one round.
``--batch`` is the SLA pass's batch (default ``OPSFLOW_ENGINE_BATCH_SIZE``); given
explicitly it is every selected pass's batch, otherwise relay, escalation and delivery use
the embedded loop's sizes (500, 200, 50).

Output: stdout carries one JSON object per line, for machines (tests, benchmarks):

* ``{"event": "sla_pass", ...}`` for every SLA pass that fired something: clocks, events,
  ``max_lag_seconds`` (due instant -> the pass's clock reading, which is every event's
  ``triggered_at``), ``started_at`` (that reading) and ``committed_at`` (wall clock right after
  the commit returned, so ``committed_at - due_at`` bounds the lateness of persistence);
* ``{"event": "relay_pass", "events", "failed", ...}``, ``{"event": "escalation_pass",
  "steps", "fired", ...}``, ``{"event": "delivery_pass", "claimed", "sent", "failed", ...}``
  for every such pass that took something (with ``pid``, ``round``, ``duration_seconds``);
* ``{"event": "sla_engine_exit", ...}`` once, on exit, with the totals (``passes`` counts
  rounds; one object per selected non-SLA pass sums its counts) and the reason (``idle``,
  ``once``, ``stopped``, ``failures``, ``database_unavailable``, ``schema_not_current``).

Logs (failures with their traceback) go to stderr. SIGTERM or SIGINT: the pass in flight
finishes (and commits), then the process exits with status 0; a second signal abandons the
pass (its transaction rolls back). A round fails when any of its passes raised (the rest of
the round still runs). Exit status 1: the run stopped because rounds kept failing
(``--once``: its round failed; ``--until-idle``: ``--max-failures`` consecutive failures) or
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
from opsflow.workers.embedded import FOLLOW_PASSES, FollowPassResult, follow_pass

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
DEFAULT_MAX_FAILURES = 5
PASSES = ("sla", *FOLLOW_PASSES)  # the order of a round

log = get_logger("opsflow.engine.standalone")


@dataclass(frozen=True)
class Options:
    batch: int
    interval: float
    once: bool
    until_idle: bool
    max_failures: int | None  # consecutive failed rounds before giving up; None: never
    passes: tuple[str, ...] = ("sla",)  # in PASSES order
    follow_batch: int | None = None  # relay/escalation/delivery batch; None: embedded sizes


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
    # relay/escalation/delivery: their counts summed (events, steps, claimed, sent, ...)
    follow: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, result: PassResult) -> None:
        self.clocks += result.clocks
        self.events += result.events
        if result.events:
            self.passes_with_events += 1
        self.max_lag_seconds = max(self.max_lag_seconds, *result.lag_seconds, 0.0)
        self.lag_sum_seconds += sum(result.lag_seconds)

    def add_follow(self, result: FollowPassResult) -> None:
        sums = self.follow.setdefault(result.name, {})
        for key, value in result.counts.items():
            sums[key] = sums.get(key, 0) + value


@dataclass
class Round:
    """One round: the selected passes, one after another."""

    failed: bool = False  # a pass raised
    worked: bool = False  # a pass took something
    backlog: bool = False  # a pass came back with a full batch
    dues: list[datetime] = field(default_factory=list)


class RecordingClock:
    """The system clock, remembering the first reading since `start_pass`: the pass's `now`
    (= every event's `triggered_at`; the pass reads the clock again after its commit)."""

    def __init__(self, inner: Clock) -> None:
        self._inner = inner
        self.first: datetime | None = None

    def start_pass(self) -> None:
        self.first = None

    def now(self) -> datetime:
        reading = self._inner.now()
        if self.first is None:
            self.first = reading
        return reading


class StandaloneEngine:
    def __init__(self, ctx: AppContext, options: Options, out: TextIO) -> None:
        self.ctx = ctx
        self.options = options
        self.out = out
        self.clock = RecordingClock(ctx.clock)
        self.totals = Totals()
        self.stopping = asyncio.Event()
        self._current: asyncio.Task[Any] | None = None

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
            done = await self._round()
            if done is None:  # abandoned by a second signal
                reason = "stopped"
                break
            if done.failed:
                consecutive_failures += 1
                self.totals.failed_passes += 1
                limit = self.options.max_failures
                if limit is not None and consecutive_failures >= limit:
                    reason, status = "failures", EXIT_FAILED
                    break
                await self._pause(self.options.interval)
                continue
            consecutive_failures = 0
            self.totals.passes += 1
            if self.options.once:
                reason = "once"
                break
            if self.options.until_idle:
                if not done.worked:
                    reason = "idle"
                    break
                continue  # draining: back to back until a round finds nothing
            if not done.backlog:
                due = PassResult(next_due=min(done.dues, default=None))
                await self._pause(
                    wait_before_next_pass(due, self.clock.now(), self.options.interval)
                )
        self.emit_exit(reason)
        return status

    async def _guarded(self, pass_: Any) -> Any:
        """Run one pass as the task a second signal cancels."""
        self._current = asyncio.create_task(pass_)
        try:
            return await self._current
        finally:
            self._current = None

    async def _round(self) -> Round | None:
        done = Round()
        if "sla" in self.options.passes:
            started = time.monotonic()
            self.clock.start_pass()
            try:
                result: PassResult = await self._guarded(
                    run_once(self.ctx.sessions, self.clock, batch=self.options.batch)
                )
            except asyncio.CancelledError:
                return None
            except Exception:
                done.failed = True
                log.exception("sla_pass_failed")
            else:
                self.totals.add(result)
                if result.events:
                    self._emit_pass(result, time.monotonic() - started)
                done.worked |= result.clocks > 0
                done.backlog |= result.clocks >= self.options.batch
                if result.next_due is not None:
                    done.dues.append(result.next_due)
        for name in FOLLOW_PASSES:
            if name not in self.options.passes:
                continue
            if self.stopping.is_set():
                break  # the pass in flight has finished: stop before the next one
            started = time.monotonic()
            try:
                follow: FollowPassResult = await self._guarded(
                    follow_pass(self.ctx, name, batch=self.options.follow_batch)
                )
            except asyncio.CancelledError:
                return None
            except Exception:
                done.failed = True
                log.exception(f"{name}_pass_failed")
                continue
            self.totals.add_follow(follow)
            if follow.worked:
                self._emit_follow(follow, time.monotonic() - started)
            done.worked |= follow.worked
            done.backlog |= follow.backlog
            if follow.next_due is not None:
                done.dues.append(follow.next_due)
        return done

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    def _write(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.out.flush()

    def _emit_pass(self, result: PassResult, duration: float) -> None:
        started_at = self.clock.first
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

    def _emit_follow(self, result: FollowPassResult, duration: float) -> None:
        self._write(
            {
                "event": f"{result.name}_pass",
                "pid": os.getpid(),
                "round": self.totals.passes + 1,
                **result.counts,
                "backlog": result.backlog,
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
                "passes_selected": list(self.options.passes),
                **{
                    name: totals.follow.get(name, {})
                    for name in FOLLOW_PASSES
                    if name in self.options.passes
                },
            }
        )


def parse_passes(value: str) -> tuple[str, ...]:
    """``sla,delivery`` (any order, no repeats needed) or ``all`` -> the passes in round order."""
    names = {part.strip().lower() for part in value.split(",") if part.strip()}
    if names == {"all"}:
        return PASSES
    unknown = names - set(PASSES)
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of {','.join(PASSES)} or 'all', got {value!r}"
        )
    return tuple(name for name in PASSES if name in names)


def parse_args(argv: Sequence[str] | None, settings: Settings) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m opsflow.workers.standalone",
        description="Run the SLA engine (and, with --passes, the relay, escalation and "
        "delivery engines) as a standalone process (any number side by side).",
    )
    parser.add_argument(
        "--passes",
        type=parse_passes,
        default=("sla",),
        help="comma list of sla,relay,escalation,delivery, or all (default: sla)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help=(
            "rows claimed per pass (default: OPSFLOW_ENGINE_BATCH_SIZE, "
            f"{settings.engine_batch_size}, for the SLA pass; the embedded loop's sizes for "
            "the others)"
        ),
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=settings.engine_interval_seconds,
        help="longest wait after a round that was not full (default: %(default)s)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="run one round and exit")
    mode.add_argument(
        "--until-idle",
        action="store_true",
        help="run rounds until one in which no pass did anything, then exit",
    )
    parser.add_argument(
        "--max-failures",
        type=int,
        default=None,
        help=(
            "give up after this many consecutive failed rounds (default: 1 with --once, "
            f"{DEFAULT_MAX_FAILURES} with --until-idle, never otherwise)"
        ),
    )
    args = parser.parse_args(argv)
    if args.batch is not None and args.batch < 1:
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
        batch=settings.engine_batch_size if args.batch is None else args.batch,
        interval=args.interval,
        once=bool(args.once),
        until_idle=bool(args.until_idle),
        max_failures=max_failures,
        passes=tuple(args.passes),
        follow_batch=args.batch,
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
                passes=",".join(options.passes),
                batch=options.batch,
                follow_batch=options.follow_batch,
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
