"""What the task test modules share: the documented defaults and status machine (written out
independently of src), and steps that create, act on and read tasks through the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

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
