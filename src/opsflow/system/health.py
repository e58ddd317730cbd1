"""What `/health` and `/ready` report: the database (and whether its schema is current),
Redis when one is configured, and the engine processes from their heartbeats."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from opsflow import schema
from opsflow.config import Settings
from opsflow.context import AppContext
from opsflow.db import READ_ONLY_OPTION, unit_of_work
from opsflow.kit.jsonable import to_jsonable
from opsflow.workers import repository
from opsflow.workers.heartbeat import stale_after

# The migration check reads Alembic's scripts and the version table (a few milliseconds of
# CPU): done once at start, then again only when the last answer is this old.
MIGRATION_CHECK_SECONDS = 30.0
REDIS_TIMEOUT_SECONDS = 1.0
HEARTBEATS_SHOWN = 20


class MigrationCheck:
    """`schema.is_current`, remembered for `every` seconds of the context's clock."""

    def __init__(self, every: float = MIGRATION_CHECK_SECONDS) -> None:
        self.every = every
        self.current: bool | None = None
        self.checked_at: datetime | None = None
        self._lock = asyncio.Lock()

    def fresh(self, now: datetime) -> bool:
        if self.checked_at is None:
            return False
        age = (now - self.checked_at).total_seconds()
        return 0 <= age < self.every

    async def check(self, ctx: AppContext) -> tuple[bool, datetime]:
        async with self._lock:
            now = ctx.clock.now()
            if self.current is None or self.checked_at is None or not self.fresh(now):
                engine = ctx.engine.execution_options(**{READ_ONLY_OPTION: True})
                async with engine.connect() as connection:
                    self.current = bool(await connection.run_sync(schema.is_current))
                self.checked_at = now
            return self.current, self.checked_at


async def database(ctx: AppContext, migrations: MigrationCheck) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        engine = ctx.engine.execution_options(**{READ_ONLY_OPTION: True})
        async with engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
        latency = time.perf_counter() - started
        current, checked_at = await migrations.check(ctx)
    except Exception as exc:
        return {"status": "unhealthy", "error": type(exc).__name__}
    return {
        "status": "healthy",
        "latency_ms": round(latency * 1000, 2),
        "dialect": ctx.engine.dialect.name,
        "migrations_current": current,
        "migrations_checked_at": to_jsonable(checked_at),
    }


def redis_url(ctx: AppContext) -> str | None:
    """The Redis this installation is configured with (the Celery broker, when one of its
    variables is set), None when none is."""
    return configured_redis(ctx.settings)


def configured_redis(settings: Settings) -> str | None:
    """`redis_url` from the settings alone."""
    if "celery_broker_url" not in settings.model_fields_set:
        return None
    url = settings.celery_broker_url
    return url if url.startswith(("redis://", "rediss://", "unix://")) else None


async def redis(ctx: AppContext) -> dict[str, Any]:
    """Connect and PING (the latency covers both); the URL is never shown."""
    url = redis_url(ctx)
    if url is None:
        return {"status": "not_configured"}
    from redis.asyncio import Redis  # only processes configured with Redis pay the import

    started = time.perf_counter()
    client = Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        await client.ping()
    except Exception as exc:
        return {"status": "unhealthy", "error": type(exc).__name__}
    finally:
        await client.aclose()
    return {"status": "healthy", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


async def workers(ctx: AppContext) -> dict[str, Any]:
    """The engine processes, newest heartbeat first: `healthy` when one was seen recently,
    `stale` when every one is overdue, `not_running` when no process runs rounds."""
    try:
        async with unit_of_work(ctx.read_sessions) as session:
            rows = await repository.recent_heartbeats(session, HEARTBEATS_SHOWN)
    except Exception as exc:
        return {"status": "unknown", "error": type(exc).__name__}
    now = ctx.clock.now()
    processes = []
    for row in rows:
        processes.append(
            {
                "host": row.host,
                "pid": row.pid,
                "driver": row.driver,
                "passes": row.passes.split(",") if row.passes else [],
                "rounds": row.rounds,
                "started_at": to_jsonable(row.started_at),
                "last_seen": to_jsonable(row.last_seen),
                "stale": now - row.last_seen > stale_after(row.interval_seconds),
            }
        )
    if not processes:
        status = "not_running"
    elif all(process["stale"] for process in processes):
        status = "stale"
    else:
        status = "healthy"
    return {"status": status, "processes": processes}
