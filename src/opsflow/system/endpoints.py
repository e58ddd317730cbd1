"""Liveness/health and readiness. Served at the root and under /api/v1."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from opsflow import __version__, schema
from opsflow.db import READ_ONLY_OPTION
from opsflow.deps import ContextDep
from opsflow.kit.jsonable import to_jsonable
from opsflow.observability.metrics import CONTENT_TYPE

router = APIRouter(tags=["system"])


async def _database(context: ContextDep) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        engine = context.engine.execution_options(**{READ_ONLY_OPTION: True})
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            current = await connection.run_sync(schema.is_current)
    except Exception as exc:
        return {"status": "unhealthy", "error": type(exc).__name__}
    return {
        "status": "healthy",
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "dialect": context.engine.dialect.name,
        "migrations_current": current,
    }


@router.get("/health")
async def health(context: ContextDep) -> JSONResponse:
    database = await _database(context)
    services: dict[str, Any] = {
        "database": database,
        # Redis and the Celery workers arrive with the scale-out drivers; nothing uses them yet.
        "redis": {"status": "not_configured"},
        "workers": {"status": "not_configured"},
    }
    healthy = database["status"] == "healthy"
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "version": __version__,
        "timestamp": to_jsonable(context.clock.now()),
        "services": services,
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/metrics", response_class=Response)
async def metrics(context: ContextDep) -> Response:
    """Prometheus exposition: this process's instruments and the database-derived series."""
    return Response(await context.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/ready")
async def ready(context: ContextDep) -> JSONResponse:
    database = await _database(context)
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
