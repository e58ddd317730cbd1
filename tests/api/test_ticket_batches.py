"""Ticket batches applied set-based: every item's outcome in a mixed batch, the same ticket
twice in one batch, status moves of new tickets, and the audit chain after such batches."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import make_team, make_user


async def _ingest(
    client: httpx.AsyncClient, headers: dict[str, str], tickets: list[Any]
) -> dict[str, Any]:
    response = await client.post("/tickets", json={"tickets": tickets}, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _outcomes(answer: dict[str, Any]) -> list[str]:
    return [r["outcome"] for r in answer["results"]]


async def _trail(
    client: httpx.AsyncClient, headers: dict[str, str], task_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        "/audit-logs", params={"entity_id": task_id, "page_size": 100}, headers=headers
    )
    assert response.status_code == 200, response.text
    return sorted(response.json()["items"], key=lambda row: row["seq"])


async def _chain_valid(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    verify = await client.get("/audit-logs/verify", headers=headers)
    assert verify.status_code == 200, verify.text
    assert verify.json()["valid"] is True, verify.text


def _at(minute: int) -> str:
    return f"2026-01-27T10:{minute:02d}:00Z"


async def test_a_mixed_batch_answers_each_outcome_in_order(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await make_user(client, admin_headers, "developer", username="ana")
    await make_team(client, admin_headers, "Billing")
    seed = [
        {"external_id": f"M-{n}", "title": f"Ticket {n}", "updated_at": _at(0)} for n in range(6)
    ]
    first = await _ingest(client, admin_headers, seed)
    assert _outcomes(first) == ["created"] * 6
    ids = {r["external_id"]: r["task_id"] for r in first["results"]}

    batch: list[Any] = [
        {"external_id": "M-0", "title": "Ticket 0 renamed", "updated_at": _at(5)},  # fields
        {"external_id": "M-1", "title": "ignored", "updated_at": _at(0)},  # same version
        {"external_id": "M-2", "title": "ignored", "updated_at": "2026-01-27T09:00:00Z"},
        {"external_id": "M-3", "title": "x", "priority": "P7"},  # invalid
        {"external_id": "M-4", "title": "Ticket 4", "status": "resolved", "updated_at": _at(5)},
        {"external_id": "M-5", "title": "Ticket 5", "assigned_to": "ana", "updated_at": _at(5)},
        {"external_id": "N-1", "title": "New, open", "team": "billing"},
        {"external_id": "N-2", "title": "New, started", "status": "in_progress"},
        {"external_id": "N-3", "title": "New, closed", "status": "closed", "priority": "P0"},
        {"external_id": "N-4", "title": "Nobody", "assigned_to": "nobody"},  # invalid
        {"external_id": "N-5", "title": "New, waiting", "status": "pending"},
    ]
    answer = await _ingest(client, admin_headers, batch)
    assert _outcomes(answer) == [
        "updated",
        "unchanged",
        "stale",
        "invalid",
        "updated",
        "updated",
        "created",
        "created",
        "created",
        "invalid",
        "created",
    ]
    assert [r["index"] for r in answer["results"]] == list(range(len(batch)))
    assert answer["summary"] == {
        "created": 4,
        "updated": 3,
        "unchanged": 1,
        "stale": 1,
        "invalid": 2,
    }
    by_id = {r["external_id"]: r for r in answer["results"]}
    assert by_id["M-3"]["details"][0]["field"] == "priority"
    assert by_id["N-4"]["details"][0]["field"] == "assigned_to"
    assert [by_id[k]["status"] for k in ("M-4", "M-5", "N-1", "N-2", "N-3", "N-5")] == [
        "COMPLETED",
        "ASSIGNED",
        "CREATED",
        "IN_PROGRESS",
        "COMPLETED",
        "BLOCKED",
    ]

    renamed = (await client.get(f"/tasks/{ids['M-0']}", headers=admin_headers)).json()
    assert (renamed["title"], renamed["version"]) == ("Ticket 0 renamed", 2)
    closed = (await client.get("/tickets/N-3", headers=admin_headers)).json()
    assert (closed["status"], closed["priority"]) == ("COMPLETED", "CRITICAL")
    sla = (await client.get("/tickets/N-3/sla", headers=admin_headers)).json()
    assert all(c["stopped_at"] for c in sla["clocks"]), sla
    listed = await client.get("/tasks", params={"external_id": "N-4"}, headers=admin_headers)
    assert listed.json()["pagination"]["total_items"] == 0

    actions = [
        row["action"] for row in await _trail(client, admin_headers, by_id["N-3"]["task_id"])
    ]
    assert actions == ["TASK_CREATED", "TASK_STARTED", "TASK_COMPLETED"]
    assert [r["action"] for r in await _trail(client, admin_headers, ids["M-1"])] == [
        "TASK_CREATED"
    ]
    await _chain_valid(client, admin_headers)


async def test_the_same_ticket_twice_in_one_batch_applies_in_order(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    answer = await _ingest(
        client,
        admin_headers,
        [
            {"external_id": "D-1", "title": "First", "updated_at": _at(1)},
            {"external_id": "D-2", "title": "Other", "updated_at": _at(1)},
            {"external_id": "D-1", "title": "Second", "updated_at": _at(2)},
            {"external_id": "D-1", "title": "Older", "updated_at": _at(0)},
            {"external_id": "D-1", "title": "Second", "updated_at": _at(2)},
            {"external_id": "D-1", "title": "Done", "status": "resolved", "updated_at": _at(3)},
        ],
    )
    assert _outcomes(answer) == ["created", "created", "updated", "stale", "unchanged", "updated"]
    task_ids = {r["task_id"] for r in answer["results"] if r["external_id"] == "D-1"}
    assert len(task_ids) == 1
    task = (await client.get("/tickets/D-1", headers=admin_headers)).json()
    assert (task["title"], task["status"]) == ("Done", "COMPLETED")
    listed = await client.get("/tasks", params={"external_id": "D-1"}, headers=admin_headers)
    assert listed.json()["pagination"]["total_items"] == 1
    actions = [row["action"] for row in await _trail(client, admin_headers, task["id"])]
    assert actions[0] == "TASK_CREATED"
    assert actions.count("TASK_UPDATED") == 2
    assert actions[-1] == "TASK_COMPLETED"
    await _chain_valid(client, admin_headers)


async def test_a_large_batch_keeps_the_audit_chain(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    tickets = [
        {
            "external_id": f"L-{n}",
            "title": f"Ticket {n}",
            "priority": ("P0", "P1", "P2", "P3")[n % 4],
            "status": ("open", "in_progress", "resolved")[n % 3],
            "updated_at": _at(0),
        }
        for n in range(150)
    ]
    created = await _ingest(client, admin_headers, tickets)
    assert created["summary"]["created"] == 150
    again = await _ingest(client, admin_headers, tickets)
    assert again["summary"]["unchanged"] == 150
    newer = [{**t, "title": f"{t['title']} (edited)", "updated_at": _at(1)} for t in tickets]
    updated = await _ingest(client, admin_headers, newer)
    assert updated["summary"]["updated"] == 150
    await _chain_valid(client, admin_headers)
    audit = await client.get(
        "/audit-logs", params={"action": "TASK_CREATED", "page_size": 1}, headers=admin_headers
    )
    assert audit.json()["pagination"]["total_items"] == 150
    sample = (await client.get("/tickets/L-5", headers=admin_headers)).json()
    assert (sample["title"], sample["status"], sample["priority"]) == (
        "Ticket 5 (edited)",
        "COMPLETED",
        "HIGH",
    )


async def test_a_set_based_pass_that_fails_leaves_the_batch_to_item_by_item(
    client: httpx.AsyncClient, admin_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the set-based pass fail anyway, its writes roll back to its savepoint and the
    batch is applied item by item: the same outcomes, nothing written twice."""
    from opsflow.errors import Conflict
    from opsflow.tickets import service

    real = service.bulk_apply

    async def failing(prepared: Any) -> Any:
        await real(prepared)  # writes everything, then fails
        raise Conflict("unforeseen")

    await _ingest(client, admin_headers, [{"external_id": "F-0", "title": "Old"}])
    monkeypatch.setattr(service, "bulk_apply", failing)
    answer = await _ingest(
        client,
        admin_headers,
        [
            {"external_id": "F-0", "title": "Renamed"},
            {"external_id": "F-1", "title": "New", "status": "resolved"},
            {"external_id": "F-2", "title": "Bad", "priority": "P9"},
        ],
    )
    assert _outcomes(answer) == ["updated", "created", "invalid"]
    listed = await client.get("/tasks", params={"page_size": 100}, headers=admin_headers)
    items = listed.json()["items"]
    assert sorted(t["external_id"] for t in items) == ["F-0", "F-1"]
    renamed = next(t for t in items if t["external_id"] == "F-0")
    assert (renamed["title"], renamed["version"]) == ("Renamed", 2)
    created = await client.get(
        "/audit-logs", params={"action": "TASK_CREATED", "page_size": 1}, headers=admin_headers
    )
    assert created.json()["pagination"]["total_items"] == 2
    await _chain_valid(client, admin_headers)
