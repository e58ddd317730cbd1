"""Idempotency-Key on POST."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from opsflow.clock import SettableClock
from opsflow.config import Settings
from opsflow.idempotency import repository as idempotency_repository
from opsflow.idempotency.deps import idempotency_guard
from tests.conftest import assert_error, make_settings
from tests.factories import ADMIN_PASSWORD, login, make_user

BODY = {"title": "Disk full on db-1", "task_type": "INCIDENT", "priority": "HIGH"}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """A pool of one connection on PostgreSQL: every POST below must answer without a
    second connection. A request that claims its key in its unit of work and then opens
    another one would wait for itself and answer 503 after the pool timeout (with a full
    pool under load, requests like it would wait for each other)."""
    return make_settings(
        database_url, data_dir=tmp_path / "data", db_pool_size=1, db_pool_timeout_seconds=3
    )


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


# --- every creating POST -------------------------------------------------------------------


Setup = Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[dict[str, Any]]]


async def _task_id(client: httpx.AsyncClient, admin: dict[str, str]) -> str:
    developer = await make_user(client, admin, "developer")
    created = await client.post(
        "/tasks", json={"title": "Needs a hand", "assigned_to": developer.id}, headers=admin
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _fixed(path: str, **request: Any) -> Setup:
    async def setup(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
        return {"path": path, **request}

    return setup


def _on_task(suffix: str, **request: Any) -> Setup:
    async def setup(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
        return {"path": f"/tasks/{await _task_id(client, admin)}/{suffix}", **request}

    return setup


async def _new_upload(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    body = {
        "task_id": await _task_id(client, admin),
        "filename": "dump.bin",
        "size": 5,
        "sha256": hashlib.sha256(b"hello").hexdigest(),
        "chunk_size": 5 * 1024 * 1024,
    }
    return {"path": "/uploads", "json": body}


POLICY_FILE = (
    "opsflow:\n  policies:\n    imported:\n      is_active: false\n"
    "      response_minutes: 5\n      resolution_minutes: 10\n"
)
# (route, setup, whether the answer holds a credential shown once)
CREATING_POSTS: list[tuple[str, Setup, bool]] = [
    ("POST /tasks", _fixed("/tasks", json=BODY), False),
    ("POST /teams", _fixed("/teams", json={"name": "sre"}), False),
    (
        "POST /auth/register",
        _fixed(
            "/auth/register",
            json={"email": "new@example.com", "username": "newbie", "password": "Passw0rd-long"},
        ),
        False,
    ),
    ("POST /tasks/{id}/comments", _on_task("comments", json={"body": "on it"}), False),
    ("POST /tasks/{id}/escalate", _on_task("escalate", json={}), False),
    (
        "POST /tasks/{id}/attachments",
        _on_task("attachments", files={"file": ("notes.txt", b"hello", "text/plain")}),
        False,
    ),
    ("POST /uploads", _new_upload, False),
    (
        "POST /escalation-policies",
        _fixed(
            "/escalation-policies",
            json={"name": "esc", "steps": [{"targets": ["assignee"]}], "is_active": False},
        ),
        False,
    ),
    (
        "POST /maintenance-windows",
        _fixed(
            "/maintenance-windows",
            json={
                "name": "upgrade",
                "starts_at": "2030-01-01T00:00:00Z",
                "ends_at": "2030-01-01T01:00:00Z",
            },
        ),
        False,
    ),
    (
        "POST /calendars",
        _fixed(
            "/calendars",
            json={"name": "office", "timezone": "UTC", "hours": {"mon": ["09:00-17:00"]}},
        ),
        False,
    ),
    (
        "POST /sla-policies",
        _fixed(
            "/sla-policies",
            json={"name": "p1", "start_minutes": 5, "resolve_minutes": 10, "is_active": False},
        ),
        False,
    ),
    (
        "POST /sla-policies/import",
        _fixed(
            "/sla-policies/import",
            content=POLICY_FILE,
            extra_headers={"Content-Type": "application/yaml"},
        ),
        False,
    ),
    (
        "POST /tickets",
        _fixed("/tickets", json={"tickets": [{"external_id": "T-1", "title": "From afar"}]}),
        False,
    ),
    (
        "POST /webhooks",
        _fixed("/webhooks", json={"name": "hook", "url": "https://example.com/h"}),
        True,
    ),
    (
        "POST /api-clients",
        _fixed("/api-clients", json={"name": "robot", "scopes": ["tasks:read"]}),
        True,
    ),
    ("POST /integrations", _fixed("/integrations", json={"name": "am", "type": "generic"}), True),
    (
        "POST /heartbeat-monitors",
        _fixed("/heartbeat-monitors", json={"name": "nightly", "period_seconds": 300}),
        True,
    ),
]


async def _audit_total(client: httpx.AsyncClient, admin: dict[str, str]) -> int:
    response = await client.get("/audit-logs", params={"page_size": 1}, headers=admin)
    assert response.status_code == 200, response.text
    return int(response.json()["pagination"]["total_items"])


@pytest.mark.parametrize(
    ("route", "setup", "withheld"), CREATING_POSTS, ids=[c[0] for c in CREATING_POSTS]
)
async def test_every_creating_post_honours_the_key(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    route: str,
    setup: Setup,
    withheld: bool,
) -> None:
    request = await setup(client, admin_headers)
    path = request.pop("path")
    headers = {**admin_headers, **request.pop("extra_headers", {}), "Idempotency-Key": "k-1"}
    before = await _audit_total(client, admin_headers)
    first = await client.post(path, headers=headers, **request)
    assert first.status_code in (200, 201), first.text
    after = await _audit_total(client, admin_headers)
    assert after > before  # the first call changed something, audited

    second = await client.post(path, headers=headers, **request)
    assert await _audit_total(client, admin_headers) == after  # and the retry nothing
    if withheld:
        # The credential is shown once: the answer was not kept, the retry points at the
        # resource instead.
        error = assert_error(second, 409, "IDEMPOTENT_ANSWER_WITHHELD")
        assert first.headers["Location"].startswith("/api/v1/")
        assert second.headers["Location"] == first.headers["Location"]
        assert error["location"] == first.headers["Location"]
    else:
        assert second.status_code == first.status_code, second.text
        assert second.headers["Idempotent-Replayed"] == "true"
        assert second.content == first.content
    reused = await client.post(path, headers=headers, json={"something": "else"})
    assert_error(reused, 422, "IDEMPOTENCY_KEY_REUSED")


async def test_every_creating_post_route_takes_the_key(app: FastAPI) -> None:
    """A route answering 201 Created is a creating POST; each declares the key, and the
    parametrised test above exercises each."""
    creating = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and "POST" in (context.methods or set()):
            calls = {d.call for d in _dependants(route.dependant)}
            if route.status_code == 201 or idempotency_guard in calls:
                creating.add(str(context.path).removeprefix("/api/v1"))
                assert idempotency_guard in calls, context.path
    exercised = {c[0].removeprefix("POST ").replace("{id}", "{task_id}") for c in CREATING_POSTS}
    assert creating - {"/users/{user_id}/deactivate"} == exercised


def _dependants(dependant: Any) -> Iterator[Any]:
    yield dependant
    for child in dependant.dependencies:
        yield from _dependants(child)
