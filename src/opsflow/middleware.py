"""Pure ASGI middleware: request ids, body size limit, security headers, rate-limit
headers, access log; a WebSocket to a path with no WebSocket route is refused as 404, not as
a bare close.

Security headers: every answer forbids framing and sniffing and grants no browser feature
(Permissions-Policy). The Content-Security-Policy is strict: API answers may load nothing,
other pages (`/`, `/static`) only what comes from OpsFlow itself, and no inline script
anywhere. The interactive API documentation pages (vendored Swagger UI and ReDoc) get the
page policy plus inline styles and `blob:` workers, which those libraries need (ReDoc injects
its styles and runs its search index in a worker); still no inline script.
Strict-Transport-Security is sent when configured (OpsFlow served over TLS only).

The access log records the query string with secret values redacted
(:func:`opsflow.observability.logging.redact_query`)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.routing import Match, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opsflow.errors import envelope
from opsflow.observability.logging import redact_query
from opsflow.routing import route_index

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (
        b"permissions-policy",
        b"accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
        b"microphone=(), payment=(), usb=()",
    ),
]
# JSON answers load nothing.
API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Pages: only OpsFlow's own files, no inline script or style, no plugins, no framing.
PAGE_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    b"frame-ancestors 'none'"
)
DOCS_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
    b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
API_PREFIX = "/api/"
DOCS_PATHS = ("/api/v1/docs", "/api/v1/redoc")


def content_security_policy(path: str) -> bytes | None:
    if path in DOCS_PATHS:
        return DOCS_CSP
    return API_CSP if path.startswith(API_PREFIX) else PAGE_CSP


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            try:
                candidate = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if _REQUEST_ID.match(candidate):
                return candidate
            break
    return "req_" + uuid.uuid4().hex[:16]


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        larger_bodies: Mapping[str, int] | None = None,
        larger_body_prefixes: Mapping[str, int] | None = None,
        larger_body_patterns: Sequence[tuple[re.Pattern[str], int]] = (),
        hsts_max_age_seconds: int = 0,
    ) -> None:
        self.app = app
        self.hsts: tuple[bytes, bytes] | None = (
            (b"strict-transport-security", f"max-age={hsts_max_age_seconds}".encode())
            if hsts_max_age_seconds > 0
            else None
        )
        self.max_body_bytes = max_body_bytes
        # Exact paths that take bigger bodies than the default (batch ingestion).
        self.larger_bodies = dict(larger_bodies or {})
        # Path prefixes that do (alert notifications carrying many alerts).
        self.larger_body_prefixes = dict(larger_body_prefixes or {})
        # Path patterns that do (file uploads).
        self.larger_body_patterns = list(larger_body_patterns)
        self.log = structlog.get_logger("opsflow.access")

    def _limit(self, path: str) -> int:
        if path in self.larger_bodies:
            return self.larger_bodies[path]
        for prefix, limit in self.larger_body_prefixes.items():
            if path.startswith(prefix):
                return limit
        for pattern, limit in self.larger_body_patterns:
            if pattern.match(path):
                return limit
        return self.max_body_bytes

    @staticmethod
    def _too_large(limit: int) -> HTTPException:
        # An HTTPException, not an AppError: FastAPI turns any other exception raised while
        # it reads the body into a generic 400. The app's handler renders 413 in the envelope.
        return HTTPException(413, f"Request body exceeds {limit} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", []))
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_holder: dict[str, Any] = {"status": 500}

        limit = self._limit(scope["path"])
        scope["state"]["max_body_bytes"] = limit
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            scope["state"]["body_too_large"] = True

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if scope["state"].get("body_too_large"):
                raise self._too_large(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._too_large(limit)
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if b"x-request-id" not in names:
                    headers.append((b"x-request-id", request_id.encode()))
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in names)
                csp = content_security_policy(scope["path"])
                if csp is not None and b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", csp))
                if self.hsts is not None:
                    headers.append(self.hsts)
                quota = scope["state"].get("rate_limit")
                if quota is not None and b"x-ratelimit-limit" not in names:
                    headers.extend(
                        (name.lower().encode(), value.encode())
                        for name, value in quota.headers().items()
                    )
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            app = scope["app"]
            template = route_index(app).template_for(scope["path"]) or "unmatched"
            context = getattr(app.state, "context", None)
            if context is not None:
                context.metrics.http_duration.labels(
                    scope["method"], template, str(status_holder["status"])
                ).observe(elapsed)
            principal = scope["state"].get("principal")
            self.log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                query=redact_query(scope.get("query_string", b"")),
                status=status_holder["status"],
                duration_ms=round(elapsed * 1000, 2),
                user_id=str(principal.id) if principal is not None else None,
            )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand a WebSocket to its route; with none, refuse the handshake with 404 and the
        error envelope (a bare close reads as 403 to the client, an authentication problem)."""
        request_id = request_id_from(scope.get("headers", []))
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        app = scope["app"]
        routes = getattr(app.state, "websocket_routes", None)
        if routes is None:  # the few WebSocket routes among the hundreds, listed once
            routes = app.state.websocket_routes = [
                route for route in app.router.routes if isinstance(route, WebSocketRoute)
            ]
        routed = any(route.matches(scope)[0] is Match.FULL for route in routes)
        self.log.info(
            "websocket",
            path=scope["path"],
            query=redact_query(scope.get("query_string", b"")),
            routed=routed,
        )
        if routed:
            await self.app(scope, receive, send)
            return
        message = await receive()  # websocket.connect
        if message["type"] != "websocket.connect":
            return
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 4404, "reason": "Route not found"})
            return
        context = getattr(app.state, "context", None)
        body = envelope(
            code="NOT_FOUND",
            message="No WebSocket endpoint at this path",
            request_id=request_id,
            extra={"path": scope["path"]},
            now=context.clock.now() if context is not None else datetime.now(UTC),
        )
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 404,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-request-id", request_id.encode()),
                    *SECURITY_HEADERS,
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": payload})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
