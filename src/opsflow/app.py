"""The ASGI application: lifespan, middleware, error handlers, routers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from opsflow import __version__, schema
from opsflow.attachments.endpoints import router as attachments_router
from opsflow.audit.endpoints import router as audit_router
from opsflow.auth.endpoints import clients_router
from opsflow.auth.endpoints import router as auth_router
from opsflow.clock import Clock, OffsetClock, SystemClock
from opsflow.collaboration.endpoints import router as collaboration_router
from opsflow.composition import build_context, engine_registry
from opsflow.config import Settings, current_environment, environment_warnings, load_settings
from opsflow.context import AppContext
from opsflow.errors import AppError, ServiceUnavailable, envelope, validation_details
from opsflow.escalation.endpoints import router as escalation_router
from opsflow.heartbeats.endpoints import router as heartbeat_monitors_router
from opsflow.heartbeats.endpoints import signals_router as heartbeat_signals_router
from opsflow.idempotency.service import Replay, ResponseRecorder
from opsflow.integrations.endpoints import router as integrations_router
from opsflow.kit import gctune
from opsflow.middleware import RequestContextMiddleware
from opsflow.notifications.endpoints import router as notifications_router
from opsflow.notifications.endpoints import templates_router, windows_router
from opsflow.observability import tracing
from opsflow.observability.logging import configure as configure_logging
from opsflow.observability.logging import get_logger
from opsflow.openapi import install as install_openapi
from opsflow.realtime.bus import BUS, Listener
from opsflow.realtime.endpoints import REALTIME_PATHS
from opsflow.realtime.endpoints import stream as realtime_stream
from opsflow.realtime.transport import capture_raw_send
from opsflow.reports.endpoints import router as reports_router
from opsflow.routing import RouteIndex, mount_flat, route_index
from opsflow.sla.endpoints import router as sla_router
from opsflow.sla_config.endpoints import calendars_router, policies_router
from opsflow.sla_config.watcher import SlaConfigWatcher
from opsflow.system.endpoints import router as system_router
from opsflow.system.health import MigrationCheck, configured_redis
from opsflow.system.test_clock import router as test_clock_router
from opsflow.tasks.endpoints import router as tasks_router
from opsflow.teams.endpoints import router as teams_router
from opsflow.tickets.endpoints import router as tickets_router
from opsflow.users import service as users_service
from opsflow.users.endpoints import router as users_router
from opsflow.web import install_web
from opsflow.webhooks.endpoints import router as webhooks_router
from opsflow.workers.embedded import EmbeddedEngines

API_PREFIX = "/api/v1"
MULTIPART_SLACK_BYTES = 64 * 1024  # boundaries and part headers around an attached file
log = get_logger("opsflow.app")


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _render(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    details: Sequence[Mapping[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    context: AppContext = request.app.state.context
    body = envelope(
        code=code,
        message=message,
        request_id=_request_id(request),
        details=details,
        extra=extra,
        now=context.clock.now(),
    )
    response_headers = dict(headers or {})
    if request_id := _request_id(request):
        response_headers["X-Request-ID"] = request_id
    return JSONResponse(body, status_code=status, headers=response_headers)


BUSY_RETRY_AFTER_SECONDS = 1


def _is_lock_contention(exc: DBAPIError) -> bool:
    """Contention the client can retry: SQLite's write lock held past the busy timeout, or
    a PostgreSQL transaction rolled back by the server (SQLSTATE class 40: a deadlock
    between two writers, a serialization failure). Nothing of the request was committed."""
    code = getattr(exc.orig, "sqlstate", None)
    if isinstance(code, str) and code.startswith("40"):
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "database table is locked" in text


def _busy(request: Request) -> JSONResponse:
    """503 in the envelope: contention the client can retry, never a 500."""
    return _render(
        request,
        503,
        "SERVICE_UNAVAILABLE",
        "The database is busy; retry shortly",
        extra={"retry_after_seconds": BUSY_RETRY_AFTER_SECONDS},
        headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
    )


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database cannot be reached: nothing was committed, and a 503 tells senders
    (monitoring systems, batch clients) to retry."""
    log.warning("database_unavailable", error=str(exc)[:500], path=request.url.path)
    error = ServiceUnavailable("The database is unavailable; retry later", retry_after_seconds=5)
    return _render(
        request,
        error.status_code,
        error.code,
        error.message,
        extra=error.extra,
        headers=error.headers,
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        return _render(
            request,
            exc.status_code,
            exc.code,
            exc.message,
            details=exc.details,
            extra=exc.extra,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(exc.errors())
        return _render(request, 400, "VALIDATION_ERROR", "Invalid input data", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _render(
                request, 404, "NOT_FOUND", "Route not found", extra={"path": request.url.path}
            )
        if exc.status_code == 405:
            return _render(
                request,
                405,
                "METHOD_NOT_ALLOWED",
                f"Method {request.method} not allowed",
                headers={
                    "Allow": ", ".join(route_index(request.app).allowed_methods(request.url.path))
                },
            )
        if exc.status_code == 413:
            limit = getattr(
                request.state,
                "max_body_bytes",
                request.app.state.context.settings.max_request_bytes,
            )
            return _render(
                request, 413, "PAYLOAD_TOO_LARGE", str(exc.detail), extra={"max_bytes": limit}
            )
        code = {
            400: "VALIDATION_ERROR",
            401: "UNAUTHORIZED",
            403: "FORBIDDEN",
            413: "PAYLOAD_TOO_LARGE",
            415: "UNSUPPORTED_MEDIA_TYPE",
        }.get(exc.status_code, "ERROR")
        return _render(
            request, exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {})
        )

    @app.exception_handler(Replay)
    async def replay(request: Request, exc: Replay) -> Response:
        headers = {**exc.stored.headers, "Idempotent-Replayed": "true"}
        return Response(exc.stored.body, status_code=exc.stored.status_code, headers=headers)

    @app.exception_handler(StaleDataError)
    async def stale(request: Request, exc: StaleDataError) -> JSONResponse:
        return _render(request, 409, "CONFLICT", "The resource was changed concurrently; retry")

    @app.exception_handler(IntegrityError)
    async def integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        log.warning("integrity_error", error=str(exc.orig)[:500])
        return _render(request, 409, "CONFLICT", "The request conflicts with existing data")

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(request: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("database_pool_exhausted", path=request.url.path)
        return _busy(request)

    @app.exception_handler(OperationalError)
    async def operational(request: Request, exc: OperationalError) -> JSONResponse:
        if _is_lock_contention(exc):
            log.warning("database_locked", path=request.url.path, error=str(exc.orig)[:200])
            return _busy(request)
        if exc.connection_invalidated:
            return _unavailable(request, exc)
        log.exception("database_error", path=request.url.path)
        return _render(request, 500, "INTERNAL_ERROR", "An unexpected error occurred")

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if _is_lock_contention(exc):
            log.warning("database_locked", path=request.url.path, error=str(exc.orig)[:200])
            return _busy(request)
        # asyncpg reports a connection the server closed under a running statement (a
        # restart, a failover) as a plain DBAPIError that SQLAlchemy marks invalidated, and
        # a server still starting or shutting down refuses new connections with SQLSTATE
        # class 08 (connection exception) or 57P (operator intervention, e.g. 57P03
        # "not yet accepting connections"): all of them are an unavailable database.
        code = getattr(exc.orig, "sqlstate", None)
        if exc.connection_invalidated or (isinstance(code, str) and code.startswith(("08", "57P"))):
            return _unavailable(request, exc)
        log.exception("database_error", path=request.url.path)
        return _render(request, 500, "INTERNAL_ERROR", "An unexpected error occurred")

    @app.exception_handler(InterfaceError)
    @app.exception_handler(ConnectionError)
    @app.exception_handler(TimeoutError)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return _unavailable(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path)
        return _render(request, 500, "INTERNAL_ERROR", "An unexpected error occurred")


class OpsFlowAPI(FastAPI):
    """The application; a WebSocket scope keeps the server's own `send` (the broadcast fast
    path writes through it, see realtime/transport.py)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        capture_raw_send(scope, send)
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    context: AppContext | None = None,
) -> FastAPI:
    settings = settings or load_settings()
    settings.check_safe()
    configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = app.state.context
        # A logger made now, not the module's cached one: it follows the current logging
        # configuration of this start.
        config_log = get_logger("opsflow.config")
        for warning in environment_warnings(current_environment()):
            config_log.warning("configuration_warning", message=warning)
        if settings.auto_migrate:
            await anyio.to_thread.run_sync(schema.upgrade, settings.database_url)
        await users_service.bootstrap_admin(ctx)
        await app.state.migration_check.check(ctx)  # /health and /ready reuse the answer
        watcher = None
        if settings.sla_config_path is not None:
            watcher = SlaConfigWatcher(ctx, settings.sla_config_path)
            await watcher.start()
        app.state.sla_config_watcher = watcher
        listener = None
        if (redis := configured_redis(settings)) is not None:
            # relayed events from every process, for this process's sockets
            listener = Listener(redis, ctx.read_sessions)
            listener.start()
        app.state.realtime_listener = listener
        engine = None
        if settings.engine_enabled:
            engine = EmbeddedEngines(
                ctx, engine_registry(settings), interval=settings.engine_interval_seconds
            )
            engine.start()
        if settings.gc_tuning:
            gctune.tune_for_server()
        log.info(
            "started",
            version=__version__,
            database=ctx.engine.dialect.name,
            sla_engine="embedded" if engine else "off",
        )
        try:
            yield
        finally:
            if engine is not None:
                await engine.stop()
            if listener is not None:
                await listener.stop()
            await BUS.close()
            if watcher is not None:
                await watcher.stop()
            if owns_context:
                await ctx.close()

    owns_context = context is None
    app = OpsFlowAPI(
        title="OpsFlow",
        version=__version__,
        description=(
            "Tasks and incidents with autonomous SLA enforcement, audit trail and notifications."
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        # The docs pages are served from vendored assets by opsflow.web.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    if clock is None:
        # Under APP_ENV=test the server's clock can be moved forward (POST /test/clock).
        clock = OffsetClock() if settings.app_env == "test" else SystemClock()
    app.state.context = context or build_context(settings, clock)
    app.state.migration_check = MigrationCheck()
    _install_error_handlers(app)

    domain_routers: tuple[APIRouter, ...] = (
        auth_router,
        clients_router,
        users_router,
        teams_router,
        tasks_router,
        attachments_router,
        collaboration_router,
        tickets_router,
        integrations_router,
        heartbeat_monitors_router,
        heartbeat_signals_router,
        sla_router,
        policies_router,
        calendars_router,
        escalation_router,
        notifications_router,
        templates_router,
        windows_router,
        webhooks_router,
        audit_router,
        reports_router,
        system_router,
    )
    if settings.app_env == "test" and isinstance(app.state.context.clock, OffsetClock):
        domain_routers = (*domain_routers, test_clock_router)
    # Each flat route checks that a literal route does not own its path (405) itself.
    mount_flat(app, domain_routers, prefix=API_PREFIX)
    for path in REALTIME_PATHS:  # on the app itself: the 404 middleware looks there
        app.add_api_websocket_route(API_PREFIX + path, realtime_stream)
    app.include_router(system_router)
    install_openapi(app)
    app.state.route_index = RouteIndex.of(
        [*((API_PREFIX, r) for r in domain_routers), ("", system_router)]
    )

    install_web(app, api_prefix=API_PREFIX, title="OpsFlow")

    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[
                "X-Request-ID",
                "ETag",
                "Location",
                "Retry-After",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
            ],
        )
    app.add_middleware(ResponseRecorder)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_request_bytes,
        hsts_max_age_seconds=settings.hsts_max_age_seconds,
        larger_bodies={f"{API_PREFIX}/tickets": settings.max_batch_request_bytes},
        # Monitoring systems drop a notification answered 413: take big ones.
        larger_body_prefixes={f"{API_PREFIX}/integrations/": settings.max_batch_request_bytes},
        # Files: an attachment (plus the multipart framing), an upload chunk.
        larger_body_patterns=[
            (
                re.compile(rf"^{API_PREFIX}/tasks/[^/]+/attachments$"),
                settings.attachment_max_bytes + MULTIPART_SLACK_BYTES,
            ),
            (
                re.compile(rf"^{API_PREFIX}/uploads/[^/]+/chunks/[^/]+$"),
                settings.upload_max_chunk_bytes,
            ),
        ],
    )
    tracing.instrument_app(app)  # outermost; nothing happens unless tracing is on
    return app
