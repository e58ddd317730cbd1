"""Prometheus metrics.

Two kinds:
- Process-local instruments (HTTP latency, engine lag, completion durations) observed as
  things happen in this process.
- Database-derived series (task counts by status, tasks created, SLA breaches, outbox
  backlog) read at scrape time by :class:`DatabaseCollector`, so they are the same whichever
  API process is scraped and survive restarts.

Every process exports its own: `/metrics` of the API; ``OPSFLOW_METRICS_PORT`` for
`opsflow engine` and `opsflow worker` (:func:`serve_process_metrics`). Where one port stands
for several processes (`opsflow serve --workers N`, a prefork Celery worker), the processes
write their instruments to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
multiprocess mode, :func:`use_multiprocess_directory`) and a scrape sums them over every
process: counters and histograms of all workers, whichever one answers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from opsflow.models.notification import Notification
from opsflow.models.outbox import OutboxEvent
from opsflow.models.sla import SlaEvent
from opsflow.models.task import Task

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """The process-local instruments, on a registry of their own (no global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_duration = Histogram(
            "opsflow_http_request_duration_seconds",
            "HTTP request latency by route template",
            ("method", "route", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sla_engine_lag = Histogram(
            "opsflow_sla_engine_lag_seconds",
            "Lateness of SLA events: threshold instant to event persisted",
            ("event_type",),
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.sla_engine_passes = Counter(
            "opsflow_sla_engine_passes_total",
            "SLA engine passes run by this process",
            ("outcome",),
            registry=self.registry,
        )
        self.engine_passes = Counter(
            "opsflow_engine_passes_total",
            "Engine passes run by this process, by engine (sla, relay, escalation, delivery) "
            "and outcome (ok, failed)",
            ("engine", "outcome"),
            registry=self.registry,
        )
        self.engine_wakeups = Counter(
            "opsflow_engine_wakeups_total",
            "Engine rounds this process started early because a commit wrote outbox rows "
            "(many commits during a round count once)",
            registry=self.registry,
        )
        self.task_completion = Histogram(
            "opsflow_task_completion_duration_seconds",
            "Time from creation to completion of tasks completed through this process",
            ("task_type", "priority"),
            buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200, 604800),
            registry=self.registry,
        )
        self.notification_deliveries = Counter(
            "opsflow_notification_deliveries_total",
            "Notification delivery attempts by this process, by channel and outcome "
            "(sent, retry, failed, dead, held)",
            ("channel", "outcome"),
            registry=self.registry,
        )
        self.alert_batch_size = Histogram(
            "opsflow_alert_batch_requests",
            "Inbound alert requests applied per group commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200),
            registry=self.registry,
        )
        self.ws_delivery = Histogram(
            "opsflow_ws_delivery_latency_seconds",
            "Live WebSocket events: the event's outbox instant (its commit) to its frame "
            "written to a client socket by this process",
            buckets=DELIVERY_BUCKETS,
            registry=self.registry,
        )
        self._database: DatabaseCollector | None = None
        self._circuits: Callable[[], dict[str, str]] | None = None
        self._websockets: Callable[[], dict[str, int]] | None = None
        self.exposed = process_registry(self.registry)  # what a scrape shows of them

    def observe_delivery(self, seconds: float, frames: int) -> None:
        """`frames` frames of one event written at once, `seconds` after its commit: one
        histogram update for the whole broadcast (its sum and one bucket, by `frames`)
        instead of one per socket."""
        histogram = self.ws_delivery
        total, buckets = getattr(histogram, "_sum", None), getattr(histogram, "_buckets", None)
        bounds = getattr(histogram, "_upper_bounds", None)
        if total is None or buckets is None or bounds is None:  # another client version
            for _ in range(frames):
                histogram.observe(seconds)
            return
        total.inc(seconds * frames)
        for index, bound in enumerate(bounds):
            if seconds <= bound:
                buckets[index].inc(frames)
                return

    def attach_database(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._database = DatabaseCollector(sessions)

    def attach_circuits(self, snapshot: Callable[[], dict[str, str]]) -> None:
        """The delivery breakers of this process ({destination: state})."""
        self._circuits = snapshot

    def attach_websockets(self, snapshot: Callable[[], dict[str, int]]) -> None:
        """The WebSocket hub of this process (open, sent, evicted, refused)."""
        self._websockets = snapshot

    async def render(self) -> bytes:
        """The exposition text: process-local instruments plus the database series."""
        body = generate_latest(self.exposed)
        series: list[Metric] = []
        if self._database is not None:
            series += await self._database.snapshot()
        if self._circuits is not None:
            circuits = GaugeMetricFamily(
                "opsflow_notification_circuit_open",
                "Delivery circuit per destination in this process: 1 open, 0.5 half-open, 0 closed",
                labels=["destination"],
            )
            level = {"open": 1.0, "half_open": 0.5}
            for destination, state in sorted(self._circuits().items()):
                circuits.add_metric([destination], level.get(str(state), 0.0))
            series.append(circuits)
        if self._websockets is not None:
            series += _websocket_series(self._websockets())
        if series:
            extra = CollectorRegistry(auto_describe=False)
            extra.register(_Static(series))
            body += generate_latest(extra)
        return body


MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def process_registry(own: CollectorRegistry) -> CollectorRegistry:
    """`own` — or, in multiprocess mode, a registry reading every process's files."""
    directory = os.environ.get(MULTIPROCESS_ENV)
    if not directory:
        return own
    combined = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
    return combined


def use_multiprocess_directory(given: str | None = None) -> tuple[Path, bool]:
    """Multiprocess mode for this process and the processes it starts afterwards.

    The directory is `given` (``PROMETHEUS_MULTIPROC_DIR`` as configured), emptied of the
    files of an earlier run, or else a new temporary one. Returns it and whether it was made
    here (the caller removes it on exit). Instruments created from now on write to it — the
    value class prometheus_client picked at import (before the variable was set) is replaced
    — so call this before any :class:`Metrics` exists in the process.
    """
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        made = False
    else:
        path, made = Path(tempfile.mkdtemp(prefix="opsflow-metrics-")), True
    os.environ[MULTIPROCESS_ENV] = str(path)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return path, made


def remove_multiprocess_directory(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def serve_process_metrics(port: int, host: str, registry: CollectorRegistry) -> Callable[[], None]:
    """Serve `registry` on ``http://host:port/metrics`` (any path answers) from a daemon
    thread; returns the function that stops it."""
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def _websocket_series(stats: dict[str, int]) -> list[Metric]:
    open_now = GaugeMetricFamily(
        "opsflow_ws_connections_open", "Authenticated WebSocket connections open in this process"
    )
    open_now.add_metric([], stats["open"])
    buffered = GaugeMetricFamily(
        "opsflow_ws_buffered_bytes",
        "Bytes held unsent by this process's WebSocket transports (at the last broadcast)",
    )
    buffered.add_metric([], stats["buffered"])
    counters = [
        ("opsflow_ws_messages_sent", "Frames written to WebSocket clients", "sent"),
        ("opsflow_ws_evictions", "WebSocket clients closed for reading too slowly", "evicted"),
        ("opsflow_ws_refused", "WebSocket connections refused past the per-user limit", "refused"),
        (
            "opsflow_ws_shed",
            "WebSocket clients dropped because the process's buffer budget was exceeded",
            "shed",
        ),
    ]
    series: list[Metric] = [open_now, buffered]
    for name, documentation, key in counters:
        counter = CounterMetricFamily(name, documentation)
        counter.add_metric([], stats[key])
        series.append(counter)
    return series


class DatabaseCollector:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def snapshot(self) -> list[Metric]:
        async with self.sessions() as session:
            by_status = (
                await session.execute(
                    select(Task.status, func.count())
                    .where(Task.deleted_at.is_(None))
                    .group_by(Task.status)
                )
            ).all()
            created = await session.scalar(select(func.count()).select_from(Task))
            breaches = (
                await session.execute(
                    select(SlaEvent.sla_type, func.count())
                    .where(SlaEvent.event_type.like("%_BREACH"))
                    .group_by(SlaEvent.sla_type)
                )
            ).all()
            backlog = await session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.published_at.is_(None))
            )
            notifications = (
                await session.execute(
                    select(Notification.channel, Notification.status, func.count()).group_by(
                        Notification.channel, Notification.status
                    )
                )
            ).all()
        active = GaugeMetricFamily(
            "opsflow_active_tasks", "Tasks that are not deleted, by status", labels=["status"]
        )
        for status, count in by_status:
            active.add_metric([status.lower()], float(count))
        created_total = CounterMetricFamily(
            "opsflow_tasks_created", "Tasks created since the database was made"
        )
        created_total.add_metric([], float(created or 0))
        breach_total = CounterMetricFamily(
            "opsflow_sla_breaches", "SLA breaches recorded", labels=["breach_type"]
        )
        for sla_type, count in breaches:
            breach_total.add_metric([sla_type.lower()], float(count))
        outbox = GaugeMetricFamily("opsflow_outbox_backlog", "Outbox events not yet published")
        outbox.add_metric([], float(backlog or 0))
        by_state = GaugeMetricFamily(
            "opsflow_notifications",
            "Notifications by channel and status (status dead: the dead-letter queue)",
            labels=["channel", "status"],
        )
        for channel, status, count in notifications:
            by_state.add_metric([channel.lower(), status.lower()], float(count))
        return [active, created_total, breach_total, outbox, by_state]


class _Static(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return iter(self.metrics)
