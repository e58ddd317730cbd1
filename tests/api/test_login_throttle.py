"""Login throttling per username and per IP, driven by the settable clock."""

from __future__ import annotations

from datetime import timedelta

import httpx

from opsflow.clock import SettableClock
from tests.factories import ADMIN_PASSWORD


async def _attempt(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/auth/login", json={"username": username, "password": password})


async def test_username_locked_after_ten_failures_then_released(
    client: httpx.AsyncClient, clock: SettableClock
) -> None:
    for _ in range(10):
        assert (await _attempt(client, "admin", "wrong-password")).status_code == 401
    blocked = await _attempt(client, "ADMIN", ADMIN_PASSWORD)  # case-insensitive key
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "RATE_LIMITED"
    assert int(blocked.headers["Retry-After"]) == 15 * 60

    clock.advance(timedelta(minutes=15, seconds=1))
    assert (await _attempt(client, "admin", ADMIN_PASSWORD)).status_code == 200


async def test_success_clears_username_failures(client: httpx.AsyncClient) -> None:
    for _ in range(9):
        assert (await _attempt(client, "admin", "wrong-password")).status_code == 401
    assert (await _attempt(client, "admin", ADMIN_PASSWORD)).status_code == 200
    for _ in range(9):
        assert (await _attempt(client, "admin", "wrong-password")).status_code == 401
    assert (await _attempt(client, "admin", ADMIN_PASSWORD)).status_code == 200


async def test_ip_limit_spans_usernames(client: httpx.AsyncClient) -> None:
    for index in range(50):
        assert (await _attempt(client, f"nobody-{index}", "x" * 8)).status_code == 401
    blocked = await _attempt(client, "admin", ADMIN_PASSWORD)
    assert blocked.status_code == 429


async def test_password_grant_is_throttled_too(client: httpx.AsyncClient) -> None:
    for _ in range(10):
        response = await client.post(
            "/auth/token", data={"grant_type": "password", "username": "admin", "password": "bad"}
        )
        assert response.status_code == 401
    response = await client.post(
        "/auth/token",
        data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
    )
    assert response.status_code == 429
