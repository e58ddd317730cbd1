"""Where OpsFlow is assembled: the one place that knows every domain.

The API (`app.create_app`), the engine drivers (`opsflow serve`'s loop, `opsflow engine`,
the Celery job) and the CLI commands build their context and their engines here. Lower
modules receive what they need instead of importing it: the relay gets its consumers, the
context gets its notification channels, the drivers get the engine registry.

Adding an engine: write its module (a class with ``name``, ``batch`` and
``run(ctx, batch=...) -> PassReport``, see `workers/contract.py`) and add one line to
:func:`engine_registry`. Adding an outbox consumer: one line in :func:`relay_consumers`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.attachments.engine import UploadCollector
from opsflow.attachments.storage import build_storage
from opsflow.auth.cache import PrincipalCache
from opsflow.auth.passwords import Passwords
from opsflow.auth.ratelimit import Counters, RateLimiter
from opsflow.auth.throttle import LoginThrottle
from opsflow.auth.tokens import TokenCodec
from opsflow.clock import Clock
from opsflow.config import Settings
from opsflow.context import AppContext
from opsflow.db import create_engine, create_sessionmaker
from opsflow.escalation import service as escalation_service
from opsflow.escalation.engine import EscalationEngine
from opsflow.events import wake
from opsflow.events.pruning import OutboxPruner
from opsflow.events.relay import Consumer, Preparer, RelayEngine
from opsflow.heartbeats import incidents as heartbeat_incidents
from opsflow.heartbeats.engine import HeartbeatEngine
from opsflow.integrations import ingest as alert_ingest
from opsflow.integrations.engine import FlappingEngine
from opsflow.integrations.intake import AlertIntake
from opsflow.models.outbox import OutboxEvent
from opsflow.notifications import facts
from opsflow.notifications import service as notifications_service
from opsflow.notifications.dispatch import Notifier
from opsflow.notifications.engine import DeliveryEngine
from opsflow.observability import tracing
from opsflow.observability.metrics import Metrics
from opsflow.realtime import consumer as realtime_consumer
from opsflow.realtime.bus import BUS
from opsflow.realtime.hub import HUB
from opsflow.sla.engine import SlaEngine
from opsflow.sla.service import CatalogCache
from opsflow.system.health import configured_redis
from opsflow.tasks import repository as tasks_repository
from opsflow.webhooks import service as webhooks_service
from opsflow.workers.contract import EngineRegistry


def relay_consumers() -> list[Consumer]:
    """Every consumer of the outbox, in the order they see an event: escalation runs are
    planned first, then notifications queued, then webhook deliveries; last the realtime
    stream, which publishes to the live WebSocket connections once the relay commits."""
    return [
        escalation_service.consume,
        notifications_service.consume,
        webhooks_service.consume,
        realtime_consumer.consume,
    ]


async def _load_tasks(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    await tasks_repository.load(
        session, [event.aggregate_id for event in events if event.aggregate_type == "task"]
    )


def relay_preparers() -> list[Preparer]:
    """What the relay does with a whole batch before its consumers see each event: the
    tasks of the batch's events are loaded at once (every consumer reads the task), then
    the people the notification consumer may reach, with their preferences."""
    return [_load_tasks, notifications_service.prepare]


# Events one relay pass hands to its consumers in one transaction. On SQLite a pass holds the
# database's only write lock from its first write to its commit, and each event costs its
# consumers a few milliseconds: 500 events at once kept every API write waiting for
# seconds. Small passes follow one another at once while there is backlog, and the write
# units of work waiting in between take their turns (db._sqlite_write_turn).
RELAY_BATCH = 500
SQLITE_RELAY_BATCH = 20


def engine_registry(settings: Settings) -> EngineRegistry:
    """Every engine, in the order a round runs them: the SLA engine fires thresholds, the
    heartbeat engine opens the incidents of monitors that missed a signal, the flapping
    engine settles flapping incidents whose flips aged out, the relay hands
    the events to their consumers (planning escalation runs, queueing notifications), the
    escalation engine fires due steps, the delivery engine sends, the upload collector
    removes abandoned uploads and the bytes of deleted attachments, the outbox pruner
    deletes relayed events older than the retention window."""
    relay_batch = RELAY_BATCH
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        relay_batch = SQLITE_RELAY_BATCH
    return EngineRegistry(
        [
            SlaEngine(batch=settings.engine_batch_size),
            HeartbeatEngine(heartbeat_incidents.open_incident),
            FlappingEngine(alert_ingest.settle_flap),
            RelayEngine(relay_consumers(), batch=relay_batch, preparers=relay_preparers()),
            EscalationEngine(),
            DeliveryEngine(),
            UploadCollector(),
            OutboxPruner(),
        ]
    )


def build_context(settings: Settings, clock: Clock) -> AppContext:
    """The process's long-lived collaborators for these settings."""
    facts.configure(settings.public_url)  # the links notifications carry
    wake.configure(notify=settings.outbox_notify)  # commits notify other processes' relays
    tracing.setup(settings)  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    engine = create_engine(settings.database_url, **settings.engine_options())
    tracing.instrument_engine(engine)
    metrics = Metrics()
    # Shared by the request rate limits and the login throttle.
    counters = Counters(configured_redis(settings), clock)
    read_sessions = create_sessionmaker(engine, read_only=True)
    # How relayed events reach the WebSockets (a backlog past the bound is read back from
    # the outbox with these sessions).
    BUS.configure(
        configured_redis(settings),
        read_sessions,
        limit=settings.ws_bus_queue,
        batch=max(1, min(64, settings.ws_send_queue // 4)),
    )
    metrics.attach_database(read_sessions)
    metrics.attach_websockets(lambda: dataclasses.asdict(HUB.stats))

    def notifier() -> Notifier:
        built = Notifier.from_settings(settings, clock)
        metrics.attach_circuits(lambda: built.breaker.snapshot(clock.now()))
        return built

    context = AppContext(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=create_sessionmaker(engine),
        read_sessions=read_sessions,
        snapshot_sessions=create_sessionmaker(engine, read_only=True, snapshot=True),
        passwords=Passwords(
            time_cost=settings.password_time_cost,
            memory_cost_kib=settings.password_memory_cost_kib,
            concurrency=settings.password_hash_concurrency,
            queue=settings.password_hash_queue,
        ),
        tokens=TokenCodec(settings),
        login_throttle=LoginThrottle(
            counters,
            max_per_username=settings.login_max_failures_per_username,
            max_per_ip=settings.login_max_failures_per_ip,
        ),
        rate_limiter=RateLimiter(
            counters,
            clock,
            enabled=settings.rate_limit_enabled,
            reads_per_minute=settings.rate_limit_per_minute,
            writes_per_minute=settings.rate_limit_writes_per_minute,
            login_per_minute=settings.rate_limit_login_per_minute,
        ),
        principals=PrincipalCache(clock, timedelta(seconds=settings.auth_cache_seconds)),
        metrics=metrics,
        sla_policies=CatalogCache(),
        notifier_factory=notifier,
        storage_factory=lambda: build_storage(settings),
    )
    context.alert_intake = AlertIntake(context)
    return context
