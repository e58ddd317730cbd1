"""Tasks through the API: creation (targets, defaults, who may create what) and reading one.

The JSON contract is the one docs/api.md describes; roles follow docs/roles.md.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from opsflow.clock import SettableClock
from tests.api.tasks_support import (
    DEFAULT_TARGETS,
    Headers,
    create_task,
    fetch,
    iso,
    whoami,
)
from tests.conftest import T0, assert_error
from tests.factories import make_user

# --- creation -----------------------------------------------------------------------------


async def test_create_assigned_incident_matches_seed_contract(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    admin = await whoami(client, admin_headers)
    response = await client.post(
        "/tasks",
        json={
            "title": "Database connection pool exhaustion",
            "description": "Production DB hitting max connections during peak hours",
            "task_type": "INCIDENT",
            "priority": "CRITICAL",
            "assigned_to": dev.id,
            "start_sla_minutes": 15,
            "resolve_sla_minutes": 120,
            "tags": ["database", "production", "performance"],
            "metadata": {"affected_service": "api-gateway", "customer_impact": "high"},
        },
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    uuid.UUID(body["id"])
    expected = {
        "title": "Database connection pool exhaustion",
        "description": "Production DB hitting max connections during peak hours",
        "task_type": "INCIDENT",
        "priority": "CRITICAL",
        "status": "ASSIGNED",
        "created_by": admin["id"],
        "assigned_to": dev.id,
        "start_sla_minutes": 15,
        "resolve_sla_minutes": 120,
        "created_at": "2026-01-27T10:30:00Z",
        "assigned_at": "2026-01-27T10:30:00Z",
        "started_at": None,
        "completed_at": None,
        "tags": ["database", "production", "performance"],
        "metadata": {"affected_service": "api-gateway", "customer_impact": "high"},
        "customer_tier": "STANDARD",
        "version": 1,
    }
    assert {key: body[key] for key in expected} == expected
    assert body["sla_status"]["start_deadline"] == "2026-01-27T10:45:00Z"
    assert body["sla_status"]["resolve_deadline"] == "2026-01-27T12:30:00Z"
    assert body["sla_status"]["time_remaining"]["start"] == "15 minutes"
    assert body["sla_status"]["time_remaining"]["resolve"] == "2 hours"
    assert body["sla_status"]["time_remaining"]["start_seconds"] == 900
    assert body["sla_status"]["time_remaining"]["resolve_seconds"] == 7200

    assert response.headers["ETag"] == '"1"'
    location = response.headers["Location"]
    assert location == f"/api/v1/tasks/{body['id']}"
    followed = await client.get(f"http://testserver{location}", headers=admin_headers)
    assert followed.status_code == 200
    assert followed.json()["id"] == body["id"]


async def test_create_without_assignee_lands_in_created(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    body = await create_task(client, admin_headers, task_type="TASK", priority="LOW")
    assert body["status"] == "CREATED"
    assert body["assigned_to"] is None
    assert body["assigned_at"] is None
    assert body["task_type"] == "TASK"
    assert body["tags"] == []
    assert body["metadata"] == {}


@pytest.mark.parametrize("priority", ["CRITICAL", "HIGH", "MEDIUM", "LOW"])
async def test_sla_targets_default_from_priority(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock, priority: str
) -> None:
    clock.advance(minutes=7)  # deadlines follow created_at, not some fixed origin
    created_at = clock.now()
    start, resolve = DEFAULT_TARGETS[priority]
    body = await create_task(client, admin_headers, priority=priority)
    assert body["created_at"] == iso(created_at)
    assert (body["start_sla_minutes"], body["resolve_sla_minutes"]) == (start, resolve)
    assert body["sla_status"]["start_deadline"] == iso(created_at + timedelta(minutes=start))
    assert body["sla_status"]["resolve_deadline"] == iso(created_at + timedelta(minutes=resolve))
    assert body["sla_status"]["time_remaining"]["start_seconds"] == start * 60
    assert body["sla_status"]["time_remaining"]["resolve_seconds"] == resolve * 60
    detail = await fetch(client, body["id"], admin_headers)
    assert detail["sla_status"]["start_deadline"] == body["sla_status"]["start_deadline"]
    assert detail["sla_status"]["resolve_deadline"] == body["sla_status"]["resolve_deadline"]


async def test_default_priority_is_medium(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    body = await create_task(client, admin_headers)
    assert body["priority"] == "MEDIUM"
    assert (body["start_sla_minutes"], body["resolve_sla_minutes"]) == DEFAULT_TARGETS["MEDIUM"]


async def test_only_start_minutes_given_keeps_default_resolve(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    body = await create_task(client, admin_headers, priority="HIGH", start_sla_minutes=30)
    assert body["start_sla_minutes"] == 30
    assert body["resolve_sla_minutes"] == 1440
    assert body["sla_status"]["start_deadline"] == iso(T0 + timedelta(minutes=30))
    assert body["sla_status"]["resolve_deadline"] == iso(T0 + timedelta(minutes=1440))


async def test_only_resolve_minutes_below_default_start_is_accepted(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    body = await create_task(client, admin_headers, priority="CRITICAL", resolve_sla_minutes=30)
    assert body["resolve_sla_minutes"] == 30
    assert body["start_sla_minutes"] <= 30


INVALID_CREATES: list[tuple[dict[str, Any], str | None]] = [
    ({"title": "x", "start_sla_minutes": 120, "resolve_sla_minutes": 60}, None),
    ({"title": "x", "priority": "URGENT"}, "priority"),
    ({"title": "x", "task_type": "BUG"}, "task_type"),
    ({"title": "x", "customer_tier": "GOLD"}, "customer_tier"),
    ({"description": "no title"}, "title"),
    ({"title": "   "}, "title"),
    ({"title": "x" * 501}, "title"),
    ({"title": "x", "start_sla_minutes": 0}, "start_sla_minutes"),
    ({"title": "x", "assigned_to": "not-a-uuid"}, "assigned_to"),
    ({"title": "x", "assigned_to": str(uuid.UUID(int=7))}, "assigned_to"),
    ({"title": "x", "team_id": str(uuid.UUID(int=8))}, "team_id"),
    ({"title": "x", "surprise": 1}, "surprise"),
]


async def test_create_rejects_invalid_input(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    for body, field in INVALID_CREATES:
        response = await client.post("/tasks", json=body, headers=admin_headers)
        error = assert_error(response, 400, "VALIDATION_ERROR")
        if field is not None:
            assert field in [d["field"] for d in error["details"]], (body, error)
    listed = await client.get("/tasks", headers=admin_headers)
    assert listed.json()["pagination"]["total_items"] == 0


async def test_developer_may_declare_incident_but_not_create_task(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    refused = await client.post(
        "/tasks", json={"title": "Refactor", "task_type": "TASK"}, headers=dev.headers
    )
    error = assert_error(refused, 403, "FORBIDDEN")
    assert error["required_role"] in {"admin", "manager", "team_lead", "support"}
    assert (await client.get("/tasks", headers=admin_headers)).json()["items"] == []

    declared = await client.post(
        "/tasks", json={"title": "Site down", "task_type": "INCIDENT"}, headers=dev.headers
    )
    assert declared.status_code == 201, declared.text
    assert declared.json()["created_by"] == dev.id
    assert declared.json()["task_type"] == "INCIDENT"


@pytest.mark.parametrize("role", ["auditor", "viewer"])
async def test_read_only_roles_may_not_declare_incidents(
    client: httpx.AsyncClient, admin_headers: Headers, role: str
) -> None:
    actor = await make_user(client, admin_headers, role)
    response = await client.post(
        "/tasks", json={"title": "Site down", "task_type": "INCIDENT"}, headers=actor.headers
    )
    assert_error(response, 403, "FORBIDDEN")


# --- reading ------------------------------------------------------------------------------


async def test_get_task_detail(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer", username="jane.smith")
    created = await create_task(
        client,
        admin_headers,
        assigned_to=dev.id,
        priority="HIGH",
        start_sla_minutes=60,
        resolve_sla_minutes=180,
        tags=["db"],
    )
    clock.advance(minutes=5)
    detail_response = await client.get(f"/tasks/{created['id']}", headers=dev.headers)
    assert detail_response.status_code == 200
    assert detail_response.headers["ETag"] == '"1"'
    detail = detail_response.json()
    admin = await whoami(client, admin_headers)
    assert detail["created_by"] == {
        "id": admin["id"],
        "username": "admin",
        "full_name": admin["full_name"],
    }
    assert detail["assigned_to"] == {
        "id": dev.id,
        "username": "jane.smith",
        "full_name": "Jane.Smith",
    }
    assert detail["additional_assignees"] == []
    assert detail["updated_at"] == iso(T0)
    sla = detail["sla_status"]
    assert sla["state"] == "compliant"
    assert sla["start_deadline"] == iso(T0 + timedelta(minutes=60))
    assert sla["resolve_deadline"] == iso(T0 + timedelta(minutes=180))
    assert sla["start_met"] is None
    assert sla["start_time_taken"] is None
    assert sla["resolve_met"] is None
    assert sla["time_remaining"] == "55 minutes"
    assert sla["time_remaining_seconds"] == 55 * 60
    assert sla["at_risk"] is False
    assert sla["breach_count"] == 0
    assert [c["kind"] for c in sla["clocks"]] == ["START", "RESOLVE"]
    assert [c["status"] for c in sla["clocks"]] == ["ACTIVE", "ACTIVE"]
    assert detail["sla_events"] == []
    # The audit trail is for the roles that read the audit log; a developer does not.
    assert "audit_trail" not in detail
    as_admin = (await client.get(f"/tasks/{created['id']}", headers=admin_headers)).json()
    assert as_admin["audit_trail"] == [
        {
            "action": "TASK_CREATED",
            "actor": "admin",
            "actor_type": "user",
            "actor_id": admin["id"],
            "timestamp": iso(T0),
            "changes": None,
        }
    ]


async def test_unknown_task_is_not_found(client: httpx.AsyncClient, admin_headers: Headers) -> None:
    admin_id = (await whoami(client, admin_headers))["id"]
    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "", None),
        ("PATCH", "", {"title": "x"}),
        ("PATCH", "/assign", {"assigned_to": admin_id}),
        ("PATCH", "/acknowledge", None),
        ("PATCH", "/start", None),
        ("PATCH", "/block", None),
        ("PATCH", "/unblock", None),
        ("PATCH", "/complete", None),
        ("PATCH", "/snooze", {"minutes": 5}),
        ("PATCH", "/reopen", None),
        ("DELETE", "", None),
    ]
    for method, suffix, body in requests:
        missing = str(uuid.uuid4())
        response = await client.request(
            method, f"/tasks/{missing}{suffix}", json=body, headers=admin_headers
        )
        error = assert_error(response, 404, "NOT_FOUND")
        assert error["entity_type"] == "task", suffix
        assert error["entity_id"] == missing, suffix


async def test_malformed_task_id_is_a_validation_error(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    response = await client.get("/tasks/not-a-uuid", headers=admin_headers)
    assert_error(response, 400, "VALIDATION_ERROR")
