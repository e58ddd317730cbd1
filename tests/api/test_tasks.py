"""Tasks through the API: creation, detail, every action, the status machine, If-Match,
SLA targets and status over (moved) time, reach of scoped roles, and the audit rows.

The JSON contract is the one docs/api.md describes; roles follow docs/roles.md.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from opsflow.clock import SettableClock
from tests.conftest import T0, assert_error
from tests.factories import Actor, make_team, make_user

Headers = dict[str, str]

# The built-in targets (minutes): priority -> (start, resolve).
DEFAULT_TARGETS = {
    "CRITICAL": (60, 240),
    "HIGH": (240, 1440),
    "MEDIUM": (480, 4320),
    "LOW": (1440, 10080),
}

# The status machine (docs/api.md), written out independently of src: for each status, the
# actions allowed from it and the status each one lands in.
ALLOWED: dict[str, dict[str, str]] = {
    "CREATED": {
        "update": "CREATED",
        "assign": "ASSIGNED",
        "acknowledge": "ASSIGNED",
        "start": "IN_PROGRESS",
        "snooze": "CREATED",
        "pause_sla": "CREATED",
        "resume_sla": "CREATED",
        "cancel": "CANCELLED",
    },
    "ASSIGNED": {
        "update": "ASSIGNED",
        "assign": "ASSIGNED",
        "acknowledge": "ASSIGNED",
        "start": "IN_PROGRESS",
        "snooze": "ASSIGNED",
        "pause_sla": "ASSIGNED",
        "resume_sla": "ASSIGNED",
        "cancel": "CANCELLED",
    },
    "IN_PROGRESS": {
        "update": "IN_PROGRESS",
        "assign": "IN_PROGRESS",
        "block": "BLOCKED",
        "complete": "COMPLETED",
        "snooze": "IN_PROGRESS",
        "pause_sla": "IN_PROGRESS",
        "resume_sla": "IN_PROGRESS",
        "cancel": "CANCELLED",
    },
    "BLOCKED": {
        "update": "BLOCKED",
        "assign": "BLOCKED",
        "unblock": "IN_PROGRESS",
        "complete": "COMPLETED",
        "snooze": "BLOCKED",
        "pause_sla": "BLOCKED",
        "resume_sla": "BLOCKED",
        "cancel": "CANCELLED",
    },
    "COMPLETED": {"update": "COMPLETED", "reopen": "IN_PROGRESS"},
    "CANCELLED": {},
}
ACTIONS = (
    "update",
    "assign",
    "acknowledge",
    "start",
    "block",
    "unblock",
    "complete",
    "snooze",
    "pause_sla",
    "resume_sla",
    "reopen",
    "cancel",
)


# --- helpers ------------------------------------------------------------------------------


def iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


async def create_task(
    client: httpx.AsyncClient, headers: Headers, *, expect: int = 201, **fields: Any
) -> dict[str, Any]:
    body = {"title": "Investigate latency", **fields}
    response = await client.post("/tasks", json=body, headers=headers)
    assert response.status_code == expect, response.text
    return dict(response.json())


async def act(
    client: httpx.AsyncClient,
    task_id: str,
    action: str,
    headers: Headers,
    body: dict[str, Any] | None = None,
    *,
    expect: int | None = 200,
) -> httpx.Response:
    response = await client.patch(f"/tasks/{task_id}/{action}", json=body, headers=headers)
    if expect is not None:
        assert response.status_code == expect, response.text
    return response


async def fetch(client: httpx.AsyncClient, task_id: str, headers: Headers) -> dict[str, Any]:
    response = await client.get(f"/tasks/{task_id}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def audit_rows(
    client: httpx.AsyncClient, admin_headers: Headers, task_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        "/audit-logs",
        params={"entity_type": "task", "entity_id": task_id, "page_size": 100},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    return sorted(response.json()["items"], key=lambda row: row["seq"])


async def whoami(client: httpx.AsyncClient, headers: Headers) -> dict[str, Any]:
    response = await client.get("/auth/me", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def do_action(
    client: httpx.AsyncClient, task_id: str, action: str, headers: Headers, assignee_id: str
) -> httpx.Response:
    """Perform one status-machine action with a valid body."""
    if action == "update":
        return await client.patch(f"/tasks/{task_id}", json={"title": "Renamed"}, headers=headers)
    if action == "cancel":
        return await client.delete(f"/tasks/{task_id}", headers=headers)
    if action == "pause_sla":
        return await client.patch(f"/tasks/{task_id}/sla/pause", headers=headers)
    if action == "resume_sla":
        # Resuming needs paused clocks; where pausing is refused, so is resuming.
        await client.patch(f"/tasks/{task_id}/sla/pause", headers=headers)
        return await client.patch(f"/tasks/{task_id}/sla/resume", headers=headers)
    body: dict[str, Any] | None = None
    if action == "assign":
        body = {"assigned_to": assignee_id}
    elif action == "snooze":
        body = {"minutes": 30}
    return await client.patch(f"/tasks/{task_id}/{action}", json=body, headers=headers)


async def task_in_status(
    client: httpx.AsyncClient, headers: Headers, status: str, assignee_id: str
) -> str:
    """A fresh task driven to `status` through the API."""
    if status == "CREATED":
        return str((await create_task(client, headers))["id"])
    task_id = str((await create_task(client, headers, assigned_to=assignee_id))["id"])
    if status == "CANCELLED":
        response = await client.delete(f"/tasks/{task_id}", headers=headers)
        assert response.status_code == 204, response.text
        return task_id
    steps = {
        "ASSIGNED": [],
        "IN_PROGRESS": ["start"],
        "BLOCKED": ["start", "block"],
        "COMPLETED": ["start", "complete"],
    }[status]
    for step in steps:
        await act(client, task_id, step, headers)
    assert (await fetch(client, task_id, headers))["status"] == status
    return task_id


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


# --- actions ------------------------------------------------------------------------------


async def test_assign_and_reassign(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    first = await make_user(client, admin_headers, "developer", username="bob.jones")
    second = await make_user(client, admin_headers, "developer")
    task = await create_task(client, admin_headers)
    clock.advance(minutes=30)
    response = await act(client, task["id"], "assign", admin_headers, {"assigned_to": first.id})
    body = response.json()
    assert body["status"] == "ASSIGNED"
    assert body["assigned_to"] == {
        "id": first.id,
        "username": "bob.jones",
        "full_name": "Bob.Jones",
    }
    assert body["assigned_at"] == iso(T0 + timedelta(minutes=30))
    assert body["version"] == 2
    assert response.headers["ETag"] == '"2"'

    clock.advance(minutes=10)
    body = (
        await act(client, task["id"], "assign", admin_headers, {"assigned_to": second.id})
    ).json()
    assert body["status"] == "ASSIGNED"
    assert body["assigned_to"]["id"] == second.id
    assert body["assigned_at"] == iso(T0 + timedelta(minutes=40))

    rows = [
        r
        for r in await audit_rows(client, admin_headers, task["id"])
        if r["action"] == "TASK_ASSIGNED"
    ]
    assert rows[0]["changes"]["assigned_to"] == {"from": None, "to": first.id}
    assert rows[0]["changes"]["status"] == {"from": "CREATED", "to": "ASSIGNED"}
    assert rows[1]["changes"]["assigned_to"] == {"from": first.id, "to": second.id}
    assert "status" not in rows[1]["changes"]


async def test_assign_requires_an_active_user(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    task = await create_task(client, admin_headers)
    unknown = await act(
        client, task["id"], "assign", admin_headers, {"assigned_to": str(uuid.uuid4())}, expect=None
    )
    assert_error(unknown, 400, "VALIDATION_ERROR")
    gone = await make_user(client, admin_headers, "developer")
    deactivated = await client.post(f"/users/{gone.id}/deactivate", headers=admin_headers)
    assert deactivated.status_code == 200, deactivated.text
    inactive = await act(
        client, task["id"], "assign", admin_headers, {"assigned_to": gone.id}, expect=None
    )
    assert_error(inactive, 400, "VALIDATION_ERROR")
    assert (await fetch(client, task["id"], admin_headers))["status"] == "CREATED"


async def test_acknowledge_stops_the_start_clock(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    task = await create_task(
        client, admin_headers, assigned_to=dev.id, start_sla_minutes=30, resolve_sla_minutes=600
    )
    clock.advance(minutes=10)
    body = (await act(client, task["id"], "acknowledge", dev.headers)).json()
    assert body["status"] == "ASSIGNED"
    assert body["acknowledged_at"] == iso(T0 + timedelta(minutes=10))
    assert body["started_at"] is None
    assert body["sla_status"]["start_met"] is True
    assert body["sla_status"]["start_time_taken"] == "10 minutes"
    assert body["sla_status"]["clocks"][0]["status"] == "MET"

    # Long past the start deadline: the stopped START clock stays met, nothing is breached.
    clock.advance(minutes=60)
    sla = (await fetch(client, task["id"], dev.headers))["sla_status"]
    assert sla["start_met"] is True
    assert sla["breach_count"] == 0
    assert sla["state"] == "compliant"
    assert sla["time_remaining"] == "8 hours 50 minutes"  # the RESOLVE clock: 600 - 70 min

    again = await act(client, task["id"], "acknowledge", dev.headers, expect=None)
    assert_error(again, 409, "CONFLICT")

    rows = await audit_rows(client, admin_headers, task["id"])
    ack = [r for r in rows if r["action"] == "TASK_ACKNOWLEDGED"]
    assert len(ack) == 1
    assert ack[0]["actor"]["id"] == dev.id
    assert ack[0]["changes"]["acknowledged_at"] == {
        "from": None,
        "to": iso(T0 + timedelta(minutes=10)),
    }


async def test_acknowledging_an_unassigned_task_takes_it(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    manager = await make_user(client, admin_headers, "manager")
    task = await create_task(client, admin_headers)
    body = (await act(client, task["id"], "acknowledge", manager.headers)).json()
    assert body["status"] == "ASSIGNED"
    assert body["assigned_to"]["id"] == manager.id
    assert body["assigned_at"] == iso(T0)


async def test_starting_an_unassigned_task_assigns_the_starter(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    manager = await make_user(client, admin_headers, "manager")
    task = await create_task(client, admin_headers, start_sla_minutes=20, resolve_sla_minutes=200)
    clock.advance(minutes=12)
    body = (await act(client, task["id"], "start", manager.headers)).json()
    assert body["status"] == "IN_PROGRESS"
    assert body["assigned_to"]["id"] == manager.id
    assert body["assigned_at"] == iso(T0 + timedelta(minutes=12))
    assert body["started_at"] == iso(T0 + timedelta(minutes=12))
    assert body["sla_status"]["start_met"] is True
    assert body["sla_status"]["start_time_taken"] == "12 minutes"
    [row] = [
        r
        for r in await audit_rows(client, admin_headers, task["id"])
        if r["action"] == "TASK_STARTED"
    ]
    assert row["changes"]["status"] == {"from": "CREATED", "to": "IN_PROGRESS"}
    assert row["changes"]["assigned_to"] == {"from": None, "to": manager.id}
    assert row["changes"]["started_at"] == {"from": None, "to": iso(T0 + timedelta(minutes=12))}


async def test_block_and_unblock_with_reason(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    task = await create_task(client, admin_headers, assigned_to=dev.id)
    await act(client, task["id"], "start", dev.headers)
    clock.advance(minutes=5)
    body = (
        await act(client, task["id"], "block", dev.headers, {"reason": "waiting on vendor"})
    ).json()
    assert body["status"] == "BLOCKED"
    assert body["blocked_reason"] == "waiting on vendor"
    assert body["blocked_at"] == iso(T0 + timedelta(minutes=5))

    clock.advance(minutes=5)
    body = (
        await act(client, task["id"], "unblock", dev.headers, {"reason": "vendor replied"})
    ).json()
    assert body["status"] == "IN_PROGRESS"
    assert body["blocked_reason"] is None
    assert body["blocked_at"] is None

    rows = {r["action"]: r for r in await audit_rows(client, admin_headers, task["id"])}
    assert rows["TASK_BLOCKED"]["changes"]["status"] == {"from": "IN_PROGRESS", "to": "BLOCKED"}
    assert rows["TASK_BLOCKED"]["changes"]["blocked_reason"] == {
        "from": None,
        "to": "waiting on vendor",
    }
    assert rows["TASK_UNBLOCKED"]["changes"]["status"] == {"from": "BLOCKED", "to": "IN_PROGRESS"}
    assert rows["TASK_UNBLOCKED"]["changes"]["blocked_reason"] == {
        "from": "waiting on vendor",
        "to": None,
    }


async def test_block_reason_is_validated(client: httpx.AsyncClient, admin_headers: Headers) -> None:
    task_id = await task_in_status(
        client, admin_headers, "IN_PROGRESS", (await whoami(client, admin_headers))["id"]
    )
    response = await act(
        client, task_id, "block", admin_headers, {"reason": "x" * 2001}, expect=None
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert (await fetch(client, task_id, admin_headers))["status"] == "IN_PROGRESS"


async def test_complete_with_resolution_notes(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    task = await create_task(
        client, admin_headers, assigned_to=dev.id, start_sla_minutes=15, resolve_sla_minutes=120
    )
    clock.advance(minutes=5)
    await act(client, task["id"], "start", dev.headers)
    clock.advance(minutes=70)
    body = (
        await act(
            client, task["id"], "complete", dev.headers, {"resolution_notes": "Raised pool to 50"}
        )
    ).json()
    assert body["status"] == "COMPLETED"
    assert body["completed_at"] == iso(T0 + timedelta(minutes=75))
    assert body["resolution_notes"] == "Raised pool to 50"
    sla = body["sla_status"]
    assert sla["start_met"] is True
    assert sla["resolve_met"] is True
    assert sla["total_time"] == "1 hour 15 minutes"
    assert sla["time_remaining"] is None
    assert [c["status"] for c in sla["clocks"]] == ["MET", "MET"]
    [row] = [
        r
        for r in await audit_rows(client, admin_headers, task["id"])
        if r["action"] == "TASK_COMPLETED"
    ]
    assert row["changes"]["status"] == {"from": "IN_PROGRESS", "to": "COMPLETED"}
    assert row["changes"]["resolution_notes"] == {"from": None, "to": "Raised pool to 50"}
    assert row["changes"]["completed_at"] == {"from": None, "to": iso(T0 + timedelta(minutes=75))}


async def test_complete_a_blocked_task(client: httpx.AsyncClient, admin_headers: Headers) -> None:
    admin_id = (await whoami(client, admin_headers))["id"]
    task_id = await task_in_status(client, admin_headers, "BLOCKED", admin_id)
    body = (await act(client, task_id, "complete", admin_headers)).json()
    assert body["status"] == "COMPLETED"
    assert body["blocked_reason"] is None
    assert body["resolution_notes"] is None


async def test_snooze_with_minutes_or_until(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    task = await create_task(client, admin_headers, assigned_to=dev.id)
    body = (await act(client, task["id"], "snooze", admin_headers, {"minutes": 45})).json()
    assert body["status"] == "ASSIGNED"
    assert body["snoozed_until"] == iso(T0 + timedelta(minutes=45))

    clock.advance(minutes=10)
    until = T0 + timedelta(hours=3)
    body = (
        await act(
            client, task["id"], "snooze", admin_headers, {"until": iso(until), "reason": "night"}
        )
    ).json()
    assert body["snoozed_until"] == iso(until)

    rows = [
        r
        for r in await audit_rows(client, admin_headers, task["id"])
        if r["action"] == "TASK_SNOOZED"
    ]
    assert [r["changes"]["snoozed_until"] for r in rows] == [
        {"from": None, "to": iso(T0 + timedelta(minutes=45))},
        {"from": iso(T0 + timedelta(minutes=45)), "to": iso(until)},
    ]

    # Starting the task ends the snooze.
    body = (await act(client, task["id"], "start", dev.headers)).json()
    assert body["snoozed_until"] is None


async def test_snooze_rejects_invalid_requests(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    task = await create_task(client, admin_headers)
    bodies: list[dict[str, Any]] = [
        {},
        {"minutes": 10, "until": "2026-01-27T12:00:00Z"},
        {"minutes": 0},
        {"minutes": 10081},
        {"until": "2026-01-27T10:00:00Z"},  # in the past
        {"until": "2026-01-27T10:30:00Z"},  # now
        {"until": "2026-02-05T10:30:00Z"},  # more than 7 days ahead
        {"until": "2026-01-27T12:00:00"},  # no timezone
    ]
    for body in bodies:
        response = await act(client, task["id"], "snooze", admin_headers, body, expect=None)
        assert_error(response, 400, "VALIDATION_ERROR")
    detail = await fetch(client, task["id"], admin_headers)
    assert detail["snoozed_until"] is None
    assert detail["version"] == 1


async def test_reopen_continues_the_resolve_clock(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    task = await create_task(
        client, admin_headers, assigned_to=dev.id, start_sla_minutes=15, resolve_sla_minutes=120
    )
    clock.advance(minutes=5)
    await act(client, task["id"], "start", dev.headers)
    clock.advance(minutes=55)  # completed after 60 of its 120 minutes
    await act(client, task["id"], "complete", dev.headers)

    clock.advance(hours=3)  # it stays completed for 3 hours
    response = await act(client, task["id"], "reopen", dev.headers, {"reason": "came back"})
    body = response.json()
    assert body["status"] == "IN_PROGRESS"
    assert body["completed_at"] is None
    assert body["started_at"] == iso(T0 + timedelta(minutes=5))
    new_deadline = T0 + timedelta(minutes=120) + timedelta(hours=3)
    assert body["sla_status"]["resolve_deadline"] == iso(new_deadline)
    assert body["sla_status"]["start_deadline"] == iso(T0 + timedelta(minutes=15))
    assert body["sla_status"]["time_remaining"] == "1 hour"
    assert body["sla_status"]["time_remaining_seconds"] == 3600
    assert body["sla_status"]["resolve_met"] is None
    assert body["sla_status"]["state"] == "compliant"

    [row] = [
        r
        for r in await audit_rows(client, admin_headers, task["id"])
        if r["action"] == "TASK_REOPENED"
    ]
    assert row["actor"]["id"] == dev.id
    assert row["changes"]["status"] == {"from": "COMPLETED", "to": "IN_PROGRESS"}
    assert row["changes"]["completed_at"] == {"from": iso(T0 + timedelta(minutes=60)), "to": None}
    assert row["changes"]["resolve_deadline"] == {
        "from": iso(T0 + timedelta(minutes=120)),
        "to": iso(new_deadline),
    }

    # 50 more minutes of work: 110 of 120 used in total, still within the target.
    clock.advance(minutes=50)
    body = (await act(client, task["id"], "complete", dev.headers)).json()
    assert body["sla_status"]["resolve_met"] is True
    assert body["sla_status"]["total_time"] == "1 hour 50 minutes"


async def test_cancel_soft_deletes(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    task = await create_task(client, admin_headers, title="Obsolete")
    kept = await create_task(client, admin_headers, title="Kept")
    clock.advance(minutes=20)
    response = await client.delete(f"/tasks/{task['id']}", headers=admin_headers)
    assert response.status_code == 204
    assert response.content == b""

    detail = await fetch(client, task["id"], admin_headers)
    assert detail["status"] == "CANCELLED"
    assert detail["deleted_at"] == iso(T0 + timedelta(minutes=20))
    assert detail["cancelled_at"] == iso(T0 + timedelta(minutes=20))
    assert [c["status"] for c in detail["sla_status"]["clocks"]] == ["CANCELLED", "CANCELLED"]
    assert detail["audit_trail"][-1]["action"] == "TASK_CANCELLED"
    assert detail["audit_trail"][-1]["changes"]["status"] == {"from": "CREATED", "to": "CANCELLED"}

    listed = (await client.get("/tasks", headers=admin_headers)).json()
    assert [i["id"] for i in listed["items"]] == [kept["id"]]
    assert listed["pagination"]["total_items"] == 1
    everything = (
        await client.get("/tasks", params={"include_deleted": "true"}, headers=admin_headers)
    ).json()
    assert {i["id"] for i in everything["items"]} == {task["id"], kept["id"]}
    cancelled = (
        await client.get(
            "/tasks",
            params={"include_deleted": "true", "status": "CANCELLED"},
            headers=admin_headers,
        )
    ).json()
    assert [i["id"] for i in cancelled["items"]] == [task["id"]]


# --- the status machine -------------------------------------------------------------------


@pytest.mark.parametrize("status", [s for s, allowed in ALLOWED.items() if allowed])
async def test_allowed_transitions(
    client: httpx.AsyncClient, admin_headers: Headers, status: str
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    other = await make_user(client, admin_headers, "developer")
    for action, target in ALLOWED[status].items():
        task_id = await task_in_status(client, admin_headers, status, dev.id)
        response = await do_action(client, task_id, action, admin_headers, other.id)
        assert response.status_code in (200, 204), (status, action, response.text)
        assert (await fetch(client, task_id, admin_headers))["status"] == target, (status, action)


@pytest.mark.parametrize("status", list(ALLOWED))
async def test_invalid_transitions_name_the_allowed_ones(
    client: httpx.AsyncClient, admin_headers: Headers, status: str
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    task_id = await task_in_status(client, admin_headers, status, dev.id)
    before = await fetch(client, task_id, admin_headers)
    expected = set(ALLOWED[status].items())
    refused = [a for a in ACTIONS if a not in ALLOWED[status]]
    assert refused
    for action in refused:
        response = await do_action(client, task_id, action, admin_headers, dev.id)
        error = assert_error(response, 409, "INVALID_TRANSITION")
        assert error["current_status"] == status
        assert error["action"] == action
        allowed = [(t["action"], t["to"]) for t in error["allowed_transitions"]]
        assert len(allowed) == len(set(allowed))
        assert set(allowed) == expected, action
    after = await fetch(client, task_id, admin_headers)
    assert after["status"] == status
    assert after["version"] == before["version"]
    assert after["audit_trail"] == before["audit_trail"]


@pytest.mark.parametrize(
    ("status", "action"),
    [("CREATED", "complete"), ("IN_PROGRESS", "reopen"), ("CANCELLED", "start")],
)
async def test_invalid_transition_examples(
    client: httpx.AsyncClient, admin_headers: Headers, status: str, action: str
) -> None:
    admin_id = (await whoami(client, admin_headers))["id"]
    task_id = await task_in_status(client, admin_headers, status, admin_id)
    response = await act(client, task_id, action, admin_headers, expect=None)
    error = assert_error(response, 409, "INVALID_TRANSITION")
    assert {t["action"] for t in error["allowed_transitions"]} == set(ALLOWED[status])


# --- PATCH and If-Match -------------------------------------------------------------------


async def test_update_fields_with_if_match(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    team = await make_team(client, admin_headers)
    task = await create_task(client, admin_headers, tags=["db"])
    clock.advance(minutes=3)
    changes = {
        "title": "Renamed",
        "description": "Updated description with new findings",
        "tags": ["db", "resolved"],
        "metadata": {"ticket": "OPS-1"},
        "service": "billing",
        "customer_tier": "ENTERPRISE",
        "task_type": "INCIDENT",
        "team_id": team,
    }
    response = await client.patch(
        f"/tasks/{task['id']}", json=changes, headers={**admin_headers, "If-Match": '"1"'}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in changes} == changes
    assert body["version"] == 2
    assert body["updated_at"] == iso(T0 + timedelta(minutes=3))
    assert response.headers["ETag"] == '"2"'

    stale = await client.patch(
        f"/tasks/{task['id']}",
        json={"title": "Lost update"},
        headers={**admin_headers, "If-Match": '"1"'},
    )
    assert_error(stale, 412, "PRECONDITION_FAILED")
    garbage = await client.patch(
        f"/tasks/{task['id']}",
        json={"title": "Lost update"},
        headers={**admin_headers, "If-Match": "banana"},
    )
    assert_error(garbage, 400, "VALIDATION_ERROR")
    detail = await fetch(client, task["id"], admin_headers)
    assert detail["title"] == "Renamed"
    assert detail["version"] == 2

    for if_match, title in (("2", "Plain"), ('W/"3"', "Weak"), ("*", "Any")):
        response = await client.patch(
            f"/tasks/{task['id']}",
            json={"title": title},
            headers={**admin_headers, "If-Match": if_match},
        )
        assert response.status_code == 200, (if_match, response.text)
    response = await client.patch(
        f"/tasks/{task['id']}", json={"title": "No header"}, headers=admin_headers
    )
    assert response.status_code == 200
    assert response.json()["version"] == 6

    [row] = [
        r
        for r in await audit_rows(client, admin_headers, task["id"])
        if r["action"] == "TASK_UPDATED"
    ][:1]
    assert row["changes"]["title"] == {"from": "Investigate latency", "to": "Renamed"}
    assert row["changes"]["tags"] == {"from": ["db"], "to": ["db", "resolved"]}
    assert row["changes"]["customer_tier"] == {"from": "STANDARD", "to": "ENTERPRISE"}
    assert row["changes"]["team_id"] == {"from": None, "to": team}


async def test_update_rejects_invalid_fields(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    task = await create_task(client, admin_headers)
    for body in (
        {"title": None},
        {"priority": "URGENT"},
        {"status": "COMPLETED"},
        {"start_sla_minutes": 0},
        {"assigned_to": str(uuid.uuid4())},
    ):
        response = await client.patch(f"/tasks/{task['id']}", json=body, headers=admin_headers)
        assert_error(response, 400, "VALIDATION_ERROR")
    assert (await fetch(client, task["id"], admin_headers))["version"] == 1


async def test_if_match_guards_every_action(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    admin_id = (await whoami(client, admin_headers))["id"]
    task = await create_task(client, admin_headers, assigned_to=admin_id)
    stale = {**admin_headers, "If-Match": '"7"'}
    for method, path, body in (
        ("PATCH", "/start", None),
        ("PATCH", "/assign", {"assigned_to": admin_id}),
        ("PATCH", "/acknowledge", None),
        ("PATCH", "/snooze", {"minutes": 5}),
        ("DELETE", "", None),
    ):
        response = await client.request(
            method, f"/tasks/{task['id']}{path}", json=body, headers=stale
        )
        error = assert_error(response, 412, "PRECONDITION_FAILED")
        assert error["current_version"] == 1
    current = {**admin_headers, "If-Match": '"1"'}
    response = await client.patch(f"/tasks/{task['id']}/start", headers=current)
    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == '"2"'
    detail = await fetch(client, task["id"], admin_headers)
    assert [e["action"] for e in detail["audit_trail"]] == ["TASK_CREATED", "TASK_STARTED"]


async def test_version_increments_on_every_mutation(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    task = await create_task(client, admin_headers)
    steps: list[tuple[str, dict[str, Any] | None]] = [
        ("assign", {"assigned_to": dev.id}),
        ("acknowledge", None),
        ("start", None),
        ("block", {"reason": "r"}),
        ("unblock", None),
        ("snooze", {"minutes": 10}),
        ("complete", None),
        ("reopen", None),
    ]
    for expected, (action, body) in enumerate(steps, start=2):
        clock.advance(minutes=1)
        response = await act(client, task["id"], action, admin_headers, body)
        assert response.json()["version"] == expected, action
        assert response.headers["ETag"] == f'"{expected}"', action


async def test_changing_only_additional_assignees_bumps_the_version(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    helper = await make_user(client, admin_headers, "developer")
    task = await create_task(client, admin_headers, assigned_to=dev.id)
    response = await act(
        client,
        task["id"],
        "assign",
        {**admin_headers, "If-Match": '"1"'},
        {"assigned_to": dev.id, "additional_assignees": [helper.id]},
    )
    assert [u["id"] for u in response.json()["additional_assignees"]] == [helper.id]
    assert response.json()["version"] == 2
    stale = await client.patch(
        f"/tasks/{task['id']}", json={"title": "x"}, headers={**admin_headers, "If-Match": '"1"'}
    )
    assert stale.status_code == 412


async def test_priority_change_recomputes_default_sla(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    task = await create_task(client, admin_headers, priority="MEDIUM")
    clock.advance(minutes=10)
    body = (
        await client.patch(
            f"/tasks/{task['id']}", json={"priority": "CRITICAL"}, headers=admin_headers
        )
    ).json()
    assert (body["start_sla_minutes"], body["resolve_sla_minutes"]) == (60, 240)
    assert body["sla_status"]["start_deadline"] == iso(T0 + timedelta(minutes=60))
    assert body["sla_status"]["resolve_deadline"] == iso(T0 + timedelta(minutes=240))
    assert body["sla_status"]["time_remaining"] == "50 minutes"
    [row] = [
        r
        for r in await audit_rows(client, admin_headers, task["id"])
        if r["action"] == "TASK_UPDATED"
    ]
    assert row["changes"]["priority"] == {"from": "MEDIUM", "to": "CRITICAL"}
    assert row["changes"]["start_sla_minutes"] == {"from": 480, "to": 60}
    assert row["changes"]["resolve_sla_minutes"] == {"from": 4320, "to": 240}
    assert row["changes"]["resolve_deadline"] == {
        "from": iso(T0 + timedelta(minutes=4320)),
        "to": iso(T0 + timedelta(minutes=240)),
    }

    # Back down again: the defaults follow.
    body = (
        await client.patch(f"/tasks/{task['id']}", json={"priority": "LOW"}, headers=admin_headers)
    ).json()
    assert (body["start_sla_minutes"], body["resolve_sla_minutes"]) == (1440, 10080)


async def test_priority_change_keeps_explicit_sla(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    task = await create_task(
        client, admin_headers, priority="HIGH", start_sla_minutes=30, resolve_sla_minutes=600
    )
    body = (
        await client.patch(f"/tasks/{task['id']}", json={"priority": "LOW"}, headers=admin_headers)
    ).json()
    assert body["priority"] == "LOW"
    assert (body["start_sla_minutes"], body["resolve_sla_minutes"]) == (30, 600)
    assert body["sla_status"]["resolve_deadline"] == iso(T0 + timedelta(minutes=600))


async def test_explicit_sla_set_by_update_survives_priority_change(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    task = await create_task(client, admin_headers, priority="MEDIUM")
    clock.advance(minutes=5)
    body = (
        await client.patch(
            f"/tasks/{task['id']}",
            json={"start_sla_minutes": 20, "resolve_sla_minutes": 90},
            headers=admin_headers,
        )
    ).json()
    # Deadlines count from creation, not from the update.
    assert body["sla_status"]["start_deadline"] == iso(T0 + timedelta(minutes=20))
    assert body["sla_status"]["resolve_deadline"] == iso(T0 + timedelta(minutes=90))
    body = (
        await client.patch(f"/tasks/{task['id']}", json={"priority": "LOW"}, headers=admin_headers)
    ).json()
    assert (body["start_sla_minutes"], body["resolve_sla_minutes"]) == (20, 90)

    refused = await client.patch(
        f"/tasks/{task['id']}", json={"start_sla_minutes": 100}, headers=admin_headers
    )
    assert_error(refused, 400, "VALIDATION_ERROR")
    assert (await fetch(client, task["id"], admin_headers))["start_sla_minutes"] == 20


async def test_priority_change_recomputes_the_target_that_was_not_given(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    task = await create_task(client, admin_headers, priority="HIGH", start_sla_minutes=30)
    assert task["resolve_sla_minutes"] == 1440
    body = (
        await client.patch(
            f"/tasks/{task['id']}", json={"priority": "CRITICAL"}, headers=admin_headers
        )
    ).json()
    assert body["start_sla_minutes"] == 30
    assert body["resolve_sla_minutes"] == 240


# --- multiple assignees and reach ---------------------------------------------------------


async def test_additional_assignees(client: httpx.AsyncClient, admin_headers: Headers) -> None:
    lead_dev = await make_user(client, admin_headers, "developer")
    helper = await make_user(client, admin_headers, "developer")
    helper2 = await make_user(client, admin_headers, "developer")
    outsider = await make_user(client, admin_headers, "developer")

    created = await create_task(
        client, admin_headers, assigned_to=lead_dev.id, additional_assignees=[helper.id]
    )
    assert created["additional_assignees"] == [helper.id]

    response = await act(
        client,
        created["id"],
        "assign",
        admin_headers,
        {"assigned_to": lead_dev.id, "additional_assignees": [helper.id, helper2.id, lead_dev.id]},
    )
    extra = response.json()["additional_assignees"]
    assert {u["id"] for u in extra} == {helper.id, helper2.id}  # the primary is not repeated
    assert all(set(u) == {"id", "username", "full_name"} for u in extra)

    refused = await act(client, created["id"], "start", outsider.headers, expect=None)
    assert_error(refused, 403, "FORBIDDEN")
    started = await act(client, created["id"], "start", helper2.headers)
    assert started.json()["status"] == "IN_PROGRESS"
    assert started.json()["assigned_to"]["id"] == lead_dev.id  # starting does not steal it
    done = await act(client, created["id"], "complete", helper.headers)
    assert done.json()["status"] == "COMPLETED"

    rows = [
        r
        for r in await audit_rows(client, admin_headers, created["id"])
        if r["action"] == "TASK_ASSIGNED"
    ]
    assert rows[0]["changes"]["additional_assignees"]["from"] == [helper.id]
    assert sorted(rows[0]["changes"]["additional_assignees"]["to"]) == sorted(
        [helper.id, helper2.id]
    )

    # Updating other fields leaves the extra assignees alone.
    updated = await client.patch(
        f"/tasks/{created['id']}", json={"title": "still here"}, headers=admin_headers
    )
    assert len(updated.json()["additional_assignees"]) == 2


async def test_assign_without_list_keeps_and_empty_list_clears_extra_assignees(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    helper = await make_user(client, admin_headers, "developer")
    task = await create_task(client, admin_headers, additional_assignees=[helper.id])
    body = (await act(client, task["id"], "assign", admin_headers, {"assigned_to": dev.id})).json()
    assert [u["id"] for u in body["additional_assignees"]] == [helper.id]
    body = (
        await act(
            client,
            task["id"],
            "assign",
            admin_headers,
            {"assigned_to": dev.id, "additional_assignees": []},
        )
    ).json()
    assert body["additional_assignees"] == []
    refused = await act(client, task["id"], "start", helper.headers, expect=None)
    assert_error(refused, 403, "FORBIDDEN")


async def test_team_lead_reach_is_their_own_team(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    own_team = await make_team(client, admin_headers)
    other_team = await make_team(client, admin_headers)
    lead = await make_user(client, admin_headers, "team_lead", team_id=own_team)
    member = await make_user(client, admin_headers, "developer", team_id=own_team)
    stranger = await make_user(client, admin_headers, "developer", team_id=other_team)
    own = await create_task(client, admin_headers, team_id=own_team)
    foreign = await create_task(client, admin_headers, team_id=other_team)

    # Own team: update, assign, snooze, progress.
    response = await client.patch(
        f"/tasks/{own['id']}", json={"priority": "HIGH"}, headers=lead.headers
    )
    assert response.status_code == 200, response.text
    await act(client, own["id"], "assign", lead.headers, {"assigned_to": member.id})
    await act(client, own["id"], "snooze", lead.headers, {"minutes": 15})
    await act(client, own["id"], "start", lead.headers)
    assert (await fetch(client, own["id"], lead.headers))["status"] == "IN_PROGRESS"

    # Another team's task: refused, and nothing changes.
    attempts = [
        ("PATCH", "", {"priority": "HIGH"}),
        ("PATCH", "/assign", {"assigned_to": stranger.id}),
        ("PATCH", "/snooze", {"minutes": 15}),
        ("PATCH", "/acknowledge", None),
        ("PATCH", "/start", None),
    ]
    for method, path, body in attempts:
        response = await client.request(
            method, f"/tasks/{foreign['id']}{path}", json=body, headers=lead.headers
        )
        error = assert_error(response, 403, "FORBIDDEN")
        assert error["required_role"] in {"admin", "manager"}, path
    detail = await fetch(client, foreign["id"], lead.headers)  # reading is still fine
    assert detail["version"] == 1
    assert detail["status"] == "CREATED"

    # Cancelling is admin-only, even for their own team.
    refused = await client.delete(f"/tasks/{own['id']}", headers=lead.headers)
    assert_error(refused, 403, "FORBIDDEN")


async def test_team_lead_may_create_tasks_for_their_team(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    team = await make_team(client, admin_headers)
    lead = await make_user(client, admin_headers, "team_lead", team_id=team)
    created = await create_task(client, lead.headers, task_type="TASK")
    assert created["team_id"] == team  # defaults to the creator's team
    body = (await act(client, created["id"], "start", lead.headers)).json()
    assert body["assigned_to"]["id"] == lead.id


async def test_developer_reach_is_their_own_assignments(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    mine = await make_user(client, admin_headers, "developer")
    theirs = await make_user(client, admin_headers, "developer")
    task = await create_task(client, admin_headers, assigned_to=mine.id)

    for action in ("acknowledge", "start"):
        refused = await act(client, task["id"], action, theirs.headers, expect=None)
        assert_error(refused, 403, "FORBIDDEN")
    await act(client, task["id"], "start", mine.headers)
    refused = await act(client, task["id"], "complete", theirs.headers, expect=None)
    assert_error(refused, 403, "FORBIDDEN")
    for method, path, body in (
        ("PATCH", "", {"title": "mine now"}),
        ("PATCH", "/assign", {"assigned_to": mine.id}),
        ("PATCH", "/snooze", {"minutes": 5}),
        ("DELETE", "", None),
    ):
        response = await client.request(
            method, f"/tasks/{task['id']}{path}", json=body, headers=mine.headers
        )
        assert_error(response, 403, "FORBIDDEN")
    body = (
        await act(client, task["id"], "complete", mine.headers, {"resolution_notes": "ok"})
    ).json()
    assert body["status"] == "COMPLETED"

    # Unassigned tasks are not theirs to take.
    loose = await create_task(client, admin_headers)
    refused = await act(client, loose["id"], "start", mine.headers, expect=None)
    assert_error(refused, 403, "FORBIDDEN")


# --- audit --------------------------------------------------------------------------------


async def test_every_mutation_is_audited(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    manager = await make_user(client, admin_headers, "manager")
    task = await create_task(client, manager.headers, title="Original")
    task_id = task["id"]

    def at(minute: int) -> str:
        return iso(T0 + timedelta(minutes=minute))

    script: list[tuple[Actor | None, str, dict[str, Any] | None, str, dict[str, Any]]] = [
        (
            manager,
            "update",
            {"title": "Renamed"},
            "TASK_UPDATED",
            {"title": {"from": "Original", "to": "Renamed"}},
        ),
        (
            manager,
            "assign",
            {"assigned_to": dev.id},
            "TASK_ASSIGNED",
            {
                "status": {"from": "CREATED", "to": "ASSIGNED"},
                "assigned_to": {"from": None, "to": dev.id},
            },
        ),
        (
            dev,
            "acknowledge",
            None,
            "TASK_ACKNOWLEDGED",
            {"acknowledged_at": {"from": None, "to": at(3)}},
        ),
        (
            dev,
            "start",
            None,
            "TASK_STARTED",
            {
                "status": {"from": "ASSIGNED", "to": "IN_PROGRESS"},
                "started_at": {"from": None, "to": at(4)},
            },
        ),
        (
            dev,
            "block",
            {"reason": "waiting"},
            "TASK_BLOCKED",
            {
                "status": {"from": "IN_PROGRESS", "to": "BLOCKED"},
                "blocked_reason": {"from": None, "to": "waiting"},
            },
        ),
        (
            dev,
            "unblock",
            None,
            "TASK_UNBLOCKED",
            {"status": {"from": "BLOCKED", "to": "IN_PROGRESS"}},
        ),
        (
            dev,
            "complete",
            {"resolution_notes": "fixed"},
            "TASK_COMPLETED",
            {
                "status": {"from": "IN_PROGRESS", "to": "COMPLETED"},
                "completed_at": {"from": None, "to": at(7)},
                "resolution_notes": {"from": None, "to": "fixed"},
            },
        ),
        (
            dev,
            "reopen",
            None,
            "TASK_REOPENED",
            {
                "status": {"from": "COMPLETED", "to": "IN_PROGRESS"},
                "completed_at": {"from": at(7), "to": None},
            },
        ),
        (
            manager,
            "snooze",
            {"minutes": 60},
            "TASK_SNOOZED",
            {"snoozed_until": {"from": None, "to": at(69)}},
        ),
        (
            None,
            "cancel",
            None,
            "TASK_CANCELLED",
            {
                "status": {"from": "IN_PROGRESS", "to": "CANCELLED"},
                "cancelled_at": {"from": None, "to": at(10)},
            },
        ),
    ]
    for minute, (actor, action, body, _, _) in enumerate(script, start=1):
        clock.set(T0 + timedelta(minutes=minute))
        headers = actor.headers if actor else admin_headers
        if action == "update":
            response = await client.patch(f"/tasks/{task_id}", json=body, headers=headers)
        elif action == "cancel":
            response = await client.delete(f"/tasks/{task_id}", headers=headers)
        else:
            response = await client.patch(f"/tasks/{task_id}/{action}", json=body, headers=headers)
        assert response.status_code in (200, 204), (action, response.text)

    rows = await audit_rows(client, admin_headers, task_id)
    assert [r["action"] for r in rows] == ["TASK_CREATED", *[s[3] for s in script]]
    created = rows[0]
    assert created["actor"] == {"id": manager.id, "username": manager.username}
    assert created["new_state"]["title"] == "Original"
    assert created["timestamp"] == iso(T0)
    for minute, (row, (actor, action, _, _, expected)) in enumerate(
        zip(rows[1:], script, strict=True), start=1
    ):
        assert row["entity_type"] == "task"
        assert row["entity_id"] == task_id
        assert row["actor_type"] == "user"
        expected_actor = actor.id if actor else (await whoami(client, admin_headers))["id"]
        assert row["actor"]["id"] == expected_actor, action
        assert row["timestamp"] == at(minute), action
        for field, change in expected.items():
            assert row["changes"][field] == change, (action, field, row["changes"])
        for change in row["changes"].values():
            assert set(change) == {"from", "to"}, (action, row["changes"])
            assert change["from"] != change["to"], (action, row["changes"])

    detail = await fetch(client, task_id, admin_headers)
    assert [e["action"] for e in detail["audit_trail"]] == [r["action"] for r in rows]
    assert detail["audit_trail"][1]["actor"] == manager.username
    verify = await client.get("/audit-logs/verify", headers=admin_headers)
    assert verify.json()["valid"] is True


async def test_refused_and_no_op_requests_write_no_audit_row(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    task = await create_task(client, admin_headers, title="Same")
    await act(client, task["id"], "start", dev.headers, expect=403)
    await act(client, task["id"], "complete", admin_headers, expect=409)
    await client.patch(
        f"/tasks/{task['id']}", json={"title": "x"}, headers={**admin_headers, "If-Match": '"9"'}
    )
    same = await client.patch(f"/tasks/{task['id']}", json={"title": "Same"}, headers=admin_headers)
    assert same.status_code == 200
    assert same.json()["version"] == 1
    assert [r["action"] for r in await audit_rows(client, admin_headers, task["id"])] == [
        "TASK_CREATED"
    ]


# --- SLA status over time -----------------------------------------------------------------


async def test_sla_status_moves_with_the_clock(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    task = await create_task(
        client, admin_headers, assigned_to=dev.id, start_sla_minutes=100, resolve_sla_minutes=1000
    )

    async def status_at(minutes: float) -> dict[str, Any]:
        clock.set(T0 + timedelta(minutes=minutes))
        sla = (await fetch(client, task["id"], admin_headers))["sla_status"]
        listed = (await client.get("/tasks", headers=admin_headers)).json()["items"]
        assert listed[0]["sla_status"]["state"] == sla["state"]
        assert listed[0]["sla_status"]["at_risk"] == sla["at_risk"]
        return dict(sla)

    sla = await status_at(70)
    assert (sla["state"], sla["at_risk"], sla["breach_count"]) == ("compliant", False, 0)

    sla = await status_at(80)
    assert (sla["state"], sla["at_risk"], sla["breach_count"]) == ("warning", True, 0)
    assert sla["time_remaining"] == "20 minutes"
    assert sla["start_time_remaining"] == "20 minutes"
    assert sla["clocks"][0]["state"] == "warning"
    assert sla["clocks"][0]["percent_elapsed"] == 80.0
    assert sla["clocks"][1]["state"] == "compliant"

    sla = await status_at(96)
    assert (sla["state"], sla["at_risk"], sla["breach_count"]) == ("critical", True, 0)
    assert sla["time_remaining"] == "4 minutes"

    sla = await status_at(101)
    assert sla["state"] == "breached"
    assert sla["breach_count"] == 1
    assert sla["time_remaining"] == "overdue by 1 minute"
    assert sla["time_remaining_seconds"] == -60
    assert sla["start_met"] is None
    assert sla["clocks"][0]["status"] == "BREACHED"

    sla = await status_at(100 + 2 * 60 + 5)
    assert sla["time_remaining"] == "overdue by 2 hours 5 minutes"

    # Starting late stops the START clock as breached; it stays breached.
    body = (await act(client, task["id"], "start", dev.headers)).json()
    sla = body["sla_status"]
    assert sla["start_met"] is False
    assert sla["breach_count"] == 1
    assert sla["state"] == "breached"
    assert sla["start_time_taken"] == "3 hours 45 minutes"
    assert sla["time_remaining"] == "12 hours 55 minutes"  # the RESOLVE clock: 1000 - 225 min

    sla = await status_at(1001)
    assert sla["breach_count"] == 2
    assert sla["time_remaining"] == "overdue by 1 minute"
    assert [c["status"] for c in sla["clocks"]] == ["BREACHED", "BREACHED"]

    body = (await act(client, task["id"], "complete", dev.headers)).json()
    assert body["sla_status"]["resolve_met"] is False
    assert body["sla_status"]["breach_count"] == 2


async def test_met_deadlines_stay_met(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    task = await create_task(client, admin_headers, start_sla_minutes=10, resolve_sla_minutes=20)
    clock.advance(minutes=9)
    await act(client, task["id"], "start", admin_headers)
    clock.advance(minutes=10)
    await act(client, task["id"], "complete", admin_headers)
    clock.advance(hours=20)  # (access tokens in tests live 24 h)
    sla = (await fetch(client, task["id"], admin_headers))["sla_status"]
    assert (sla["state"], sla["start_met"], sla["resolve_met"]) == ("compliant", True, True)
    assert sla["breach_count"] == 0
    assert sla["at_risk"] is False
