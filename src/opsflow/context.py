"""Long-lived collaborators shared by every request and job of one process."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from opsflow.auth.passwords import Passwords
from opsflow.auth.throttle import LoginThrottle
from opsflow.auth.tokens import TokenCodec
from opsflow.clock import Clock
from opsflow.config import Settings
from opsflow.db import create_engine, create_sessionmaker
from opsflow.notifications import facts
from opsflow.notifications.dispatch import Notifier
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
    _notifier: Notifier | None = field(default=None, repr=False)

    @property
    def notifier(self) -> Notifier:
        """Delivery channels, breaker and templates, built on first use (API-only
        processes never need them)."""
        if self._notifier is None:
            self._notifier = Notifier.from_settings(self.settings, self.clock)
            breaker, clock = self._notifier.breaker, self.clock
            self.metrics.attach_circuits(lambda: breaker.snapshot(clock.now()))
        return self._notifier

    @classmethod
    def build(cls, settings: Settings, clock: Clock) -> AppContext:
        facts.configure(settings.public_url)  # the links notifications carry
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
        if self._notifier is not None:
            await self._notifier.aclose()
        await self.engine.dispose()
