"""Listing and filtering users, profile edits, password changes, deactivation and
the caller's notification preferences."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import assert_error
from tests.factories import ADMIN_PASSWORD, USER_PASSWORD, Actor, make_team, make_user

PAGINATION_KEYS = {"page", "page_size", "total_items", "total_pages", "has_next", "has_previous"}
USER_KEYS = {
    "id",
    "email",
    "username",
    "full_name",
    "role",
    "team_id",
    "is_active",
    "created_at",
    "updated_at",
    "last_login_at",
}


async def register(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    username: str,
    *,
    role: str = "developer",
    full_name: str | None = None,
    team_id: str | None = None,
) -> str:
    body: dict[str, Any] = {
        "email": f"{username}@example.com",
        "username": username,
        "password": USER_PASSWORD,
        "role": role,
    }
    if full_name is not None:
        body["full_name"] = full_name
    if team_id is not None:
        body["team_id"] = team_id
    response = await client.post("/auth/register", json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def usernames(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    response = await client.get("/users", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [u["username"] for u in response.json()["items"]]


# --- listing --------------------------------------------------------------------------------


async def test_list_users_shape_and_default_pagination(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.get("/users", headers=admin_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items", "pagination"}
    assert body["pagination"] == {
        "page": 1,
        "page_size": 20,
        "total_items": 1,
        "total_pages": 1,
        "has_next": False,
        "has_previous": False,
    }
    (admin,) = body["items"]
    assert set(admin) == USER_KEYS
    assert admin["username"] == "admin"
    assert admin["role"] == "admin"
    assert "hashed_password" not in response.text


@pytest.mark.parametrize(
    ("page", "page_size", "expected"),
    [
        (1, 2, {"total_pages": 3, "has_next": True, "has_previous": False, "count": 2}),
        (2, 2, {"total_pages": 3, "has_next": True, "has_previous": True, "count": 2}),
        (3, 2, {"total_pages": 3, "has_next": False, "has_previous": True, "count": 1}),
        (4, 2, {"total_pages": 3, "has_next": False, "has_previous": True, "count": 0}),
        (1, 5, {"total_pages": 1, "has_next": False, "has_previous": False, "count": 5}),
        (1, 100, {"total_pages": 1, "has_next": False, "has_previous": False, "count": 5}),
    ],
)
async def test_pagination_block(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    page: int,
    page_size: int,
    expected: dict[str, Any],
) -> None:
    for name in ("pg-a", "pg-b", "pg-c", "pg-d"):
        await register(client, admin_headers, name)
    response = await client.get(
        "/users", params={"page": page, "page_size": page_size}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["pagination"]) == PAGINATION_KEYS
    assert body["pagination"]["page"] == page
    assert body["pagination"]["page_size"] == page_size
    assert body["pagination"]["total_items"] == 5
    assert body["pagination"]["total_pages"] == expected["total_pages"]
    assert body["pagination"]["has_next"] is expected["has_next"]
    assert body["pagination"]["has_previous"] is expected["has_previous"]
    assert len(body["items"]) == expected["count"]


async def test_pages_partition_the_result(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for index in range(6):
        await register(client, admin_headers, f"part-{index}")
    seen: list[str] = []
    for page in (1, 2, 3):
        seen += await usernames(client, admin_headers, page=page, page_size=3)
    assert len(seen) == 7
    assert len(set(seen)) == 7
    assert seen == sorted(seen)


async def test_filter_by_role_team_and_active(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    red = await make_team(client, admin_headers, "red")
    blue = await make_team(client, admin_headers, "blue")
    await register(client, admin_headers, "dev-red", role="developer", team_id=red)
    await register(client, admin_headers, "dev-blue", role="developer", team_id=blue)
    await register(client, admin_headers, "mgr-red", role="manager", team_id=red)
    gone = await register(client, admin_headers, "viewer-gone", role="viewer")
    assert (
        await client.post(f"/users/{gone}/deactivate", headers=admin_headers)
    ).status_code == 200

    assert await usernames(client, admin_headers, role="developer") == ["dev-blue", "dev-red"]
    assert await usernames(client, admin_headers, role="manager") == ["mgr-red"]
    assert await usernames(client, admin_headers, role="auditor") == []
    assert await usernames(client, admin_headers, team_id=red) == ["dev-red", "mgr-red"]
    assert await usernames(client, admin_headers, team_id=red, role="manager") == ["mgr-red"]
    assert await usernames(client, admin_headers, team_id=str(uuid.uuid4())) == []
    assert await usernames(client, admin_headers, is_active="false") == ["viewer-gone"]
    assert "viewer-gone" not in await usernames(client, admin_headers, is_active="true")


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("ALICE", ["alice"]),
        ("wonderland", ["alice"]),  # full_name, case-insensitive
        ("bob@exa", ["bob"]),  # email
        ("RO", ["bob", "carol"]),  # username or full_name
        ("zzz", []),
        ("%", []),  # LIKE wildcards are literal
        ("_", []),
        ("\\", []),
    ],
)
async def test_filter_by_text_query(
    client: httpx.AsyncClient, admin_headers: dict[str, str], q: str, expected: list[str]
) -> None:
    await register(client, admin_headers, "alice", full_name="Alice Wonderland")
    await register(client, admin_headers, "bob", full_name="Robert Tables")
    await register(client, admin_headers, "carol", full_name="Carol Singer")
    found = [u for u in await usernames(client, admin_headers, q=q) if u != "admin"]
    assert found == expected


@pytest.mark.parametrize("role", ["developer", "viewer", "auditor", "support"])
async def test_any_role_may_read_users(
    client: httpx.AsyncClient, admin_headers: dict[str, str], role: str
) -> None:
    actor = await make_user(client, admin_headers, role)
    listing = await client.get("/users", headers=actor.headers)
    assert listing.status_code == 200, listing.text
    assert listing.json()["pagination"]["total_items"] == 2
    single = await client.get(f"/users/{actor.id}", headers=actor.headers)
    assert single.status_code == 200
    assert single.json()["username"] == actor.username


async def test_get_user_and_404(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.get(f"/users/{dev.id}", headers=admin_headers)
    assert response.status_code == 200, response.text
    assert set(response.json()) == USER_KEYS
    assert response.json()["id"] == dev.id
    assert response.json()["last_login_at"] == "2026-01-27T10:30:00Z"

    missing = uuid.uuid4()
    error = assert_error(
        await client.get(f"/users/{missing}", headers=admin_headers), 404, "NOT_FOUND"
    )
    assert error["entity_type"] == "user"
    assert error["entity_id"] == str(missing)
    assert error["message"] == "User not found"


# --- edits ----------------------------------------------------------------------------------


async def test_admin_patches_role_and_team(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    team = await make_team(client, admin_headers)
    dev = await make_user(client, admin_headers, "developer")
    response = await client.patch(
        f"/users/{dev.id}", json={"role": "team_lead", "team_id": team}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "team_lead"
    assert response.json()["team_id"] == team
    again = (await client.get(f"/users/{dev.id}", headers=admin_headers)).json()
    assert (again["role"], again["team_id"]) == ("team_lead", team)
    # The new role takes effect on the user's existing token.
    me = (await client.get("/auth/me", headers=dev.headers)).json()
    assert me["role"] == "team_lead"
    assert me["permissions"]["task_update"] == "own_team"

    cleared = await client.patch(f"/users/{dev.id}", json={"team_id": None}, headers=admin_headers)
    assert cleared.status_code == 200
    assert cleared.json()["team_id"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"team_id": "00000000-0000-4000-8000-000000000000"}, "team_id"),
        ({"role": "superuser"}, "role"),
        ({"role": None}, None),
        ({"is_active": None}, None),
        ({"email": "not-an-email"}, "email"),
        ({"email": None}, None),
        ({"username": "renamed"}, "username"),
    ],
)
async def test_admin_patch_validation(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    body: dict[str, Any],
    field: str | None,
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.patch(f"/users/{dev.id}", json=body, headers=admin_headers)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    if field:
        assert field in [d["field"] for d in error["details"]]
    after = (await client.get(f"/users/{dev.id}", headers=admin_headers)).json()
    assert after["role"] == "developer"
    assert after["team_id"] is None
    assert after["email"] == f"{dev.username}@example.com"


async def test_email_conflict_on_patch(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.patch(
        f"/users/{dev.id}", json={"email": "ADMIN@example.com"}, headers=admin_headers
    )
    assert_error(response, 409, "CONFLICT")


async def test_patch_unknown_user_is_404(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.patch(
        f"/users/{uuid.uuid4()}", json={"full_name": "X"}, headers=admin_headers
    )
    assert assert_error(response, 404, "NOT_FOUND")["entity_type"] == "user"


async def test_self_edit_of_profile_is_allowed(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.patch(
        f"/users/{dev.id}",
        json={"full_name": "Renamed Person", "email": "New.Address@Example.com"},
        headers=dev.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["full_name"] == "Renamed Person"
    assert response.json()["email"] == "new.address@example.com"
    assert response.json()["role"] == "developer"
    # The new email logs in.
    login = await client.post(
        "/auth/login", json={"username": "new.address@example.com", "password": USER_PASSWORD}
    )
    assert login.status_code == 200, login.text


@pytest.mark.parametrize(
    "body",
    [
        {"role": "admin"},
        {"role": "developer"},  # even "no change" is not the user's to send
        {"team_id": "00000000-0000-4000-8000-000000000000"},
        {"is_active": False},
        {"full_name": "Fine", "role": "manager"},
    ],
)
async def test_self_edit_of_privileged_fields_is_403(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.patch(f"/users/{dev.id}", json=body, headers=dev.headers)
    assert assert_error(response, 403, "FORBIDDEN")["required_role"] == "admin"
    after = (await client.get(f"/users/{dev.id}", headers=admin_headers)).json()
    assert after["role"] == "developer"
    assert after["is_active"] is True
    assert after["full_name"] != "Fine"


@pytest.mark.parametrize("role", ["developer", "manager", "team_lead", "auditor"])
async def test_editing_someone_else_is_admin_only(
    client: httpx.AsyncClient, admin_headers: dict[str, str], role: str
) -> None:
    actor = await make_user(client, admin_headers, role)
    target = await make_user(client, admin_headers, "developer")
    response = await client.patch(
        f"/users/{target.id}", json={"full_name": "Hijacked"}, headers=actor.headers
    )
    assert assert_error(response, 403, "FORBIDDEN")["required_role"] == "admin"
    after = (await client.get(f"/users/{target.id}", headers=admin_headers)).json()
    assert after["full_name"] != "Hijacked"


@pytest.mark.parametrize("body", [{"role": "developer"}, {"is_active": False}])
async def test_admin_cannot_demote_or_deactivate_self(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    admin_id = (await client.get("/auth/me", headers=admin_headers)).json()["id"]
    response = await client.patch(f"/users/{admin_id}", json=body, headers=admin_headers)
    assert_error(response, 409, "CONFLICT")
    me = (await client.get("/auth/me", headers=admin_headers)).json()
    assert (me["role"], me["is_active"]) == ("admin", True)


# --- password change ------------------------------------------------------------------------


NEW_PASSWORD = "Brand-New-Pass-987"


@pytest.mark.parametrize(
    "body",
    [
        {"password": NEW_PASSWORD},
        {"password": NEW_PASSWORD, "current_password": "Not-The-Password-1"},
        {"password": NEW_PASSWORD, "current_password": USER_PASSWORD.upper()},
    ],
    ids=["missing-current", "wrong-current", "wrong-case-current"],
)
async def test_password_change_requires_current_password(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.patch(f"/users/{dev.id}", json=body, headers=dev.headers)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "current_password"
    # Nothing changed: the old password still works, the session is still alive.
    assert (await client.get("/auth/me", headers=dev.headers)).status_code == 200
    old = await client.post(
        "/auth/login", json={"username": dev.username, "password": USER_PASSWORD}
    )
    assert old.status_code == 200
    new = await client.post(
        "/auth/login", json={"username": dev.username, "password": NEW_PASSWORD}
    )
    assert new.status_code == 401


async def test_password_change_revokes_sessions(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    second = await client.post(
        "/auth/login", json={"username": dev.username, "password": USER_PASSWORD}
    )
    second_tokens = second.json()
    response = await client.patch(
        f"/users/{dev.id}",
        json={"password": NEW_PASSWORD, "current_password": USER_PASSWORD},
        headers=dev.headers,
    )
    assert response.status_code == 200, response.text
    assert "Brand-New" not in response.text

    assert_error(await client.get("/auth/me", headers=dev.headers), 401, "UNAUTHORIZED")
    assert_error(
        await client.get(
            "/auth/me", headers={"Authorization": f"Bearer {second_tokens['access_token']}"}
        ),
        401,
        "UNAUTHORIZED",
    )
    refreshed = await client.post(
        "/auth/refresh", json={"refresh_token": second_tokens["refresh_token"]}
    )
    assert_error(refreshed, 401, "UNAUTHORIZED")
    old = await client.post(
        "/auth/login", json={"username": dev.username, "password": USER_PASSWORD}
    )
    assert_error(old, 401, "UNAUTHORIZED")
    new = await client.post(
        "/auth/login", json={"username": dev.username, "password": NEW_PASSWORD}
    )
    assert new.status_code == 200, new.text


async def test_admin_resets_password_without_current(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.patch(
        f"/users/{dev.id}", json={"password": NEW_PASSWORD}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    assert_error(await client.get("/auth/me", headers=dev.headers), 401, "UNAUTHORIZED")
    new = await client.post(
        "/auth/login", json={"username": dev.username, "password": NEW_PASSWORD}
    )
    assert new.status_code == 200
    # The admin's own session is unaffected.
    assert (await client.get("/auth/me", headers=admin_headers)).status_code == 200


@pytest.mark.parametrize(
    "role", ["admin", "manager", "team_lead", "developer", "support", "auditor", "viewer"]
)
@pytest.mark.parametrize(
    "current", [None, "Not-The-Password-1"], ids=["missing-current", "wrong-current"]
)
async def test_own_password_change_needs_the_current_password_for_every_role(
    client: httpx.AsyncClient, admin_headers: dict[str, str], role: str, current: str | None
) -> None:
    """A stolen access token alone cannot change the password and lock the owner out,
    not even an admin's."""
    actor = await make_user(client, admin_headers, role)
    body: dict[str, Any] = {"password": NEW_PASSWORD}
    if current is not None:
        body["current_password"] = current
    response = await client.patch(f"/users/{actor.id}", json=body, headers=actor.headers)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "current_password"
    assert (await client.get("/auth/me", headers=actor.headers)).status_code == 200
    old = await client.post(
        "/auth/login", json={"username": actor.username, "password": USER_PASSWORD}
    )
    assert old.status_code == 200, old.text

    changed = await client.patch(
        f"/users/{actor.id}",
        json={"password": NEW_PASSWORD, "current_password": USER_PASSWORD},
        headers=actor.headers,
    )
    assert changed.status_code == 200, changed.text
    new = await client.post(
        "/auth/login", json={"username": actor.username, "password": NEW_PASSWORD}
    )
    assert new.status_code == 200, new.text


async def test_bootstrap_admin_needs_the_current_password_too(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    admin_id = (await client.get("/auth/me", headers=admin_headers)).json()["id"]
    response = await client.patch(
        f"/users/{admin_id}", json={"password": NEW_PASSWORD}, headers=admin_headers
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert (await client.get("/auth/me", headers=admin_headers)).status_code == 200
    old = await client.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert old.status_code == 200


async def test_admin_reset_of_another_user_is_audited(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    other_admin = await make_user(client, admin_headers, "admin")
    response = await client.patch(
        f"/users/{other_admin.id}", json={"password": NEW_PASSWORD}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    audit = await client.get(f"/audit-logs?entity_id={other_admin.id}", headers=admin_headers)
    assert audit.status_code == 200, audit.text
    updates = [i for i in audit.json()["items"] if i["action"] == "USER_UPDATED"]
    assert len(updates) == 1
    assert updates[0]["actor"]["username"] == "admin"
    assert updates[0]["changes"]["password"] == {"from": "***", "to": "***"}
    assert NEW_PASSWORD not in audit.text


# --- deactivation ---------------------------------------------------------------------------


async def _assert_locked_out(client: httpx.AsyncClient, actor: Actor) -> None:
    assert_error(await client.get("/auth/me", headers=actor.headers), 401, "UNAUTHORIZED")
    assert_error(await client.get("/tasks", headers=actor.headers), 401, "UNAUTHORIZED")
    login = await client.post(
        "/auth/login", json={"username": actor.username, "password": USER_PASSWORD}
    )
    assert_error(login, 401, "UNAUTHORIZED")


async def test_deactivate_kills_sessions(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    tokens = (
        await client.post("/auth/login", json={"username": dev.username, "password": USER_PASSWORD})
    ).json()
    response = await client.post(f"/users/{dev.id}/deactivate", headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False
    await _assert_locked_out(client, dev)
    assert_error(
        await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
        401,
        "UNAUTHORIZED",
    )
    # Idempotent.
    again = await client.post(f"/users/{dev.id}/deactivate", headers=admin_headers)
    assert again.status_code == 200
    assert again.json()["is_active"] is False


async def test_deactivate_through_patch_kills_sessions(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.patch(
        f"/users/{dev.id}", json={"is_active": False}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    await _assert_locked_out(client, dev)
    # Reactivation lets the user log in again, but old tokens stay dead.
    back = await client.patch(f"/users/{dev.id}", json={"is_active": True}, headers=admin_headers)
    assert back.status_code == 200
    assert_error(await client.get("/auth/me", headers=dev.headers), 401, "UNAUTHORIZED")
    login = await client.post(
        "/auth/login", json={"username": dev.username, "password": USER_PASSWORD}
    )
    assert login.status_code == 200, login.text


@pytest.mark.parametrize("role", ["manager", "team_lead", "developer", "auditor"])
async def test_deactivate_is_admin_only(
    client: httpx.AsyncClient, admin_headers: dict[str, str], role: str
) -> None:
    actor = await make_user(client, admin_headers, role)
    target = await make_user(client, admin_headers, "developer")
    response = await client.post(f"/users/{target.id}/deactivate", headers=actor.headers)
    assert assert_error(response, 403, "FORBIDDEN")["required_role"] == "admin"
    assert (await client.get("/auth/me", headers=target.headers)).status_code == 200


async def test_deactivate_self_and_unknown(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    admin_id = (await client.get("/auth/me", headers=admin_headers)).json()["id"]
    assert_error(
        await client.post(f"/users/{admin_id}/deactivate", headers=admin_headers), 409, "CONFLICT"
    )
    assert (await client.get("/auth/me", headers=admin_headers)).status_code == 200
    error = assert_error(
        await client.post(f"/users/{uuid.uuid4()}/deactivate", headers=admin_headers),
        404,
        "NOT_FOUND",
    )
    assert error["entity_type"] == "user"


async def test_deactivated_admin_login_fails(client: httpx.AsyncClient) -> None:
    """Bootstrap admin with a second admin doing the deactivation."""
    admin_headers = {
        "Authorization": "Bearer "
        + (
            await client.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        ).json()["access_token"]
    }
    second = await make_user(client, admin_headers, "admin")
    admin_id = (await client.get("/auth/me", headers=admin_headers)).json()["id"]
    response = await client.post(f"/users/{admin_id}/deactivate", headers=second.headers)
    assert response.status_code == 200, response.text
    assert_error(await client.get("/users", headers=admin_headers), 401, "UNAUTHORIZED")


# --- notification preferences ---------------------------------------------------------------


PREFS_URL = "/users/me/notification-preferences"


async def test_preferences_roundtrip_and_replace(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    initial = await client.get(PREFS_URL, headers=dev.headers)
    assert initial.status_code == 200, initial.text
    assert initial.json() == {"preferences": []}

    body = {
        "preferences": [
            {"channel": "SMS", "enabled": False},
            {
                "channel": "EMAIL",
                "enabled": True,
                "address": "pager@example.com",
                "quiet_hours_start": "22:00",
                "quiet_hours_end": "07:30",
                "timezone": "Europe/Berlin",
            },
        ]
    }
    put = await client.put(PREFS_URL, json=body, headers=dev.headers)
    assert put.status_code == 200, put.text
    expected = [
        {
            "channel": "EMAIL",
            "enabled": True,
            "address": "pager@example.com",
            "quiet_hours_start": "22:00",
            "quiet_hours_end": "07:30",
            "timezone": "Europe/Berlin",
        },
        {
            "channel": "SMS",
            "enabled": False,
            "address": None,
            "quiet_hours_start": None,
            "quiet_hours_end": None,
            "timezone": None,
        },
    ]
    assert put.json() == {"preferences": expected}
    assert (await client.get(PREFS_URL, headers=dev.headers)).json() == {"preferences": expected}

    # PUT replaces: SMS is dropped, EMAIL changed.
    replaced = await client.put(
        PREFS_URL,
        json={"preferences": [{"channel": "EMAIL", "enabled": False}]},
        headers=dev.headers,
    )
    assert replaced.status_code == 200, replaced.text
    after = (await client.get(PREFS_URL, headers=dev.headers)).json()["preferences"]
    assert [(p["channel"], p["enabled"], p["address"]) for p in after] == [("EMAIL", False, None)]

    # Preferences are per caller.
    assert (await client.get(PREFS_URL, headers=admin_headers)).json() == {"preferences": []}


@pytest.mark.parametrize(
    "preferences",
    [
        [{"channel": "EMAIL"}, {"channel": "EMAIL", "enabled": False}],
        [{"channel": "SMS"}, {"channel": "SLACK"}, {"channel": "SMS"}],
    ],
)
async def test_duplicate_channel_is_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], preferences: list[dict[str, Any]]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.put(PREFS_URL, json={"preferences": preferences}, headers=dev.headers)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert (await client.get(PREFS_URL, headers=dev.headers)).json() == {"preferences": []}


@pytest.mark.parametrize(
    "item",
    [
        {"quiet_hours_start": "25:00", "quiet_hours_end": "07:00"},
        {"quiet_hours_start": "22:00", "quiet_hours_end": "07:60"},
        {"quiet_hours_start": "9:00", "quiet_hours_end": "17:00"},
        {"quiet_hours_start": "noon", "quiet_hours_end": "17:00"},
        {"quiet_hours_start": "22:00:00", "quiet_hours_end": "07:00"},
        {"quiet_hours_start": "", "quiet_hours_end": "07:00"},
        {"quiet_hours_start": 2200, "quiet_hours_end": "07:00"},
    ],
)
async def test_invalid_quiet_hours_is_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], item: dict[str, Any]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.put(
        PREFS_URL, json={"preferences": [{"channel": "EMAIL", **item}]}, headers=dev.headers
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert any("quiet_hours" in d["field"] for d in error["details"]), error
    assert (await client.get(PREFS_URL, headers=dev.headers)).json() == {"preferences": []}


@pytest.mark.parametrize(
    "item",
    [
        {"quiet_hours_start": "22:00"},
        {"quiet_hours_end": "07:00"},
    ],
    ids=["start-only", "end-only"],
)
async def test_half_specified_quiet_hours_is_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], item: dict[str, Any]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.put(
        PREFS_URL, json={"preferences": [{"channel": "EMAIL", **item}]}, headers=dev.headers
    )
    assert_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("tz", ["Mars/Olympus", "UTC+25", "not a zone"])
async def test_unknown_timezone_is_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], tz: str
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.put(
        PREFS_URL,
        json={
            "preferences": [
                {
                    "channel": "EMAIL",
                    "quiet_hours_start": "22:00",
                    "quiet_hours_end": "07:00",
                    "timezone": tz,
                }
            ]
        },
        headers=dev.headers,
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"][0]["field"].endswith("timezone")


@pytest.mark.parametrize(
    "body",
    [
        {"preferences": [{"channel": "PIGEON"}]},
        {"preferences": [{"channel": "email"}]},
        {"preferences": [{"enabled": True}]},
        {"preferences": [{"channel": "EMAIL", "enabled": "maybe"}]},
        {"preferences": [{"channel": "EMAIL", "colour": "red"}]},
        {"preferences": [{"channel": "EMAIL", "address": "x" * 501}]},
        {"preferences": {"channel": "EMAIL"}},
        {"preferences": None},
        {},
        {"preferences": [], "extra": 1},
    ],
)
async def test_invalid_preferences_body_is_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.put(PREFS_URL, json=body, headers=dev.headers)
    assert_error(response, 400, "VALIDATION_ERROR")


async def test_preferences_need_a_user(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    assert_error(await client.get(PREFS_URL), 401, "UNAUTHORIZED")
    created = await client.post(
        "/api-clients", json={"name": "bot", "scopes": ["tasks:read"]}, headers=admin_headers
    )
    creds = created.json()
    token = (
        await client.post(
            "/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
            },
        )
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert_error(await client.get(PREFS_URL, headers=headers), 403, "FORBIDDEN")
    put = await client.put(PREFS_URL, json={"preferences": [{"channel": "EMAIL"}]}, headers=headers)
    assert_error(put, 403, "FORBIDDEN")


async def test_users_me_is_the_signed_in_user(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer", username="dev-me")
    me = await client.get("/users/me", headers=dev.headers)
    assert me.status_code == 200, me.text
    assert (me.json()["id"], me.json()["username"]) == (dev.id, "dev-me")
    renamed = await client.patch("/users/me", json={"full_name": "Dev Me"}, headers=dev.headers)
    assert renamed.status_code == 200, renamed.text
    assert (await client.get(f"/users/{dev.id}", headers=admin_headers)).json()["full_name"] == (
        "Dev Me"
    )
    promoted = await client.patch("/users/me", json={"role": "admin"}, headers=dev.headers)
    assert_error(promoted, 403, "FORBIDDEN")
    assert_error(await client.get("/users/me"), 401, "UNAUTHORIZED")
