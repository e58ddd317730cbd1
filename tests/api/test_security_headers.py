"""Security headers on every answer: a strict Content-Security-Policy (nothing loads into an
API answer, pages load only OpsFlow's own files, never inline script), Permissions-Policy,
HSTS when configured; CORS answers only the allowed origins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from opsflow.app import create_app
from opsflow.clock import SettableClock
from opsflow.composition import build_context
from tests.conftest import make_settings

ALLOWED = "https://ops.example.com"


@asynccontextmanager
async def _client(database_url: str, tmp_path: Path, **overrides: Any) -> AsyncIterator[Any]:
    settings = make_settings(database_url, data_dir=tmp_path / "data", **overrides)
    context = build_context(settings, SettableClock())
    app = create_app(settings, context=context)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield c
    finally:
        await context.close()


def _directives(policy: str) -> dict[str, str]:
    return dict(part.strip().partition(" ")[::2] for part in policy.split(";"))


async def test_api_answers_and_pages_get_a_strict_policy(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/health"),
        await client.get("/users"),  # an error answer too
        await client.get("/openapi.json"),
    ):
        policy = _directives(response.headers["content-security-policy"])
        assert policy["default-src"] == "'none'"
        assert policy["frame-ancestors"] == "'none'"
        assert "geolocation=()" in response.headers["permissions-policy"]
        assert "strict-transport-security" not in response.headers
    page = await client.get("http://testserver/")
    policy = _directives(page.headers["content-security-policy"])
    assert policy["script-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert "unsafe-eval" not in page.headers["content-security-policy"]
    assert "camera=()" in page.headers["permissions-policy"]


async def test_docs_pages_load_only_vendored_assets(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc"):
        docs = await client.get(path)
        assert docs.status_code == 200
        policy = _directives(docs.headers["content-security-policy"])
        assert policy["script-src"] == "'self'"
        assert policy["default-src"] == "'self'"
        assert "<script>" not in docs.text  # no inline script
        assert "http" not in docs.text.replace("http-equiv", "")  # no other origin
        assert docs.headers["x-content-type-options"] == "nosniff"


async def test_hsts_when_configured(database_url: str, tmp_path: Path) -> None:
    async with _client(database_url, tmp_path, hsts_max_age_seconds=31_536_000) as client:
        for path in ("/", "/health", "/api/v1/users"):
            response = await client.get(path)
            assert response.headers["strict-transport-security"] == "max-age=31536000"


async def test_cors_answers_only_allowed_origins(database_url: str, tmp_path: Path) -> None:
    async with _client(database_url, tmp_path, allowed_origins=[ALLOWED]) as client:
        allowed = await client.get("/api/v1/health", headers={"Origin": ALLOWED})
        assert allowed.headers["access-control-allow-origin"] == ALLOWED
        exposed = allowed.headers["access-control-expose-headers"].lower()
        assert "x-ratelimit-remaining" in exposed
        assert "retry-after" in exposed
        other = await client.get("/api/v1/health", headers={"Origin": "https://evil.example"})
        assert other.status_code == 200
        assert "access-control-allow-origin" not in other.headers

        preflight = {"Access-Control-Request-Method": "POST"}
        ok = await client.options("/api/v1/tasks", headers={"Origin": ALLOWED, **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == ALLOWED
        refused = await client.options(
            "/api/v1/tasks", headers={"Origin": "https://evil.example", **preflight}
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers


async def test_no_cors_headers_without_an_allowlist(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"Origin": ALLOWED})
    assert "access-control-allow-origin" not in response.headers
