"""Teams CRUD (delete = deactivate), members and who may manage teams."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import assert_error
from tests.factories import make_team, make_user

TEAM_KEYS = {
    "id",
    "name",
    "description",
    "lead_id",
    "escalation_policy_id",
    "is_active",
    "created_at",
    "updated_at",
    "member_count",
}


async def team_names(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[str]:
    response = await client.get("/teams", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [t["name"] for t in response.json()["items"]]


@pytest.mark.parametrize("role", ["admin", "manager"])
async def test_admin_and_manager_create_teams(
    client: httpx.AsyncClient, admin_headers: dict[str, str], role: str
) -> None:
    headers = (
        admin_headers if role == "admin" else (await make_user(client, admin_headers, role)).headers
    )
    lead = await make_user(client, admin_headers, "team_lead")
    response = await client.post(
        "/teams",
        json={"name": "  Platform  ", "description": "Infra and on-call", "lead_id": lead.id},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == TEAM_KEYS
    uuid.UUID(body["id"])
    assert body["name"] == "Platform"
    assert body["description"] == "Infra and on-call"
    assert body["lead_id"] == lead.id
    assert body["is_active"] is True
    assert body["member_count"] == 0
    assert body["created_at"] == "2026-01-27T10:30:00Z"
    fetched = await client.get(f"/teams/{body['id']}", headers=headers)
    assert fetched.status_code == 200
    assert fetched.json() == body


@pytest.mark.parametrize("role", ["team_lead", "developer", "support", "auditor", "viewer"])
async def test_other_roles_cannot_manage_teams(
    client: httpx.AsyncClient, admin_headers: dict[str, str], role: str
) -> None:
    actor = await make_user(client, admin_headers, role)
    team = await make_team(client, admin_headers, "existing")
    create = await client.post("/teams", json={"name": "mine"}, headers=actor.headers)
    error = assert_error(create, 403, "FORBIDDEN")
    assert error["required_role"] == "admin"
    assert set(error["allowed_roles"]) == {"admin", "manager"}
    patch = await client.patch(f"/teams/{team}", json={"name": "taken"}, headers=actor.headers)
    assert_error(patch, 403, "FORBIDDEN")
    delete = await client.delete(f"/teams/{team}", headers=actor.headers)
    assert_error(delete, 403, "FORBIDDEN")
    # They may still read.
    assert await team_names(client, actor.headers) == ["existing"]
    assert (await client.get(f"/teams/{team}", headers=actor.headers)).json()["name"] == "existing"


@pytest.mark.parametrize("second", ["Ops", "ops", "OPS", "  ops  "])
async def test_duplicate_team_name_is_409(
    client: httpx.AsyncClient, admin_headers: dict[str, str], second: str
) -> None:
    await make_team(client, admin_headers, "Ops")
    response = await client.post("/teams", json={"name": second}, headers=admin_headers)
    error = assert_error(response, 409, "CONFLICT")
    assert error["details"] == [{"field": "name", "message": "already taken"}]
    assert await team_names(client, admin_headers) == ["Ops"]


async def test_rename_onto_existing_name_is_409(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await make_team(client, admin_headers, "alpha")
    beta = await make_team(client, admin_headers, "beta")
    clash = await client.patch(f"/teams/{beta}", json={"name": "ALPHA"}, headers=admin_headers)
    assert_error(clash, 409, "CONFLICT")
    # Renaming a team to its own name in another case is fine.
    own = await client.patch(f"/teams/{beta}", json={"name": "Beta"}, headers=admin_headers)
    assert own.status_code == 200, own.text
    assert own.json()["name"] == "Beta"


async def test_patch_team(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    manager = await make_user(client, admin_headers, "manager")
    lead = await make_user(client, admin_headers, "team_lead")
    team = await make_team(client, admin_headers, "storage")
    response = await client.patch(
        f"/teams/{team}",
        json={"name": "storage-sre", "description": "Disks", "lead_id": lead.id},
        headers=manager.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["description"], body["lead_id"]) == ("storage-sre", "Disks", lead.id)
    cleared = await client.patch(
        f"/teams/{team}", json={"lead_id": None, "description": None}, headers=admin_headers
    )
    assert cleared.status_code == 200
    assert (cleared.json()["lead_id"], cleared.json()["description"]) == (None, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": None}, None),
        ({"name": "x" * 256}, "name"),
        ({"is_active": None}, None),
        ({"lead_id": "not-a-uuid"}, "lead_id"),
        ({"lead_id": "00000000-0000-4000-8000-000000000000"}, "lead_id"),
        ({"members": []}, "members"),
    ],
)
async def test_patch_team_validation(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    body: dict[str, Any],
    field: str | None,
) -> None:
    team = await make_team(client, admin_headers, "keep")
    response = await client.patch(f"/teams/{team}", json=body, headers=admin_headers)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    if field:
        assert field in [d["field"] for d in error["details"]], error
    assert (await client.get(f"/teams/{team}", headers=admin_headers)).json()["name"] == "keep"


async def test_inactive_user_cannot_lead(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    lead = await make_user(client, admin_headers, "team_lead")
    assert (
        await client.post(f"/users/{lead.id}/deactivate", headers=admin_headers)
    ).status_code == 200
    response = await client.post(
        "/teams", json={"name": "leaderless", "lead_id": lead.id}, headers=admin_headers
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "lead_id"


async def test_delete_deactivates_and_hides(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    keep = await make_team(client, admin_headers, "keep")
    gone = await make_team(client, admin_headers, "gone")
    member = await make_user(client, admin_headers, "developer", team_id=gone)

    deleted = await client.delete(f"/teams/{gone}", headers=admin_headers)
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""

    listing = await client.get("/teams", headers=admin_headers)
    assert [t["id"] for t in listing.json()["items"]] == [keep]
    assert listing.json()["pagination"]["total_items"] == 1
    everything = await client.get(
        "/teams", params={"include_inactive": "true"}, headers=admin_headers
    )
    rows = {t["name"]: t for t in everything.json()["items"]}
    assert set(rows) == {"keep", "gone"}
    assert rows["gone"]["is_active"] is False
    assert rows["keep"]["is_active"] is True
    assert everything.json()["pagination"]["total_items"] == 2

    # Not lost: the row is still readable and members keep their team.
    single = await client.get(f"/teams/{gone}", headers=admin_headers)
    assert single.status_code == 200
    assert single.json()["is_active"] is False
    assert (await client.get(f"/users/{member.id}", headers=admin_headers)).json()[
        "team_id"
    ] == gone

    again = await client.delete(f"/teams/{gone}", headers=admin_headers)
    assert again.status_code == 204
    # The name stays reserved while the team exists.
    reuse = await client.post("/teams", json={"name": "gone"}, headers=admin_headers)
    assert_error(reuse, 409, "CONFLICT")
    # Reactivation brings it back into the listing.
    back = await client.patch(f"/teams/{gone}", json={"is_active": True}, headers=admin_headers)
    assert back.status_code == 200
    assert await team_names(client, admin_headers) == ["gone", "keep"]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/members")],
)
async def test_unknown_team_is_404(
    client: httpx.AsyncClient, admin_headers: dict[str, str], method: str, suffix: str
) -> None:
    missing = uuid.uuid4()
    kwargs: dict[str, Any] = {"json": {"name": "x"}} if method == "PATCH" else {}
    response = await client.request(
        method, f"/teams/{missing}{suffix}", headers=admin_headers, **kwargs
    )
    error = assert_error(response, 404, "NOT_FOUND")
    assert error["entity_type"] == "team"
    assert error["entity_id"] == str(missing)
    assert error["message"] == "Team not found"


async def test_members_and_member_count(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    red = await make_team(client, admin_headers, "red")
    blue = await make_team(client, admin_headers, "blue")
    alice = await make_user(client, admin_headers, "developer", username="alice", team_id=red)
    bob = await make_user(client, admin_headers, "team_lead", username="bob", team_id=red)
    await make_user(client, admin_headers, "developer", username="carol", team_id=blue)

    members = await client.get(f"/teams/{red}/members", headers=alice.headers)
    assert members.status_code == 200, members.text
    assert [(m["username"], m["team_id"]) for m in members.json()] == [
        ("alice", red),
        ("bob", red),
    ]
    assert "hashed_password" not in members.text
    counts = {
        t["name"]: t["member_count"]
        for t in (await client.get("/teams", headers=admin_headers)).json()["items"]
    }
    assert counts == {"blue": 1, "red": 2}

    # Moving bob to blue moves him in both views.
    moved = await client.patch(f"/users/{bob.id}", json={"team_id": blue}, headers=admin_headers)
    assert moved.status_code == 200
    red_members = (await client.get(f"/teams/{red}/members", headers=admin_headers)).json()
    assert [m["username"] for m in red_members] == ["alice"]
    blue_team = (await client.get(f"/teams/{blue}", headers=admin_headers)).json()
    assert blue_team["member_count"] == 2

    # A deactivated member no longer counts.
    assert (
        await client.post(f"/users/{alice.id}/deactivate", headers=admin_headers)
    ).status_code == 200
    assert (await client.get(f"/teams/{red}", headers=admin_headers)).json()["member_count"] == 0

    empty = await make_team(client, admin_headers, "empty")
    assert (await client.get(f"/teams/{empty}/members", headers=admin_headers)).json() == []


async def test_team_list_pagination_and_order(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for name in ("delta", "alpha", "charlie", "bravo", "echo"):
        await make_team(client, admin_headers, name)
    first = await client.get("/teams", params={"page_size": 2}, headers=admin_headers)
    assert first.status_code == 200
    assert [t["name"] for t in first.json()["items"]] == ["alpha", "bravo"]
    assert first.json()["pagination"] == {
        "page": 1,
        "page_size": 2,
        "total_items": 5,
        "total_pages": 3,
        "has_next": True,
        "has_previous": False,
    }
    last = await client.get("/teams", params={"page_size": 2, "page": 3}, headers=admin_headers)
    assert [t["name"] for t in last.json()["items"]] == ["echo"]
    assert last.json()["pagination"]["has_next"] is False
    assert last.json()["pagination"]["has_previous"] is True


async def test_teams_require_authentication(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/teams"), 401, "UNAUTHORIZED")
    assert_error(await client.post("/teams", json={"name": "x"}), 401, "UNAUTHORIZED")
