"""Health and readiness (at the root and under
/api/v1), the error envelope for unknown routes and wrong methods, and X-Request-ID on
every response."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from opsflow import __version__
from opsflow.app import create_app
from opsflow.clock import SettableClock
from opsflow.composition import build_context
from opsflow.context import AppContext
from tests.conftest import T0, make_settings
from tests.conftest import assert_error as assert_envelope


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The shared envelope check, plus: stamped by the settable clock, which stays put here."""
    error = assert_envelope(response, status, code)
    assert error["timestamp"] == "2026-01-27T10:30:00Z"
    return error


GENERATED_ID = re.compile(r"^req_[0-9a-f]{16}$")
ROOT = "http://testserver"


# --- health and readiness -------------------------------------------------------------------


@pytest.mark.parametrize("url", [f"{ROOT}/health", f"{ROOT}/api/v1/health", "/health"])
async def test_health_has_seed_shape(client: httpx.AsyncClient, url: str) -> None:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "healthy"
    assert body["version"] == __version__
    assert body["timestamp"] == "2026-01-27T10:30:00Z"
    services = body["services"]
    assert {"database", "redis", "workers"} <= set(services)
    database = services["database"]
    assert database["status"] == "healthy"
    assert isinstance(database["latency_ms"], int | float)
    assert database["latency_ms"] >= 0
    assert database["migrations_current"] is True
    assert database["dialect"] in {"sqlite", "postgresql"}
    for service in services.values():
        assert isinstance(service["status"], str)
    # Nothing secret leaks from a public endpoint.
    assert "postgres@" not in response.text
    assert "secret" not in response.text.lower()


@pytest.mark.parametrize("url", [f"{ROOT}/ready", f"{ROOT}/api/v1/ready"])
async def test_ready(client: httpx.AsyncClient, url: str) -> None:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "healthy", "migrations": True},
        "timestamp": "2026-01-27T10:30:00Z",
    }


async def test_health_follows_the_clock(client: httpx.AsyncClient, clock: SettableClock) -> None:
    clock.set(T0.replace(hour=23, minute=59, second=58))
    assert (await client.get("/health")).json()["timestamp"] == "2026-01-27T23:59:58Z"


@pytest.fixture
async def bare_client(tmp_path: Path) -> AsyncIterator[Any]:
    """Build a client for an app on a database of our choosing, without its lifespan
    (so no admin bootstrap and no migrations)."""
    contexts: list[AppContext] = []

    def build(url: str) -> httpx.AsyncClient:
        settings = make_settings(url)
        context = build_context(settings, SettableClock(T0))
        contexts.append(context)
        app = create_app(settings, context=context)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url=ROOT)

    yield build
    for context in contexts:
        await context.close()


async def test_not_ready_before_migrations(bare_client: Any, tmp_path: Path) -> None:
    async with bare_client(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}") as c:
        for url in ("/ready", "/api/v1/ready"):
            response = await c.get(url)
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["status"] == "not_ready"
            assert body["checks"]["migrations"] is False
            assert GENERATED_ID.match(response.headers["x-request-id"])
        health = (await c.get("/health")).json()
        assert health["services"]["database"]["migrations_current"] is False


async def test_unreachable_database_is_unhealthy_and_not_ready(
    bare_client: Any, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'nested' / 'x.db'}"
    async with bare_client(url) as c:
        health = await c.get("/health")
        assert health.status_code == 503, health.text
        assert health.json()["status"] == "unhealthy"
        assert health.json()["services"]["database"]["status"] == "unhealthy"
        assert "Traceback" not in health.text
        ready = await c.get("/api/v1/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "unhealthy", "migrations": False}


# --- unknown routes and methods -------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/does-not-exist",
        "/tasks/00000000-0000-4000-8000-000000000000/frobnicate",
        "/auth",
        "/users/me/something",
        f"{ROOT}/nowhere",
        f"{ROOT}/api/v2/tasks",
        f"{ROOT}/api/v1",
    ],
)
async def test_unknown_route_is_404_envelope(client: httpx.AsyncClient, url: str) -> None:
    response = await client.get(url, headers={"X-Request-ID": "lost-1"})
    error = assert_error(response, 404, "NOT_FOUND")
    assert error["request_id"] == "lost-1"
    expected = url.removeprefix(ROOT) if url.startswith(ROOT) else f"/api/v1{url}"
    assert error["path"] == expected
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_unknown_route_needs_no_auth_to_report(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    anonymous = await client.get("/nope")
    authenticated = await client.get("/nope", headers=admin_headers)
    assert assert_error(anonymous, 404, "NOT_FOUND")["path"] == "/api/v1/nope"
    assert assert_error(authenticated, 404, "NOT_FOUND")["path"] == "/api/v1/nope"


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("DELETE", "/auth/login", {"POST"}),
        ("GET", "/auth/login", {"POST"}),
        ("PUT", "/teams", {"GET", "POST"}),
        ("PATCH", "/health", {"GET"}),
        ("POST", f"{ROOT}/ready", {"GET"}),
        ("DELETE", "/audit-logs", {"GET"}),
        ("POST", "/users/00000000-0000-4000-8000-000000000000", {"GET", "PATCH"}),
        ("PUT", "/users/me/notification-preferences", None),
    ],
)
async def test_wrong_method_is_405_envelope(
    client: httpx.AsyncClient, method: str, url: str, allowed: set[str] | None
) -> None:
    if allowed is None:  # control: this combination exists (401 without a token, not 405)
        response = await client.request(method, url, json={"preferences": []})
        assert_error(response, 401, "UNAUTHORIZED")
        return
    response = await client.request(method, url)
    error = assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert method in error["message"]
    advertised = {m.strip() for m in response.headers["allow"].split(",")}
    assert advertised
    assert advertised <= allowed
    assert method not in advertised


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("PUT", "/teams", {"GET", "POST"}),
        ("POST", "/users/00000000-0000-4000-8000-000000000000", {"GET", "PATCH"}),
        ("DELETE", "/users/me/notification-preferences", {"GET", "PUT"}),
    ],
)
async def test_405_allow_header_lists_every_method(
    client: httpx.AsyncClient, method: str, url: str, allowed: set[str]
) -> None:
    response = await client.request(method, url)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed


# --- X-Request-ID ---------------------------------------------------------------------------


async def test_request_id_generated_when_absent(client: httpx.AsyncClient) -> None:
    ids = set()
    for _ in range(3):
        response = await client.get("/health")
        assert GENERATED_ID.match(response.headers["x-request-id"])
        ids.add(response.headers["x-request-id"])
    assert len(ids) == 3


@pytest.mark.parametrize(
    "request_id",
    ["abc", "req_123", "a.b:c-d_e", "x" * 128, str(uuid.uuid4()), "0"],
)
async def test_valid_request_id_is_echoed(
    client: httpx.AsyncClient, admin_headers: dict[str, str], request_id: str
) -> None:
    calls = [
        client.get("/health", headers={"X-Request-ID": request_id}),
        client.get(f"{ROOT}/ready", headers={"X-Request-ID": request_id}),
        client.get("/users", headers={**admin_headers, "X-Request-ID": request_id}),
        client.get("/users", headers={"X-Request-ID": request_id}),  # 401
        client.get("/nope", headers={"X-Request-ID": request_id}),  # 404
        client.delete("/health", headers={"X-Request-ID": request_id}),  # 405
        client.post("/teams", json={}, headers={**admin_headers, "X-Request-ID": request_id}),
        client.post(
            "/auth/login",
            json={"username": "admin", "password": "Wrong-Pass-1"},
            headers={"X-Request-ID": request_id},
        ),
    ]
    for call in calls:
        response = await call
        assert response.headers["x-request-id"] == request_id, response.request.url
        if response.status_code >= 400:
            assert response.json()["error"]["request_id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        "has space",
        "x" * 129,
        "semi;colon",
        "slash/inside",
        "<script>alert(1)</script>",
        "",
        b"caf\xe9",
        "new\tline",
        'quote"d',
    ],
    ids=[
        "space",
        "too-long",
        "semicolon",
        "slash",
        "html",
        "empty",
        "latin1",
        "tab",
        "quote",
    ],
)
async def test_invalid_request_id_is_replaced(
    client: httpx.AsyncClient, request_id: str | bytes
) -> None:
    for call in (
        client.get("/health", headers=cast(Any, {"X-Request-ID": request_id})),
        client.get("/users", headers=cast(Any, {"X-Request-ID": request_id})),
    ):
        response = await call
        echoed = response.headers["x-request-id"]
        assert GENERATED_ID.match(echoed), echoed
        if response.status_code >= 400:
            assert response.json()["error"]["request_id"] == echoed


async def test_request_id_header_appears_once(client: httpx.AsyncClient) -> None:
    response = await client.get("/users", headers={"X-Request-ID": "only-once"})
    assert response.headers.get_list("x-request-id") == ["only-once"]
    ok = await client.get("/health", headers={"X-Request-ID": "only-once"})
    assert ok.headers.get_list("x-request-id") == ["only-once"]


async def test_security_headers(client: httpx.AsyncClient) -> None:
    for response in (await client.get("/health"), await client.get("/users")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"


# --- API description ------------------------------------------------------------------------


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200, spec.text
    paths = spec.json()["paths"]
    for path in ("/api/v1/auth/login", "/api/v1/auth/token", "/api/v1/audit-logs/verify"):
        assert path in paths
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
    root = await client.get(f"{ROOT}/")
    assert root.status_code == 200
    assert '<script type="module" src="/static/js/main.js">' in root.text
