"""Embedded drivers: the engines as asyncio loops inside `opsflow serve`."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime

from opsflow.context import AppContext
from opsflow.escalation import engine as escalation_engine
from opsflow.events import relay
from opsflow.notifications import engine as delivery_engine
from opsflow.observability.logging import get_logger
from opsflow.sla.engine import PassResult, run_once, wait_before_next_pass

log = get_logger("opsflow.engine")
# Batches of the passes that follow each SLA pass (their own sizes: an SLA batch tuned for
# the engine says nothing about how many outbox events or steps to take at once).
RELAY_BATCH = 500
ESCALATION_BATCH = 200
DELIVERY_BATCH = 50


async def run_pass(ctx: AppContext, *, batch: int) -> PassResult | None:
    """One SLA engine pass with its metrics and log line: what every scheduled driver runs.

    Used by the loop below and by the Celery job (`workers/celery_app.py`). Returns None when
    the pass failed: the failure is logged and counted, and its transaction rolled back, so
    nothing was half-done and the next pass simply tries again.
    """
    try:
        result = await run_once(ctx.sessions, ctx.clock, batch=batch)
    except Exception:  # callers keep running; the pass is retried on their next tick
        ctx.metrics.sla_engine_passes.labels("failed").inc()
        log.exception("sla_pass_failed")
        return None
    ctx.metrics.sla_engine_passes.labels("ok").inc()
    for event_type, lag in result.lag_by_type:
        ctx.metrics.sla_engine_lag.labels(event_type).observe(lag)
    if result.events:
        log.info(
            "sla_pass",
            clocks=result.clocks,
            events=result.events,
            max_lag_seconds=round(max(result.lag_seconds, default=0.0), 3),
        )
    await _follow(ctx, result)
    return result


FOLLOW_PASSES = ("relay", "escalation", "delivery")
FOLLOW_BATCHES = {"relay": RELAY_BATCH, "escalation": ESCALATION_BATCH, "delivery": DELIVERY_BATCH}


@dataclass
class FollowPassResult:
    """What one pass after the SLA pass did, in a shape common to the three of them."""

    name: str  # relay | escalation | delivery
    counts: dict[str, int]  # relay: events, failed; escalation: steps, fired;
    # delivery: claimed, sent, failed
    worked: bool  # it took something (events, steps, deliveries)
    backlog: bool  # its batch came back full: more may be waiting
    next_due: datetime | None


async def follow_pass(ctx: AppContext, name: str, *, batch: int | None = None) -> FollowPassResult:
    """One relay, escalation or delivery pass (`name`); raises what the pass raised.

    The one implementation behind the embedded loop, the Celery job and the standalone
    process's ``--passes``.
    """
    size = batch or FOLLOW_BATCHES[name]
    if name == "relay":
        relayed = await relay.run_once(ctx.sessions, ctx.clock, batch=size)
        counts = {"events": relayed.events, "failed": relayed.failed}
        return FollowPassResult(
            name, counts, relayed.events > 0, relayed.events >= size, relayed.next_due
        )
    if name == "escalation":
        escalated = await escalation_engine.run_once(ctx.sessions, ctx.clock, batch=size)
        counts = {"steps": escalated.steps, "fired": escalated.fired}
        return FollowPassResult(
            name, counts, escalated.steps > 0, escalated.steps >= size, escalated.next_due
        )
    if name == "delivery":
        delivered = await delivery_engine.run_once(ctx, batch=size)
        counts = {"claimed": delivered.claimed, "sent": delivered.sent, "failed": delivered.failed}
        return FollowPassResult(
            name, counts, delivered.claimed > 0, delivered.claimed >= size, delivered.next_due
        )
    raise ValueError(f"unknown pass {name!r}")


async def _follow(ctx: AppContext, result: PassResult) -> None:
    """The passes that act on what the SLA pass (and the API) wrote: the outbox relay
    (which plans escalation runs and queues notifications), the escalation engine (which
    fires due steps), then the delivery engine (which sends due notifications)."""
    dues = [result.next_due]
    for name in FOLLOW_PASSES:
        try:
            done = await follow_pass(ctx, name)
        except Exception:
            log.exception(f"{name}_pass_failed")
            continue
        dues.append(done.next_due)
        result.backlog = result.backlog or done.backlog
        if done.worked:
            log.info(f"{name}_pass", **done.counts)
    known = [due for due in dues if due is not None]
    result.next_due = min(known) if known else None


class EmbeddedSlaEngine:
    """Runs SLA engine passes until stopped.

    A full batch means more may be due, so the next pass starts at once; otherwise the loop
    waits until the next known threshold is due, at most `interval` seconds (or until
    stopped), so lateness does not depend on the interval. A failing pass is logged and retried on
    the next tick: its transaction rolled back, so nothing was half-done.
    """

    def __init__(self, ctx: AppContext, *, interval: float, batch: int) -> None:
        self.ctx = ctx
        self.interval = interval
        self.batch = batch
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="opsflow-sla-engine")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while not self._stop.is_set():
            result = await run_pass(self.ctx, batch=self.batch)
            if result is not None and (result.clocks >= self.batch or result.backlog):
                continue
            wait = self.interval
            if result is not None:
                wait = wait_before_next_pass(result, self.ctx.clock.now(), self.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=wait)
