"""`POST /test/clock`: moves the server's clock forward. Mounted only when ``APP_ENV=test`` and
the application built its own clock (an :class:`~opsflow.clock.OffsetClock`); in any other
environment the route does not exist (404). End-to-end tests use it to make SLA thresholds,
escalations and heartbeat deadlines fire without waiting for them.

The offset lives in the process: with ``--workers`` above 1 each worker has its own, so a
test server runs one worker. The embedded engines of that process share the clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from opsflow.auth.deps import require
from opsflow.auth.permissions import Permission
from opsflow.auth.principal import Principal
from opsflow.clock import OffsetClock
from opsflow.deps import ContextDep

router = APIRouter(prefix="/test", tags=["test"])

Admin = Annotated[Principal, Depends(require(Permission.ADMINISTER))]
A_YEAR = 366 * 24 * 3600


class ClockAdvance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advance_seconds: float = Field(gt=0, le=A_YEAR, description="how far to move the clock")


class ClockRead(BaseModel):
    now: datetime
    offset_seconds: float


@router.post("/clock", response_model=ClockRead)
async def advance_clock(body: ClockAdvance, context: ContextDep, _: Admin) -> ClockRead:
    """Moves the clock forward (admin; only under ``APP_ENV=test``). It never moves back."""
    clock = context.clock
    assert isinstance(clock, OffsetClock)  # the route is mounted only with this clock
    now = clock.advance(timedelta(seconds=body.advance_seconds))
    return ClockRead(now=now, offset_seconds=clock.offset.total_seconds())
