"""Long-lived collaborators shared by every request and job of one process.

This module only holds them: `opsflow.composition.build_context` builds them, so the core
depends on no domain package (the domain types below are imported for type checking only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from opsflow.clock import Clock
from opsflow.config import Settings
from opsflow.observability.metrics import Metrics

if TYPE_CHECKING:
    from opsflow.attachments.storage import Storage
    from opsflow.auth.cache import PrincipalCache
    from opsflow.auth.passwords import Passwords
    from opsflow.auth.ratelimit import RateLimiter
    from opsflow.auth.throttle import LoginThrottle
    from opsflow.auth.tokens import TokenCodec
    from opsflow.integrations.intake import AlertIntake
    from opsflow.notifications.dispatch import Notifier
    from opsflow.sla.service import CatalogCache


@dataclass
class AppContext:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    # For units of work that only read (GET/HEAD): on SQLite they do not queue behind writers.
    read_sessions: async_sessionmaker[AsyncSession]
    # For reads that must see one snapshot across their statements (the reports).
    snapshot_sessions: async_sessionmaker[AsyncSession]
    passwords: Passwords
    tokens: TokenCodec
    login_throttle: LoginThrottle
    rate_limiter: RateLimiter
    principals: PrincipalCache
    metrics: Metrics
    # The SLA policies, kept while the configuration's revision stays (sla.service).
    sla_policies: CatalogCache
    # Builds the delivery channels, breaker and templates on first use (API-only processes
    # never need them).
    notifier_factory: Callable[[], Notifier] | None = field(default=None, repr=False)
    _notifier: Notifier | None = field(default=None, repr=False)
    # Where attachment bytes live (a local folder or an S3 bucket), built on first use.
    storage_factory: Callable[[], Storage] | None = field(default=None, repr=False)
    _storage: Storage | None = field(default=None, repr=False)

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            if self.storage_factory is None:
                raise RuntimeError("this context was built without file storage")
            self._storage = self.storage_factory()
        return self._storage

    # The inbound alert endpoints' group-commit queue (set by the composition).
    alert_intake: AlertIntake | None = field(default=None, repr=False)

    @property
    def notifier(self) -> Notifier:
        if self._notifier is None:
            if self.notifier_factory is None:
                raise RuntimeError("this context was built without notification channels")
            self._notifier = self.notifier_factory()
        return self._notifier

    async def close(self) -> None:
        if self.alert_intake is not None:
            await self.alert_intake.aclose()
        if self._notifier is not None:
            await self._notifier.aclose()
        await self.engine.dispose()
