"""The task lifecycle through the API, with its audit trail."""

from __future__ import annotations

from datetime import timedelta

import httpx

from opsflow.clock import SettableClock
from tests.factories import make_user


async def test_incident_lifecycle(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    created = await client.post(
        "/tasks",
        json={
            "title": "Database connection pool exhaustion",
            "description": "Production DB hitting max connections during peak hours",
            "task_type": "INCIDENT",
            "priority": "CRITICAL",
            "assigned_to": dev.id,
            "start_sla_minutes": 15,
            "resolve_sla_minutes": 120,
            "tags": ["database", "production"],
            "metadata": {"affected_service": "api-gateway"},
        },
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "ASSIGNED"
    assert body["assigned_to"] == dev.id
    assert body["created_at"] == "2026-01-27T10:30:00Z"
    assert body["assigned_at"] == "2026-01-27T10:30:00Z"
    assert body["sla_status"]["start_deadline"] == "2026-01-27T10:45:00Z"
    assert body["sla_status"]["resolve_deadline"] == "2026-01-27T12:30:00Z"
    assert body["sla_status"]["time_remaining"] == {
        "start": "15 minutes",
        "resolve": "2 hours",
        "start_seconds": 900,
        "resolve_seconds": 7200,
    }
    task_id = body["id"]

    clock.advance(timedelta(minutes=5))
    started = await client.patch(f"/tasks/{task_id}/start", headers=dev.headers)
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "IN_PROGRESS"
    assert started.json()["sla_status"]["start_met"] is True
    assert started.json()["sla_status"]["start_time_taken"] == "5 minutes"

    clock.advance(timedelta(minutes=70))
    completed = await client.patch(
        f"/tasks/{task_id}/complete",
        json={"resolution_notes": "Increased pool size"},
        headers=dev.headers,
    )
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "COMPLETED"
    assert completed.json()["sla_status"]["resolve_met"] is True
    assert completed.json()["sla_status"]["total_time"] == "1 hour 15 minutes"

    audit = await client.get(f"/audit-logs?entity_id={task_id}", headers=admin_headers)
    assert audit.status_code == 200, audit.text
    actions = [item["action"] for item in audit.json()["items"]]
    assert set(actions) >= {"TASK_CREATED", "TASK_STARTED", "TASK_COMPLETED"}
    started_row = next(i for i in audit.json()["items"] if i["action"] == "TASK_STARTED")
    assert started_row["actor"]["username"] == dev.username
    assert started_row["changes"]["status"] == {"from": "ASSIGNED", "to": "IN_PROGRESS"}

    # The assignee reads the task but not its audit trail (audit roles only, docs/roles.md).
    own_view = await client.get(f"/tasks/{task_id}", headers=dev.headers)
    assert own_view.status_code == 200, own_view.text
    assert "audit_trail" not in own_view.json()
    detail = await client.get(f"/tasks/{task_id}", headers=admin_headers)
    assert [e["action"] for e in detail.json()["audit_trail"]] == [
        "TASK_CREATED",
        "TASK_STARTED",
        "TASK_COMPLETED",
    ]
    verify = await client.get("/audit-logs/verify", headers=admin_headers)
    assert verify.json()["valid"] is True
