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
    from opsflow.auth.cache import PrincipalCache
    from opsflow.auth.passwords import Passwords
    from opsflow.auth.throttle import LoginThrottle
    from opsflow.auth.tokens import TokenCodec
    from opsflow.notifications.dispatch import Notifier


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
    principals: PrincipalCache
    metrics: Metrics
    # Builds the delivery channels, breaker and templates on first use (API-only processes
    # never need them).
    notifier_factory: Callable[[], Notifier] | None = field(default=None, repr=False)
    _notifier: Notifier | None = field(default=None, repr=False)

    @property
    def notifier(self) -> Notifier:
        if self._notifier is None:
            if self.notifier_factory is None:
                raise RuntimeError("this context was built without notification channels")
            self._notifier = self.notifier_factory()
        return self._notifier

    async def close(self) -> None:
        if self._notifier is not None:
            await self._notifier.aclose()
        await self.engine.dispose()
