"""Liveness/health and readiness. Served at the root and under /api/v1."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from opsflow import __version__
from opsflow.deps import ContextDep
from opsflow.kit.jsonable import to_jsonable
from opsflow.observability.metrics import CONTENT_TYPE
from opsflow.system import health as checks

router = APIRouter(tags=["system"])


def _migrations(request: Request) -> checks.MigrationCheck:
    state = request.app.state
    if getattr(state, "migration_check", None) is None:
        state.migration_check = checks.MigrationCheck()
    check: checks.MigrationCheck = state.migration_check
    return check


@router.get("/health")
async def health(request: Request, context: ContextDep) -> JSONResponse:
    """``healthy``; ``degraded`` (still 200) when Redis is configured but does not answer or
    every engine process's heartbeat is stale; ``unhealthy`` (503) when the database is."""
    database = await checks.database(context, _migrations(request))
    services: dict[str, Any] = {
        "database": database,
        "redis": await checks.redis(context),
        "workers": await checks.workers(context),
    }
    if database["status"] != "healthy":
        status = "unhealthy"
    elif services["redis"]["status"] == "unhealthy" or services["workers"]["status"] == "stale":
        status = "degraded"
    else:
        status = "healthy"
    body = {
        "status": status,
        "version": __version__,
        "timestamp": to_jsonable(context.clock.now()),
        "services": services,
    }
    return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)


@router.get("/metrics", response_class=Response)
async def metrics(context: ContextDep) -> Response:
    """Prometheus exposition: this process's instruments and the database-derived series."""
    return Response(await context.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/ready")
async def ready(request: Request, context: ContextDep) -> JSONResponse:
    database = await checks.database(context, _migrations(request))
    is_ready = database["status"] == "healthy" and bool(database.get("migrations_current"))
    body = {
        "status": "ready" if is_ready else "not_ready",
        "checks": {
            "database": database["status"],
            "migrations": bool(database.get("migrations_current")),
        },
        "timestamp": to_jsonable(context.clock.now()),
    }
    return JSONResponse(body, status_code=200 if is_ready else 503)
