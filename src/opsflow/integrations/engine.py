"""The flapping engine: settle flapping incidents when no flip happened for the window,
even if the alert never sends again.

An incident marked flapping has a row in `alert_flaps` whose ``settle_at`` is the instant
its flips in the window fall back to the integration's threshold. One pass = one
transaction: due rows are claimed (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), each is
settled or re-planned before the commit, so each settlement happens once. What settling
does is the function the composition root hands in (`integrations.ingest.settle_flap`),
which goes through the task rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.context import AppContext
from opsflow.db import attempt, unit_of_work
from opsflow.errors import AppError
from opsflow.integrations import repository
from opsflow.models.integration import AlertFlap
from opsflow.workers.contract import PassReport

Settle = Callable[[AsyncSession, AppContext, AlertFlap], Awaitable[str]]


class FlappingEngine:
    """The flapping engine (`name` ``flapping``)."""

    name = "flapping"
    on_commit = False

    def __init__(self, settle: Settle, *, batch: int = 200) -> None:
        self.batch = batch
        self._settle = settle

    def _one(
        self, session: AsyncSession, ctx: AppContext, flap: AlertFlap
    ) -> Callable[[], Awaitable[str]]:
        return lambda: self._settle(session, ctx, flap)

    async def run(self, ctx: AppContext, *, batch: int) -> PassReport:
        counts = {"checked": 0, "settled": 0, "resolved": 0, "waiting": 0, "gone": 0, "failed": 0}
        lags: list[tuple[str, float]] = []
        async with unit_of_work(ctx.sessions) as session:
            now = ctx.clock.now()
            due = await repository.claim_flaps(session, now, batch)
            counts["checked"] = len(due)
            for flap in due:
                planned = flap.settle_at
                result = await attempt(session, self._one(session, ctx, flap), expected=(AppError,))
                if isinstance(result, Exception):
                    # The incident refused (say, completed meanwhile by hand): drop the check.
                    counts["failed"] += 1
                    await session.delete(flap)
                    continue
                if result in counts:
                    counts[result] += 1
                if result in ("settled", "resolved"):
                    lags.append(("settle", (now - planned).total_seconds()))
            await session.flush()
            next_due = await repository.next_flap(session)
        return PassReport.of_claim(
            self.name, due, batch, next_due=next_due, counts=counts, at=now, lags=lags
        )
