"""Ticket batches: created / updated / unchanged / stale / invalid per item, the external
status mapped onto the status machine, nothing written for re-sent or older versions, and
reading a ticket back by its external id."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import assert_error
from tests.factories import bearer, client_token, create_api_client, make_team, make_user

EXAMPLE = {
    "tickets": [
        {
            "external_id": "TICKET-001",
            "title": "Critical system outage",
            "description": "Production system down",
            "priority": "P0",
            "customer_tier": "enterprise",
            "status": "open",
            "assigned_to": "john.doe",
        },
        {
            "external_id": "TICKET-002",
            "title": "Invoice PDF is blank",
            "priority": "P2",
            "customer_tier": "Premium",
            "status": "in_progress",
        },
    ]
}


async def _audit_total(client: httpx.AsyncClient, admin: dict[str, str]) -> int:
    response = await client.get("/audit-logs", params={"page_size": 1}, headers=admin)
    assert response.status_code == 200, response.text
    return int(response.json()["pagination"]["total_items"])


async def _ingest(
    client: httpx.AsyncClient, headers: dict[str, str], tickets: list[Any], **extra: Any
) -> dict[str, Any]:
    response = await client.post("/tickets", json={"tickets": tickets, **extra}, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _outcomes(answer: dict[str, Any]) -> list[str]:
    return [r["outcome"] for r in answer["results"]]


async def test_example_batch_creates_then_the_same_batch_changes_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    john = await make_user(client, admin_headers, "developer", username="john.doe")
    answer = await _ingest(client, admin_headers, EXAMPLE["tickets"])
    assert answer["source"] == "manual"
    assert answer["summary"] == {
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "stale": 0,
        "invalid": 0,
    }
    first, second = answer["results"]
    assert (first["index"], first["external_id"], first["status"]) == (0, "TICKET-001", "ASSIGNED")
    assert second["status"] == "IN_PROGRESS"

    task = (await client.get(f"/tasks/{first['task_id']}", headers=admin_headers)).json()
    assert task["priority"] == "CRITICAL"
    assert task["customer_tier"] == "ENTERPRISE"
    assert task["assigned_to"]["id"] == john.id
    assert (task["source"], task["external_id"]) == ("manual", "TICKET-001")
    assert task["description"] == "Production system down"
    other = (await client.get(f"/tasks/{second['task_id']}", headers=admin_headers)).json()
    assert (other["priority"], other["customer_tier"]) == ("MEDIUM", "PREMIUM")

    audit_before = await _audit_total(client, admin_headers)
    again = await _ingest(client, admin_headers, EXAMPLE["tickets"])
    assert _outcomes(again) == ["unchanged", "unchanged"]
    assert [r["task_id"] for r in again["results"]] == [first["task_id"], second["task_id"]]
    assert await _audit_total(client, admin_headers) == audit_before
    listed = await client.get("/tasks", params={"external_id": "TICKET-001"}, headers=admin_headers)
    assert listed.json()["pagination"]["total_items"] == 1


async def test_updated_at_orders_versions(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    base = {"external_id": "T-9", "title": "Login fails", "priority": "P1"}
    created = await _ingest(client, admin_headers, [{**base, "updated_at": "2026-01-27T10:00:00Z"}])
    task_id = created["results"][0]["task_id"]
    audit_before = await _audit_total(client, admin_headers)

    same = await _ingest(
        client, admin_headers, [{**base, "title": "ignored", "updated_at": "2026-01-27T10:00:00Z"}]
    )
    older = await _ingest(
        client, admin_headers, [{**base, "title": "older", "updated_at": "2026-01-27T09:59:59Z"}]
    )
    assert _outcomes(same) == ["unchanged"]
    assert _outcomes(older) == ["stale"]
    assert "older than the applied version" in older["results"][0]["reason"]
    assert await _audit_total(client, admin_headers) == audit_before

    newer = await _ingest(
        client,
        admin_headers,
        [
            {
                **base,
                "title": "Login fails for SSO users",
                "status": "in_progress",
                "updated_at": "2026-01-27T11:00:00+01:00",  # 10:00Z: equal, not newer
            },
            {
                **base,
                "title": "Login fails for SSO users",
                "priority": "P0",
                "status": "in_progress",
                "updated_at": "2026-01-27T10:05:00Z",
            },
        ],
    )
    assert _outcomes(newer) == ["unchanged", "updated"]
    task = (await client.get(f"/tasks/{task_id}", headers=admin_headers)).json()
    assert (task["title"], task["priority"], task["status"]) == (
        "Login fails for SSO users",
        "CRITICAL",
        "IN_PROGRESS",
    )
    trail = await client.get(
        "/audit-logs", params={"entity_id": task_id, "page_size": 50}, headers=admin_headers
    )
    actions = {row["action"] for row in trail.json()["items"]}
    assert {"TASK_CREATED", "TASK_UPDATED", "TASK_STARTED"} <= actions
    # The older version, sent after the newer one was applied, stays stale.
    late = await _ingest(
        client, admin_headers, [{**base, "title": "late", "updated_at": "2026-01-27T10:01:00Z"}]
    )
    assert _outcomes(late) == ["stale"]


async def test_without_updated_at_content_decides(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    item = {"external_id": "NO-TS", "title": "Printer on fire"}
    assert _outcomes(await _ingest(client, admin_headers, [item])) == ["created"]
    assert _outcomes(await _ingest(client, admin_headers, [item])) == ["unchanged"]
    changed = await _ingest(client, admin_headers, [{**item, "title": "Printer still on fire"}])
    assert _outcomes(changed) == ["updated"]


async def test_external_status_follows_the_status_machine(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    def version(status: str, minute: int) -> dict[str, Any]:
        return {
            "external_id": "FLOW-1",
            "title": "Customer cannot export",
            "status": status,
            "updated_at": f"2026-01-27T10:{minute:02d}:00Z",
        }

    expected = [
        ("open", "CREATED"),
        ("pending", "BLOCKED"),
        ("in_progress", "IN_PROGRESS"),
        ("on_hold", "BLOCKED"),
        ("resolved", "COMPLETED"),
        ("open", "IN_PROGRESS"),  # reopened
        ("closed", "COMPLETED"),
    ]
    for minute, (status, task_status) in enumerate(expected):
        answer = await _ingest(client, admin_headers, [version(status, minute)])
        assert answer["results"][0]["status"] == task_status, (status, answer)
    task_id = answer["results"][0]["task_id"]
    trail = await client.get(
        "/audit-logs", params={"entity_id": task_id, "page_size": 50}, headers=admin_headers
    )
    blocked = [r for r in trail.json()["items"] if r["action"] == "TASK_BLOCKED"]
    assert blocked
    assert {r["metadata"]["reason"] for r in blocked} == {"pending in manual", "on_hold in manual"}


async def test_bad_items_are_reported_and_the_good_ones_applied(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    team_id = await make_team(client, admin_headers, "Payments")
    tickets: list[Any] = [
        {"external_id": "OK-1", "title": "Fine", "team": "payments"},
        {"external_id": "BAD-1", "title": "Bad priority", "priority": "P9"},
        {"external_id": "BAD-2", "title": "nul \x00 byte"},
        {"external_id": "BAD-3", "title": "Who?", "assigned_to": "nobody@example.com"},
        "not an object",
        {"title": "no id"},
        {"external_id": "BAD-4", "title": "Unknown field", "colour": "red"},
        {"external_id": "BAD-5", "title": "Bad status", "status": "escalated"},
        {"external_id": "BAD-6", "title": "Naive time", "updated_at": "2026-01-27T10:00:00"},
        {"external_id": "BAD-7", "title": "No team", "team": "Nope"},
        {"external_id": "OK-2", "title": "Also fine", "customer_tier": "basic"},
    ]
    answer = await _ingest(client, admin_headers, tickets)
    assert _outcomes(answer) == ["created"] + ["invalid"] * 9 + ["created"]
    fields = {r["index"]: {d["field"] for d in r["details"]} for r in answer["results"][1:-1]}
    assert fields == {
        1: {"priority"},
        2: {"title"},
        3: {"assigned_to"},
        4: {"tickets[4]"},
        5: {"external_id"},
        6: {"colour"},
        7: {"status"},
        8: {"updated_at"},
        9: {"team"},
    }
    assert answer["results"][2]["external_id"] == "BAD-2"
    assert answer["results"][5]["external_id"] is None
    assert all(r["reason"] for r in answer["results"][1:-1])
    listed = await client.get("/tasks", params={"page_size": 100}, headers=admin_headers)
    assert sorted(t["external_id"] for t in listed.json()["items"]) == ["OK-1", "OK-2"]
    ok = next(t for t in listed.json()["items"] if t["external_id"] == "OK-1")
    assert ok["team_id"] == team_id


async def test_an_item_the_machine_refuses_rolls_back_alone(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await _ingest(client, admin_headers, [{"external_id": "C-1", "title": "To cancel"}])
    task_id = created["results"][0]["task_id"]
    cancel = await client.delete(f"/tasks/{task_id}", headers=admin_headers)
    assert cancel.status_code in (200, 204), cancel.text
    answer = await _ingest(
        client,
        admin_headers,
        [
            {"external_id": "C-1", "title": "Back?", "updated_at": "2026-02-01T00:00:00Z"},
            {"external_id": "C-2", "title": "Unrelated"},
        ],
    )
    assert _outcomes(answer) == ["invalid", "created"]
    assert "cancelled" in answer["results"][0]["reason"]
    task = (await client.get(f"/tasks/{task_id}", headers=admin_headers)).json()
    assert (task["title"], task["status"]) == ("To cancel", "CANCELLED")


async def test_batch_limits_and_malformed_bodies(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    too_many = [{"external_id": f"X-{i}", "title": "x"} for i in range(1001)]
    response = await client.post("/tickets", json={"tickets": too_many}, headers=admin_headers)
    body = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert body["max_items"] == 1000
    for raw in (b"{", b'{"tickets": {}}', b'{"tickets": [], "extra": 1}', b"[]", b"\x00"):
        response = await client.post(
            "/tickets",
            content=raw,
            headers={**admin_headers, "Content-Type": "application/json"},
        )
        assert_error(response, 400, "VALIDATION_ERROR")
    listed = await client.get("/tasks", headers=admin_headers)
    assert listed.json()["pagination"]["total_items"] == 0
    empty = await _ingest(client, admin_headers, [])
    assert (empty["received"], empty["results"]) == (0, [])


async def test_a_full_batch_fits_in_one_request(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    # 1,000 tickets with 1.5 KiB descriptions: bigger than the default 1 MiB body limit.
    tickets = [
        {"external_id": f"BIG-{i}", "title": f"Ticket {i}", "description": "d" * 1500}
        for i in range(1000)
    ]
    answer = await _ingest(client, admin_headers, tickets)
    assert answer["summary"]["created"] == 1000


async def test_who_may_ingest_and_under_which_source(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    item = {"external_id": "SRC-1", "title": "From elsewhere"}
    developer = await make_user(client, admin_headers, "developer")
    refused = await client.post("/tickets", json={"tickets": [item]}, headers=developer.headers)
    assert_error(refused, 403, "FORBIDDEN")
    manager = await make_user(client, admin_headers, "manager")
    named = await client.post(
        "/tickets", json={"tickets": [item], "source": "zendesk"}, headers=manager.headers
    )
    assert_error(named, 403, "FORBIDDEN")
    assert (await _ingest(client, manager.headers, [item]))["source"] == "manual"
    by_admin = await _ingest(client, admin_headers, [item], source="zendesk")
    assert (by_admin["source"], _outcomes(by_admin)) == ("zendesk", ["created"])

    creds = await create_api_client(client, admin_headers, ["tickets:ingest"])
    token = (await client_token(client, creds)).json()["access_token"]
    robot = bearer(token)
    answer = await _ingest(client, robot, [item, {**item, "external_id": "SRC-2"}])
    assert answer["source"] == creds["name"]
    assert _outcomes(answer) == ["created", "created"]
    task_id = answer["results"][0]["task_id"]
    trail = await client.get("/audit-logs", params={"entity_id": task_id}, headers=admin_headers)
    created = next(r for r in trail.json()["items"] if r["action"] == "TASK_CREATED")
    assert (created["actor_type"], created["actor"]["username"]) == (
        "api",
        f"client:{creds['name']}",
    )
    # The client reads back what it sent, under its own source.
    read = await client.get("/tickets/SRC-2", headers=robot)
    assert read.status_code == 200, read.text
    # It does not get to write tasks outside ingestion.
    direct = await client.post("/tasks", json={"title": "direct"}, headers=robot)
    assert_error(direct, 403, "FORBIDDEN")
    foreign = await client.post(
        "/tickets", json={"tickets": [item], "source": "zendesk"}, headers=robot
    )
    assert_error(foreign, 403, "FORBIDDEN")


async def test_read_a_ticket_and_its_sla_by_external_id(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    item = {"external_id": "READ-1", "title": "Read me", "priority": "P1"}
    await _ingest(client, admin_headers, [item], source="jira")
    await _ingest(client, admin_headers, [item], source="zendesk")
    await _ingest(client, admin_headers, [{**item, "external_id": "READ-2"}], source="jira")

    one = await client.get("/tickets/READ-2", headers=admin_headers)
    assert one.status_code == 200, one.text
    assert (one.json()["source"], one.json()["priority"]) == ("jira", "HIGH")
    assert one.headers["ETag"] == f'"{one.json()["version"]}"'

    ambiguous = await client.get("/tickets/READ-1", headers=admin_headers)
    assert assert_error(ambiguous, 409, "CONFLICT")["sources"] == ["jira", "zendesk"]
    chosen = await client.get(
        "/tickets/READ-1", params={"source": "zendesk"}, headers=admin_headers
    )
    assert chosen.json()["source"] == "zendesk"

    sla = await client.get("/tickets/READ-1/sla", params={"source": "jira"}, headers=admin_headers)
    assert sla.status_code == 200, sla.text
    assert sla.json()["task_id"] != chosen.json()["id"]
    assert [c["kind"] for c in sla.json()["clocks"]] == ["START", "RESOLVE"]

    missing = await client.get("/tickets/NOPE", headers=admin_headers)
    assert assert_error(missing, 404, "NOT_FOUND")["entity_type"] == "ticket"
    bad = await client.get("/tickets/READ-1", params={"source": "a b"}, headers=admin_headers)
    assert_error(bad, 400, "VALIDATION_ERROR")
    viewer = await make_user(client, admin_headers, "viewer")
    assert (await client.get("/tickets/READ-2", headers=viewer.headers)).status_code == 200
    unknown = uuid.uuid4().hex
    assert (await client.get(f"/tickets/{unknown}/sla", headers=admin_headers)).status_code == 404
