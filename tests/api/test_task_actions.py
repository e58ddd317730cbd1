"""Task actions through the API (assign, acknowledge, start, block, complete, snooze, reopen,
cancel) and the status machine with its refusals.

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
    ACTIONS,
    ALLOWED,
    Headers,
    act,
    audit_rows,
    create_task,
    do_action,
    fetch,
    iso,
    task_in_status,
    whoami,
)
from tests.conftest import T0, assert_error
from tests.factories import make_user

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
