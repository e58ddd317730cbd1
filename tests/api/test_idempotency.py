"""Idempotency-Key on POST."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest

from opsflow.clock import SettableClock
from opsflow.idempotency import repository as idempotency_repository
from tests.conftest import assert_error
from tests.factories import ADMIN_PASSWORD, login, make_user

BODY = {"title": "Disk full on db-1", "task_type": "INCIDENT", "priority": "HIGH"}


async def _tasks(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/tasks", headers=headers)
    return int(response.json()["pagination"]["total_items"])


async def test_same_key_same_body_replays_without_a_second_effect(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    headers = {**admin_headers, "Idempotency-Key": "create-1"}
    first = await client.post("/tasks", json=BODY, headers=headers)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    second = await client.post("/tasks", json=BODY, headers=headers)
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert second.headers["Location"] == first.headers["Location"]
    assert second.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    assert await _tasks(client, admin_headers) == 1
    audit = await client.get(
        "/audit-logs", params={"action": "TASK_CREATED"}, headers=admin_headers
    )
    assert audit.json()["pagination"]["total_items"] == 1


async def test_same_key_other_body_is_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    headers = {**admin_headers, "Idempotency-Key": "create-2"}
    assert (await client.post("/tasks", json=BODY, headers=headers)).status_code == 201
    other = await client.post("/tasks", json={**BODY, "priority": "LOW"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await _tasks(client, admin_headers) == 1


async def test_keys_are_per_principal(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    manager = await make_user(client, admin_headers, "manager")
    for headers in (admin_headers, manager.headers):
        response = await client.post(
            "/tasks", json=BODY, headers={**headers, "Idempotency-Key": "k"}
        )
        assert response.status_code == 201
        assert "Idempotent-Replayed" not in response.headers
    assert await _tasks(client, admin_headers) == 2


async def test_failed_request_is_not_remembered(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    headers = {**admin_headers, "Idempotency-Key": "create-3"}
    body = {**BODY, "assigned_to": str(uuid.uuid4())}
    first = await client.post("/tasks", json=body, headers=headers)
    assert first.status_code == 400
    again = await client.post("/tasks", json=body, headers=headers)
    assert again.status_code == 400
    assert "Idempotent-Replayed" not in again.headers
    assert await _tasks(client, admin_headers) == 0


async def test_key_expires_after_24_hours(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    headers = {**admin_headers, "Idempotency-Key": "create-4"}
    assert (await client.post("/tasks", json=BODY, headers=headers)).status_code == 201
    clock.advance(timedelta(hours=23, minutes=59))
    replay = await client.post("/tasks", json=BODY, headers=headers)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    clock.advance(timedelta(minutes=2))
    admin_headers = await login(client, "admin", ADMIN_PASSWORD)  # the old token expired too
    headers = {**admin_headers, "Idempotency-Key": "create-4"}
    fresh = await client.post("/tasks", json=BODY, headers=headers)
    assert fresh.status_code == 201
    assert "Idempotent-Replayed" not in fresh.headers
    assert await _tasks(client, admin_headers) == 2


async def test_invalid_key_is_a_validation_error(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/tasks", json=BODY, headers={**admin_headers, "Idempotency-Key": "has space"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "Idempotency-Key"
    assert await _tasks(client, admin_headers) == 0


async def test_register_and_team_creation_are_idempotent(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    headers = {**admin_headers, "Idempotency-Key": "team-1"}
    first = await client.post("/teams", json={"name": "SRE"}, headers=headers)
    second = await client.post("/teams", json={"name": "SRE"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    user = {
        "email": "x@example.com",
        "username": "xuser",
        "password": "Xuser-Pass-1",
        "role": "viewer",
    }
    headers = {**admin_headers, "Idempotency-Key": "user-1"}
    one = await client.post("/auth/register", json=user, headers=headers)
    two = await client.post("/auth/register", json=user, headers=headers)
    assert one.status_code == two.status_code == 201
    assert two.json()["id"] == one.json()["id"]


async def test_a_key_claimed_by_a_request_still_running_answers_key_in_use(
    client: httpx.AsyncClient, admin_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests with one key at once: the second looks the key up before the first has
    committed and then meets the first's row at the unique index. It answers the
    documented 409 IDEMPOTENCY_KEY_IN_USE (not a generic conflict), the first one's effect
    stays single, and a retry replays the first response."""
    headers = {**admin_headers, "Idempotency-Key": "race-1"}
    first = await client.post("/tasks", json=BODY, headers=headers)
    assert first.status_code == 201

    async def not_yet_visible(*args: object, **kwargs: object) -> None:
        return None  # the lookup ran while the other request had not committed yet

    monkeypatch.setattr(idempotency_repository, "find", not_yet_visible)
    raced = await client.post("/tasks", json=BODY, headers=headers)
    error = assert_error(raced, 409, "IDEMPOTENCY_KEY_IN_USE")
    assert error["idempotency_key"] == "race-1"
    monkeypatch.undo()

    retry = await client.post("/tasks", json=BODY, headers=headers)
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert await _tasks(client, admin_headers) == 1
