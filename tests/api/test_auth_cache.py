"""The principal cache: what a process refuses at once, and what other processes refuse
within OPSFLOW_AUTH_CACHE_SECONDS (writes made elsewhere are simulated with plain SQL,
which this process's ORM never sees)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text

from opsflow.clock import SettableClock
from opsflow.config import Settings
from opsflow.context import AppContext
from tests.conftest import assert_error, make_settings
from tests.factories import make_user

WINDOW = 5.0


@pytest.fixture
def settings(request: pytest.FixtureRequest, database_url: str) -> Settings:
    return make_settings(database_url, auth_cache_seconds=getattr(request, "param", WINDOW))


async def _revoke_elsewhere(ctx: AppContext, user_id: str) -> None:
    async with ctx.engine.begin() as connection:
        await connection.execute(
            text("UPDATE auth_sessions SET revoked_at = :now WHERE user_id = :user"),
            {"now": ctx.clock.now(), "user": user_id.replace("-", "")}
            if ctx.engine.dialect.name == "sqlite"
            else {"now": ctx.clock.now(), "user": user_id},
        )


async def test_a_revocation_made_by_another_process_is_refused_within_the_window(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_context: AppContext,
    clock: SettableClock,
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    assert (await client.get("/auth/me", headers=dev.headers)).status_code == 200
    assert len(app_context.principals) >= 1

    await _revoke_elsewhere(app_context, dev.id)
    # Within the window this process still trusts what it read...
    clock.advance(timedelta(seconds=WINDOW - 1))
    assert (await client.get("/auth/me", headers=dev.headers)).status_code == 200
    # ...and past it, it reads again and refuses.
    clock.advance(timedelta(seconds=1))
    assert_error(await client.get("/auth/me", headers=dev.headers), 401, "UNAUTHORIZED")


async def test_logout_through_this_process_is_refused_at_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    assert (await client.get("/auth/me", headers=dev.headers)).status_code == 200
    assert (await client.post("/auth/logout", headers=dev.headers)).status_code in (200, 204)
    assert_error(await client.get("/auth/me", headers=dev.headers), 401, "UNAUTHORIZED")


async def test_deactivation_and_role_change_take_effect_on_the_next_request(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    manager = await make_user(client, admin_headers, "manager")
    other = await make_user(client, admin_headers, "developer")
    team = {"name": "cache-team"}
    assert (await client.post("/teams", json=team, headers=manager.headers)).status_code == 201

    demoted = await client.patch(
        f"/users/{manager.id}", json={"role": "viewer"}, headers=admin_headers
    )
    assert demoted.status_code == 200, demoted.text
    # The cached principal (role manager) is gone with the change: the viewer is refused.
    refused = await client.post("/teams", json={"name": "cache-team-2"}, headers=manager.headers)
    assert_error(refused, 403, "FORBIDDEN")

    assert (await client.get("/auth/me", headers=other.headers)).status_code == 200
    gone = await client.post(f"/users/{other.id}/deactivate", headers=admin_headers)
    assert gone.status_code == 200, gone.text
    assert_error(await client.get("/auth/me", headers=other.headers), 401, "UNAUTHORIZED")


@pytest.mark.parametrize("settings", [0.0], indirect=True)
async def test_a_zero_window_checks_the_database_on_every_request(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_context: AppContext,
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    assert (await client.get("/auth/me", headers=dev.headers)).status_code == 200
    assert len(app_context.principals) == 0
    await _revoke_elsewhere(app_context, dev.id)
    assert_error(await client.get("/auth/me", headers=dev.headers), 401, "UNAUTHORIZED")
