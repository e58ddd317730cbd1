"""Long-lived collaborators shared by every request and job of one process."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from opsflow.auth.passwords import Passwords
from opsflow.auth.throttle import LoginThrottle
from opsflow.auth.tokens import TokenCodec
from opsflow.clock import Clock
from opsflow.config import Settings
from opsflow.db import create_engine, create_sessionmaker
from opsflow.observability.metrics import Metrics


@dataclass
class AppContext:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    # For units of work that only read (GET/HEAD): on SQLite they do not queue behind writers.
    read_sessions: async_sessionmaker[AsyncSession]
    passwords: Passwords
    tokens: TokenCodec
    login_throttle: LoginThrottle
    metrics: Metrics

    @classmethod
    def build(cls, settings: Settings, clock: Clock) -> AppContext:
        engine = create_engine(settings.database_url)
        metrics = Metrics()
        read_sessions = create_sessionmaker(engine, read_only=True)
        metrics.attach_database(read_sessions)
        return cls(
            settings=settings,
            clock=clock,
            engine=engine,
            sessions=create_sessionmaker(engine),
            read_sessions=read_sessions,
            passwords=Passwords(
                time_cost=settings.password_time_cost,
                memory_cost_kib=settings.password_memory_cost_kib,
            ),
            tokens=TokenCodec(settings),
            login_throttle=LoginThrottle(
                max_per_username=settings.login_max_failures_per_username,
                max_per_ip=settings.login_max_failures_per_ip,
            ),
            metrics=metrics,
        )

    async def close(self) -> None:
        await self.engine.dispose()
