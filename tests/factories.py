"""Factories for tests: people, teams, API clients, tasks, and moving time with the engines.

One place for the helpers every test module needs, so a module builds its world in a few
lines and never imports another test module.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from opsflow.clock import SettableClock
from opsflow.composition import engine_registry
from opsflow.context import AppContext
from opsflow.workers.rounds import run_round

# The instant the settable clock starts at in the API tests.
T0 = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)

ADMIN_PASSWORD = "Admin-Pass-123"
USER_PASSWORD = "User-Pass-12345"

# The engine passes in round order, as every driver runs them (the engine contract test pins
# this order against the registry).
ALL_PASSES = (
    "sla",
    "heartbeats",
    "flapping",
    "relay",
    "escalation",
    "delivery",
    "uploads",
    "outbox",
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    response = await client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@dataclass
class Actor:
    id: str
    username: str
    role: str
    headers: dict[str, str]
    team_id: str | None = None


async def make_user(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    role: str,
    *,
    username: str | None = None,
    team_id: str | None = None,
) -> Actor:
    username = username or f"{role}-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {
        "email": f"{username}@example.com",
        "username": username,
        "password": USER_PASSWORD,
        "full_name": username.replace("-", " ").title(),
        "role": role,
    }
    if team_id:
        body["team_id"] = team_id
    response = await client.post("/auth/register", json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    headers = await login(client, username, USER_PASSWORD)
    return Actor(response.json()["id"], username, role, headers, team_id)


async def make_team(
    client: httpx.AsyncClient, admin_headers: dict[str, str], name: str | None = None
) -> str:
    response = await client.post(
        "/teams", json={"name": name or f"team-{uuid.uuid4().hex[:6]}"}, headers=admin_headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def create_api_client(
    client: httpx.AsyncClient, admin_headers: dict[str, str], scopes: list[str]
) -> dict[str, Any]:
    """A new API client with these scopes; the answer holds its one-time secret."""
    response = await client.post(
        "/api-clients",
        json={"name": f"robot-{uuid.uuid4().hex[:6]}", "scopes": scopes},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def client_token(
    client: httpx.AsyncClient, creds: dict[str, Any], scope: str | None = None
) -> httpx.Response:
    """The client-credentials token request for `creds` (the raw response)."""
    form = {
        "grant_type": "client_credentials",
        "client_id": creds["client_id"],
        "client_secret": creds["client_secret"],
    }
    if scope is not None:
        form["scope"] = scope
    return await client.post("/auth/token", data=form)


async def make_task(
    client: httpx.AsyncClient, headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    """POST /tasks with a default title; the created task as answered."""
    body = {"title": f"task-{uuid.uuid4().hex[:6]}", **fields}
    response = await client.post("/tasks", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def advance(
    ctx: AppContext, clock: SettableClock, when: datetime, *, rounds: int = 5
) -> None:
    """Set the clock to `when` and run what the engine loop runs, a few rounds (the relay
    plans what the escalation and delivery passes then act on)."""
    clock.set(when)
    for _ in range(rounds):
        await run_round(ctx, engine_registry(ctx.settings))


async def at(ctx: AppContext, clock: SettableClock, minutes: float) -> None:
    """Move the clock to T0 + `minutes` and run the engines (see `advance`)."""
    await advance(ctx, clock, T0 + timedelta(minutes=minutes))
