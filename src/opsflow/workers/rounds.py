"""The one round: every selected engine once, in registry order — what every driver runs.

The loop inside ``opsflow serve`` (`workers/embedded.py`), ``opsflow engine``
(`workers/process.py`) and the Celery job (`workers/celery_app.py`) all call
:func:`run_round`; they differ only in when they call it again:

* a round whose report has ``backlog`` (some batch came back full) is followed at once;
* otherwise the driver waits until ``next_due`` (the earliest due instant any engine
  reported), at most its interval (:func:`wait_before_next_round`).

A looping driver's wait also ends early when a commit wrote outbox events (:class:`Waker`).
Such a round runs only the engines that commit can give work at once (``on_commit``: the
relay, escalation and delivery); the others keep their time (:class:`Cadence`). A commit
wakes a loop hundreds of times a second under load, and the timed engines' passes
(claiming nothing) cost as much as the relay's own.

A pass that raises is logged (``<name>_pass_failed``) and counted
(``opsflow_engine_passes_total{engine, outcome="failed"}``); its transaction rolled back, so
nothing was half-done, and the rest of the round still runs. A pass that took something is
logged as ``<name>_pass`` with its counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from opsflow.clock import Clock
from opsflow.context import AppContext
from opsflow.events import wake
from opsflow.observability.logging import get_logger
from opsflow.workers.contract import Engine, EngineRegistry, PassReport
from opsflow.workers.heartbeat import Heartbeat

log = get_logger("opsflow.engine")

# Engines that find the next due row already past (another engine holds it) look again
# after this long rather than spinning.
MIN_WAIT_SECONDS = 0.02


@dataclass
class RoundReport:
    passes: list[PassReport] = field(default_factory=list)  # the passes that completed
    failed: list[str] = field(default_factory=list)  # the engines whose pass raised

    @property
    def worked(self) -> bool:
        return any(report.worked for report in self.passes)

    @property
    def backlog(self) -> bool:
        return any(report.backlog for report in self.passes)

    @property
    def next_due(self) -> datetime | None:
        return min((r.next_due for r in self.passes if r.next_due is not None), default=None)

    def get(self, name: str) -> PassReport | None:
        return next((report for report in self.passes if report.name == name), None)


async def run_round(
    ctx: AppContext,
    engines: Iterable[Engine],
    *,
    batch: int | None = None,
    heartbeat: Heartbeat | None = None,
    on_pass: Callable[[PassReport], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RoundReport:
    """One pass of each engine, in order.

    `batch` overrides every engine's own batch size. `on_pass` sees each completed pass as
    soon as it committed. `should_stop` is asked before every pass after the first: once it
    says yes, the round ends after the pass in flight. `heartbeat` records that this process
    ran a round (at most every few seconds; see `workers/heartbeat.py`).
    """
    done = RoundReport()
    for index, engine in enumerate(engines):
        if index and should_stop is not None and should_stop():
            break
        started = time.monotonic()
        try:
            report = await engine.run(ctx, batch=batch or engine.batch)
        except Exception:  # the transaction rolled back; the next round tries again
            ctx.metrics.engine_passes.labels(engine.name, "failed").inc()
            log.exception(f"{engine.name}_pass_failed")
            done.failed.append(engine.name)
            continue
        report.duration_seconds = time.monotonic() - started
        ctx.metrics.engine_passes.labels(engine.name, "ok").inc()
        if report.worked:
            extra = {"max_lag_seconds": round(report.max_lag_seconds, 3)} if report.lags else {}
            log.info(f"{engine.name}_pass", **report.counts, **extra)
        done.passes.append(report)
        if on_pass is not None:
            on_pass(report)
    if heartbeat is not None:
        await heartbeat.beat(ctx)
    return done


def wait_before_next_round(next_due: datetime | None, now: datetime, interval: float) -> float:
    """Seconds to wait after a round without backlog: until the next due instant, at most
    `interval` (new rows may come due sooner than anything known now)."""
    if next_due is None:
        return interval
    return min(interval, max(MIN_WAIT_SECONDS, (next_due - now).total_seconds()))


class Cadence:
    """Which engines a looping driver's next round runs, and how long it waits after one.

    A round that comes at its time runs every engine, and sets the time of the next such
    round: the earliest due instant any engine reported, at most `interval` later
    (:func:`wait_before_next_round`). A round that a commit started before that time runs
    only the `on_commit` engines: the others have nothing due before it, except rows that
    commit itself made due sooner, which wait at most `interval` (as they did before commits
    woke the loop at all). A round with backlog is followed at once by the same kind of
    round. Time is the application's clock, so a test that moves it forward past the next
    full round gets one at the next wake.
    """

    def __init__(self, engines: EngineRegistry, interval: float, clock: Clock) -> None:
        self.engines = engines
        self.woken_engines = engines.on_commit()
        self.interval = interval
        self.clock = clock
        self.full = True  # whether the round in progress (or the last one) runs every engine
        self._full_at: datetime | None = None  # when the next round runs every engine
        self._woken = False  # the wait before the next round ended by a commit

    def next_round(self) -> EngineRegistry:
        """The engines of the round about to start."""
        self.full = not (
            self._woken and self._full_at is not None and self.clock.now() < self._full_at
        )
        return self.engines if self.full else self.woken_engines

    def after(self, done: RoundReport) -> float | None:
        """Seconds to wait after `done`, or None to run the next round at once (backlog)."""
        if done.backlog:
            self._woken = not self.full
            return None
        now = self.clock.now()
        wait = wait_before_next_round(done.next_due, now, self.interval)
        if self.full or self._full_at is None:
            self._full_at = now + timedelta(seconds=wait)
            return wait
        return max(0.0, min(wait, (self._full_at - now).total_seconds()))

    def waited(self, woken: bool) -> None:
        """How the wait ended: a commit (True) or its time (False)."""
        self._woken = woken


class Waker:
    """What ends a looping driver's wait before its time (`events/wake.py`), for a driver
    whose rounds run the relay: a commit of this process that wrote outbox rows, and on
    PostgreSQL (unless ``OPSFLOW_OUTBOX_NOTIFY=false``) a notification that another process
    did, received on a listening connection of its own. A driver without the relay only
    waits (nothing it runs is woken by a new event)."""

    def __init__(self, ctx: AppContext, engines: Iterable[Engine]) -> None:
        self.ctx = ctx
        self.relays = any(engine.name == "relay" for engine in engines)
        self.wakeup: wake.Wakeup | None = None
        self.listener: wake.NotificationListener | None = None

    def start(self) -> None:
        if not self.relays:
            return
        self.wakeup = wake.watch()
        if wake.notifies(self.ctx.engine.dialect.name):
            self.listener = wake.NotificationListener(self.ctx.engine, self.wakeup)
            self.listener.start()

    async def stop(self) -> None:
        if self.wakeup is not None:
            wake.unwatch(self.wakeup)
        if self.listener is not None:
            await self.listener.stop()

    def round_starts(self) -> None:
        """What committed before now is this round's: only later commits wake the next."""
        if self.wakeup is not None:
            self.wakeup.clear()

    async def wait(self, stop: asyncio.Event, seconds: float) -> bool:
        """Until woken (True), `stop` is set or `seconds` have passed."""
        if self.wakeup is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=seconds)
            return False
        woken = await self.wakeup.wait(stop, seconds)
        if woken:
            self.ctx.metrics.engine_wakeups.inc()
        return woken
