"""`/heartbeat-monitors` (admin and manager write, readers of tasks read) and the signals
jobs send to `/heartbeats/{key}` (authenticated by the key alone)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from opsflow.auth.deps import require
from opsflow.auth.permissions import Permission
from opsflow.auth.principal import Principal
from opsflow.db import unit_of_work
from opsflow.deps import ContextDep, SessionDep
from opsflow.errors import NotFound, ServiceUnavailable
from opsflow.heartbeats import repository, service
from opsflow.heartbeats.schemas import (
    MonitorCreate,
    MonitorRead,
    MonitorUpdate,
    PingList,
    PingRead,
    SignalResult,
)
from opsflow.idempotency.deps import IdempotentWithheld
from opsflow.kit.pagination import Page, PageDep, Pagination
from opsflow.observability.logging import get_logger

log = get_logger("opsflow.heartbeats")

router = APIRouter(prefix="/heartbeat-monitors", tags=["heartbeats"])
signals_router = APIRouter(prefix="/heartbeats", tags=["heartbeats"])

Writer = Annotated[Principal, Depends(require(Permission.MONITORS_WRITE))]
Reader = Annotated[Principal, Depends(require(Permission.TASK_READ))]

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SIGNAL_METHODS = ["GET", "POST", "HEAD"]


@router.get("", response_model=Page[MonitorRead])
async def list_monitors(
    session: SessionDep, context: ContextDep, _: Reader, page: PageDep
) -> Page[MonitorRead]:
    rows, total = await service.listing(session, page.page_size, page.offset)
    return Page(
        items=[await service.read(context, session, row) for row in rows],
        pagination=Pagination.of(page, total),
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=MonitorRead)
async def create_monitor(
    body: MonitorCreate,
    session: SessionDep,
    context: ContextDep,
    actor: Writer,
    response: Response,
    _: IdempotentWithheld,
) -> MonitorRead:
    """The answer carries the ping key (a credential): an `Idempotency-Key` replay does
    not repeat it; read the monitor at Location."""
    monitor = await service.create(session, context, actor, body)
    response.headers["Location"] = f"/api/v1/heartbeat-monitors/{monitor.id}"
    return await service.read(context, session, monitor)


@router.get("/{monitor_id}", response_model=MonitorRead)
async def get_monitor(
    monitor_id: uuid.UUID, session: SessionDep, context: ContextDep, _: Reader
) -> MonitorRead:
    return await service.read(context, session, await service.get(session, monitor_id))


@router.patch("/{monitor_id}", response_model=MonitorRead)
async def update_monitor(
    monitor_id: uuid.UUID,
    body: MonitorUpdate,
    session: SessionDep,
    context: ContextDep,
    actor: Writer,
) -> MonitorRead:
    monitor = await service.update(session, context, actor, monitor_id, body)
    return await service.read(context, session, monitor)


@router.post("/{monitor_id}/rotate-key", response_model=MonitorRead)
async def rotate_key(
    monitor_id: uuid.UUID, session: SessionDep, context: ContextDep, actor: Writer
) -> MonitorRead:
    """A new ping key; the old URL answers 404 from now on."""
    monitor = await service.rotate_key(session, context, actor, monitor_id)
    return await service.read(context, session, monitor)


@router.delete("/{monitor_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_monitor(
    monitor_id: uuid.UUID, session: SessionDep, context: ContextDep, actor: Writer
) -> Response:
    await service.delete(session, context, actor, monitor_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{monitor_id}/pings", response_model=PingList)
async def list_pings(
    monitor_id: uuid.UUID,
    session: SessionDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=repository.PINGS_KEPT)] = 50,
) -> PingList:
    """The newest signals first; a monitor keeps its newest 100."""
    await service.get(session, monitor_id)
    rows = await service.pings(session, monitor_id, limit)
    return PingList(items=[PingRead.model_validate(r) for r in rows], kept=repository.PINGS_KEPT)


# --- signals ------------------------------------------------------------------------------

# A run id: 1-64 characters, none of them a control character.
RID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]{1,64}$"
# start, fail, or an exit code 0-255 written with at most three ASCII digits.
SIGNAL_PATTERN = r"^(start|fail|[0-9]{1,2}|[01][0-9]{2}|2[0-4][0-9]|25[0-5])$"

RidQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        pattern=RID_PATTERN,
        description="a run id pairing a start with its finish (no control characters)",
    ),
]
SignalPath = Annotated[
    str,
    Path(pattern=SIGNAL_PATTERN, description="start, fail, or the job's exit code 0-255"),
]


async def _signal(
    request: Request, context: ContextDep, key: str, suffix: str | None, rid: str | None
) -> SignalResult:
    if not KEY_PATTERN.match(key):
        raise NotFound("No heartbeat monitor has this key", resource="heartbeat_monitor")
    kind, exit_code = service.parse_suffix(suffix)
    body = await request.body() if request.method == "POST" else b""
    client = request.client
    signal = service.Signal(
        kind=kind,
        exit_code=exit_code,
        rid=rid,
        method=request.method,
        remote_addr=client.host if client else None,
        user_agent=request.headers.get("user-agent"),
        body=body[: service.MAX_BODY_CHARS * 4].decode("utf-8", "replace") or None,
    )
    try:
        async with unit_of_work(context.sessions) as session:
            return await service.receive(session, context, key, signal)
    except (DBAPIError, PoolTimeout, OSError) as exc:
        # The job's scheduler retries on a 5xx: never lose a signal to a 4xx or a 500.
        log.warning("heartbeat_signal_unavailable", error=str(exc)[:300])
        raise ServiceUnavailable("The database is unavailable; retry the signal") from exc


async def success_signal(
    key: str, request: Request, context: ContextDep, rid: RidQuery = None
) -> SignalResult:
    """The job succeeded (or is alive)."""
    return await _signal(request, context, key, None, rid)


async def other_signal(
    key: str, signal: SignalPath, request: Request, context: ContextDep, rid: RidQuery = None
) -> SignalResult:
    """`start`, `fail`, or the job's exit code (0 is a success, anything else a failure)."""
    return await _signal(request, context, key, signal, rid)


for _method in SIGNAL_METHODS:
    signals_router.add_api_route(
        "/{key}",
        success_signal,
        methods=[_method],
        response_model=SignalResult,
        operation_id=f"heartbeat_success_{_method.lower()}",
    )
    signals_router.add_api_route(
        "/{key}/{signal}",
        other_signal,
        methods=[_method],
        response_model=SignalResult,
        operation_id=f"heartbeat_signal_{_method.lower()}",
    )
