"""Task changes in the audit log (every mutation, nothing for refused or no-op requests) and the
SLA status of a task over (moved) time.

The JSON contract is the one docs/api.md describes; roles follow docs/roles.md.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from opsflow.clock import SettableClock
from tests.api.tasks_support import (
    Headers,
    act,
    audit_rows,
    create_task,
    fetch,
    iso,
    whoami,
)
from tests.conftest import T0
from tests.factories import Actor, make_user

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
