"""The test clock: under APP_ENV=test an application that builds its own clock can be moved
forward by an admin (`POST /test/clock`); in any other environment the route does not exist."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsflow.app import create_app
from opsflow.clock import OffsetClock
from tests.conftest import assert_error, make_settings
from tests.factories import ADMIN_PASSWORD, login, make_user

LONG_SECRET = "a-production-secret-that-is-long-enough-0123456789abcdef"


@asynccontextmanager
async def _client(database_url: str, tmp_path: Path, **overrides: Any) -> AsyncIterator[Any]:
    settings = make_settings(database_url, data_dir=tmp_path / "data", **overrides)
    app = create_app(settings)  # the application builds its own clock
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/api/v1") as c:
            yield app, c


async def test_an_admin_moves_the_clock_forward_under_app_env_test(
    database_url: str, tmp_path: Path
) -> None:
    async with _client(database_url, tmp_path) as (app, client):
        clock = app.state.context.clock
        assert isinstance(clock, OffsetClock)
        admin = await login(client, "admin", ADMIN_PASSWORD)
        before = clock.now()
        moved = await client.post("/test/clock", json={"advance_seconds": 600}, headers=admin)
        assert moved.status_code == 200, moved.text
        assert moved.json()["offset_seconds"] == 600
        now = datetime.fromisoformat(moved.json()["now"].replace("Z", "+00:00"))
        assert (now - before).total_seconds() >= 600
        # The whole application reads the moved clock.
        health = (await client.get("/health")).json()
        assert datetime.fromisoformat(health["timestamp"].replace("Z", "+00:00")) >= now

        assert_error(
            await client.post("/test/clock", json={"advance_seconds": -5}, headers=admin),
            400,
            "VALIDATION_ERROR",
        )
        manager = await make_user(client, admin, "manager")
        assert_error(
            await client.post("/test/clock", json={"advance_seconds": 5}, headers=manager.headers),
            403,
            "FORBIDDEN",
        )
        assert_error(
            await client.post("/test/clock", json={"advance_seconds": 5}), 401, "UNAUTHORIZED"
        )
        assert clock.offset.total_seconds() == 600


@pytest.mark.parametrize(
    "overrides",
    [
        {"app_env": "development"},
        {"app_env": "production", "jwt_secret_key": LONG_SECRET, "access_token_expire_minutes": 30},
    ],
    ids=["development", "production"],
)
async def test_the_route_does_not_exist_outside_app_env_test(
    database_url: str, tmp_path: Path, overrides: dict[str, Any]
) -> None:
    async with _client(database_url, tmp_path, **overrides) as (app, client):
        assert not isinstance(app.state.context.clock, OffsetClock)
        admin = await login(client, "admin", ADMIN_PASSWORD)
        answer = await client.post("/test/clock", json={"advance_seconds": 600}, headers=admin)
        assert_error(answer, 404, "NOT_FOUND")
        schema = (await client.get("/openapi.json")).json()
        assert not any(path.startswith("/api/v1/test") for path in schema["paths"])
