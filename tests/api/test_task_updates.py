"""PATCH and If-Match on tasks, versions, SLA targets following priority changes, additional
assignees, and the reach of scoped roles.

The JSON contract is the one docs/api.md describes; roles follow docs/roles.md.
"""

from __future__ import annotations

import uuid
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
from tests.conftest import T0, assert_error
from tests.factories import make_team, make_user

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
