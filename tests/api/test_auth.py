"""Registration, logins, OAuth2 token endpoint, API clients,
refresh-token rotation with reuse detection, logout, revocation and bearer-token checks."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest

from opsflow.clock import SettableClock
from opsflow.config import Settings
from tests.conftest import assert_error
from tests.factories import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    bearer,
    client_token,
    create_api_client,
    make_user,
)

ACCESS_TTL_SECONDS = 1440 * 60  # conftest sets ACCESS_TOKEN_EXPIRE_MINUTES=1440


async def login_body(
    client: httpx.AsyncClient, username: str, password: str = USER_PASSWORD
) -> dict[str, Any]:
    response = await client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- registration ---------------------------------------------------------------------------


async def test_register_returns_seed_shape(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/auth/register",
        json={
            "email": "John.Doe@Example.com",
            "username": "JohnDoe",
            "password": "SecureP@ss123",
            "full_name": "John Doe",
            "role": "developer",
        },
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    uuid.UUID(body["id"])
    assert body["email"] == "john.doe@example.com"
    assert body["username"] == "johndoe"
    assert body["full_name"] == "John Doe"
    assert body["role"] == "developer"
    assert body["is_active"] is True
    assert body["created_at"] == "2026-01-27T10:30:00Z"
    assert not {"password", "hashed_password"} & set(body)
    assert "SecureP@ss123" not in response.text


@pytest.mark.parametrize(
    "role", ["manager", "team_lead", "developer", "support", "auditor", "viewer"]
)
async def test_register_is_admin_only(
    client: httpx.AsyncClient, admin_headers: dict[str, str], role: str
) -> None:
    actor = await make_user(client, admin_headers, role)
    response = await client.post(
        "/auth/register",
        json={
            "email": "intruder@example.com",
            "username": "intruder",
            "password": USER_PASSWORD,
            "role": "admin",
        },
        headers=actor.headers,
    )
    error = assert_error(response, 403, "FORBIDDEN")
    assert error["required_role"] == "admin"
    # Nothing was created.
    users = await client.get("/users", params={"q": "intruder"}, headers=admin_headers)
    assert users.json()["pagination"]["total_items"] == 0


async def test_register_without_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/register",
        json={"email": "x@example.com", "username": "xuser", "password": USER_PASSWORD},
    )
    assert_error(response, 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("username", "email", "taken"),
    [
        ("DupUser", "other@example.com", ["username"]),
        ("dupuser", "fresh@example.com", ["username"]),
        ("freshuser", "DUP@example.com", ["email"]),
        ("DUPUSER", "dup@EXAMPLE.com", ["email", "username"]),
    ],
)
async def test_register_duplicate_username_or_email_is_409(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    username: str,
    email: str,
    taken: list[str],
) -> None:
    first = await client.post(
        "/auth/register",
        json={"email": "dup@example.com", "username": "dupuser", "password": USER_PASSWORD},
        headers=admin_headers,
    )
    assert first.status_code == 201, first.text
    response = await client.post(
        "/auth/register",
        json={"email": email, "username": username, "password": USER_PASSWORD},
        headers=admin_headers,
    )
    error = assert_error(response, 409, "CONFLICT")
    assert sorted(d["field"] for d in error["details"]) == taken


# --- login ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"username": "jane.smith"},
        {"username": "Jane.Smith"},
        {"username": "  JANE.SMITH  "},
        {"username": "jane.smith@example.com"},
        {"username": "Jane.Smith@EXAMPLE.COM"},
        {"email": "JANE.SMITH@example.com"},
    ],
    ids=["username", "username-mixed-case", "padded-upper", "email", "email-upper", "email-key"],
)
async def test_login_by_username_or_email_case_insensitive(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, str]
) -> None:
    jane = await make_user(client, admin_headers, "developer", username="jane.smith")
    response = await client.post("/auth/login", json={**body, "password": USER_PASSWORD})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["token_type"] == "bearer"
    assert data["expires_in"] == ACCESS_TTL_SECONDS
    assert data["access_token"].count(".") == 2
    assert data["refresh_token"]
    assert data["user"]["id"] == jane.id
    assert data["user"]["username"] == "jane.smith"
    assert data["user"]["email"] == "jane.smith@example.com"
    assert data["user"]["role"] == "developer"
    me = await client.get("/auth/me", headers=bearer(data["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == jane.id


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("admin", "wrong-password-1"),
        ("admin", ADMIN_PASSWORD.lower()),
        ("admin", ADMIN_PASSWORD + " "),
        ("no-such-user", ADMIN_PASSWORD),
        ("nobody@example.com", ADMIN_PASSWORD),
    ],
)
async def test_login_bad_credentials_is_401_without_enumeration(
    client: httpx.AsyncClient, username: str, password: str
) -> None:
    response = await client.post("/auth/login", json={"username": username, "password": password})
    error = assert_error(response, 401, "UNAUTHORIZED")
    # The same message whether the user exists or not.
    assert error["message"] == "Invalid username or password"
    assert "access_token" not in response.text


async def test_login_of_deactivated_user_is_401(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    deactivated = await client.post(f"/users/{dev.id}/deactivate", headers=admin_headers)
    assert deactivated.status_code == 200, deactivated.text
    response = await client.post(
        "/auth/login", json={"username": dev.username, "password": USER_PASSWORD}
    )
    assert_error(response, 401, "UNAUTHORIZED")
    # Its earlier token is dead as well.
    assert_error(await client.get("/auth/me", headers=dev.headers), 401, "UNAUTHORIZED")


# --- login throttling ----------------------------------------------------------------------


async def attempt(
    client: httpx.AsyncClient, username: str, password: str = "Wrong-Password-0"
) -> httpx.Response:
    return await client.post("/auth/login", json={"username": username, "password": password})


async def test_login_throttled_per_username(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    other = await make_user(client, admin_headers, "developer")
    for _ in range(10):
        assert_error(await attempt(client, dev.username), 401, "UNAUTHORIZED")
    # Now even the right password is refused, with a Retry-After.
    blocked = await attempt(client, dev.username.upper(), USER_PASSWORD)
    error = assert_error(blocked, 429, "RATE_LIMITED")
    assert blocked.headers["retry-after"] == "900"
    assert "access_token" not in blocked.text
    assert error["retry_after_seconds"] == 900
    # Another account from the same address is not affected.
    assert (await attempt(client, other.username, USER_PASSWORD)).status_code == 200
    # Existing sessions are not touched by the throttle.
    assert (await client.get("/auth/me", headers=dev.headers)).status_code == 200

    clock.advance(timedelta(minutes=14, seconds=59))
    still = await attempt(client, dev.username, USER_PASSWORD)
    assert_error(still, 429, "RATE_LIMITED")
    assert still.headers["retry-after"] == "1"
    clock.advance(timedelta(seconds=1))
    assert (await attempt(client, dev.username, USER_PASSWORD)).status_code == 200


async def test_successful_login_resets_the_username_count(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    for _ in range(9):
        assert (await attempt(client, dev.username)).status_code == 401
    assert (await attempt(client, dev.username, USER_PASSWORD)).status_code == 200
    for _ in range(10):
        assert (await attempt(client, dev.username)).status_code == 401
    assert_error(await attempt(client, dev.username, USER_PASSWORD), 429, "RATE_LIMITED")


async def test_token_endpoint_shares_the_login_throttle(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    for _ in range(10):
        response = await client.post(
            "/auth/token",
            data={"grant_type": "password", "username": dev.username, "password": "nope-nope"},
        )
        assert response.status_code == 401
    assert_error(await attempt(client, dev.username, USER_PASSWORD), 429, "RATE_LIMITED")
    via_form = await client.post(
        "/auth/token",
        data={"grant_type": "password", "username": dev.username, "password": USER_PASSWORD},
    )
    assert_error(via_form, 429, "RATE_LIMITED")


async def test_login_throttled_per_ip(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    for index in range(50):
        assert (await attempt(client, f"spray-{index % 7}")).status_code == 401
    # Every account is now refused from this address, whatever the password.
    assert_error(await attempt(client, dev.username, USER_PASSWORD), 429, "RATE_LIMITED")
    assert_error(await attempt(client, "admin", ADMIN_PASSWORD), 429, "RATE_LIMITED")


async def test_throttle_cannot_be_bypassed_with_the_email(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    for _ in range(10):
        assert (await attempt(client, dev.username)).status_code == 401
    via_email = await attempt(client, f"{dev.username}@example.com")
    assert_error(via_email, 429, "RATE_LIMITED")


# --- OAuth2 token endpoint ------------------------------------------------------------------


async def test_token_password_grant(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/token",
        data={"grant_type": "password", "username": "ADMIN", "password": ADMIN_PASSWORD},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["refresh_token"]
    assert body["user"]["username"] == "admin"
    me = await client.get("/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["role"] == "admin"


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        ({"grant_type": "password", "username": "admin", "password": "nope-nope"}, 401, None),
        ({"grant_type": "password", "username": "admin"}, 400, "VALIDATION_ERROR"),
        ({"grant_type": "password"}, 400, "VALIDATION_ERROR"),
        ({"grant_type": "authorization_code", "code": "x"}, 400, "VALIDATION_ERROR"),
        ({"grant_type": "implicit"}, 400, "VALIDATION_ERROR"),
        ({"username": "admin", "password": ADMIN_PASSWORD}, 400, "VALIDATION_ERROR"),
        ({"grant_type": "client_credentials"}, 401, None),
        (
            {"grant_type": "client_credentials", "client_id": "ofc_x", "client_secret": "y"},
            401,
            None,
        ),
    ],
)
async def test_token_endpoint_rejections(
    client: httpx.AsyncClient, form: dict[str, str], status: int, code: str | None
) -> None:
    response = await client.post("/auth/token", data=form)
    assert_error(response, status, code or "UNAUTHORIZED")
    assert "access_token" not in response.text


async def test_unsupported_grant_type_names_oauth_error(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/token", data={"grant_type": "implicit"})
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["oauth_error"] == "unsupported_grant_type"
    assert error["details"][0]["field"] == "grant_type"


# --- API clients ----------------------------------------------------------------------------


async def test_api_client_secret_shown_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await create_api_client(client, admin_headers, ["tasks:read", "tasks:write"])
    assert created["client_id"]
    secret = created["client_secret"]
    assert len(secret) >= 32
    assert sorted(created["scopes"]) == ["tasks:read", "tasks:write"]
    assert created["revoked_at"] is None

    listing = await client.get("/api-clients", headers=admin_headers)
    assert listing.status_code == 200, listing.text
    rows = [c for c in listing.json() if c["id"] == created["id"]]
    assert len(rows) == 1
    assert rows[0]["client_id"] == created["client_id"]
    assert "client_secret" not in rows[0]
    assert "hashed_secret" not in rows[0]
    assert secret not in listing.text
    # The secret is usable; the wrong one is not.
    assert (await client_token(client, created)).status_code == 200
    wrong = await client_token(client, {**created, "client_secret": secret + "x"})
    assert_error(wrong, 401, "UNAUTHORIZED")


@pytest.mark.parametrize("role", ["manager", "developer", "auditor"])
async def test_api_clients_are_admin_only(
    client: httpx.AsyncClient, admin_headers: dict[str, str], role: str
) -> None:
    actor = await make_user(client, admin_headers, role)
    created = await create_api_client(client, admin_headers, ["tasks:read"])
    post = await client.post(
        "/api-clients", json={"name": "x", "scopes": ["tasks:read"]}, headers=actor.headers
    )
    assert assert_error(post, 403, "FORBIDDEN")["required_role"] == "admin"
    assert_error(await client.get("/api-clients", headers=actor.headers), 403, "FORBIDDEN")
    delete = await client.delete(f"/api-clients/{created['id']}", headers=actor.headers)
    assert_error(delete, 403, "FORBIDDEN")
    # The client still works: the forbidden delete changed nothing.
    assert (await client_token(client, created)).status_code == 200


async def test_client_credentials_form_and_basic(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    creds = await create_api_client(client, admin_headers, ["tasks:read", "tasks:write"])
    form = await client_token(client, creds)
    assert form.status_code == 200, form.text
    body = form.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == ACCESS_TTL_SECONDS
    assert "refresh_token" not in body
    assert sorted(body["scope"].split()) == ["tasks:read", "tasks:write"]

    basic = base64.b64encode(f"{creds['client_id']}:{creds['client_secret']}".encode()).decode()
    via_basic = await client.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": "tasks:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert via_basic.status_code == 200, via_basic.text
    assert via_basic.json()["scope"] == "tasks:read"
    me = await client.get("/auth/me", headers=bearer(via_basic.json()["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["scopes"] == ["tasks:read"]

    bad_basic = base64.b64encode(f"{creds['client_id']}:wrong".encode()).decode()
    rejected = await client.post(
        "/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {bad_basic}"},
    )
    assert_error(rejected, 401, "UNAUTHORIZED")
    garbage = await client.post(
        "/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic %%%not-base64%%%"},
    )
    assert_error(garbage, 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    "scope", ["tasks:write", "tasks:read tasks:write", "reports:read", "admin", "tasks:*"]
)
async def test_client_requesting_scope_not_granted_is_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], scope: str
) -> None:
    creds = await create_api_client(client, admin_headers, ["tasks:read"])
    response = await client_token(client, creds, scope)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["oauth_error"] == "invalid_scope"
    assert "access_token" not in response.text


async def test_read_scope_can_list_but_not_create_tasks(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    creds = await create_api_client(client, admin_headers, ["tasks:read"])
    token = (await client_token(client, creds)).json()["access_token"]
    listed = await client.get("/tasks", headers=bearer(token))
    assert listed.status_code == 200, listed.text
    created = await client.post("/tasks", json={"title": "from a robot"}, headers=bearer(token))
    assert_error(created, 403, "FORBIDDEN")
    # Not an admin either.
    assert_error(await client.get("/api-clients", headers=bearer(token)), 403, "FORBIDDEN")
    assert_error(await client.get("/audit-logs", headers=bearer(token)), 403, "FORBIDDEN")


async def test_api_client_refusal_names_the_missing_scope_not_roles(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    creds = await create_api_client(client, admin_headers, ["tasks:read"])
    token = (await client_token(client, creds)).json()["access_token"]
    created = await client.post("/tasks", json={"title": "from a robot"}, headers=bearer(token))
    error = assert_error(created, 403, "FORBIDDEN")
    assert error["required_scope"] == "tasks:write"
    assert error["granted_scopes"] == ["tasks:read"]
    assert "tasks:write" in error["message"]
    assert "required_role" not in error
    assert "allowed_roles" not in error

    # What no scope grants at all says so, still without roles.
    denied = await client.get("/audit-logs", headers=bearer(token))
    error = assert_error(denied, 403, "FORBIDDEN")
    assert error["required_scope"] is None
    assert "No API-client scope" in error["message"]
    assert "required_role" not in error

    me = (await client.get("/auth/me", headers=admin_headers)).json()["id"]
    patched = await client.patch(f"/users/{me}", json={"full_name": "x"}, headers=bearer(token))
    error = assert_error(patched, 403, "FORBIDDEN")
    assert "required_role" not in error

    writer = await create_api_client(client, admin_headers, ["tasks:write"])
    writer_token = (await client_token(client, writer)).json()["access_token"]
    listed = await client.get("/tasks", headers=bearer(writer_token))
    assert assert_error(listed, 403, "FORBIDDEN")["required_scope"] == "tasks:read"


async def test_write_scope_creates_task_and_narrowed_token_cannot(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    creds = await create_api_client(client, admin_headers, ["tasks:read", "tasks:write"])
    token = (await client_token(client, creds)).json()["access_token"]
    created = await client.post(
        "/tasks", json={"title": "Disk 91% on db-1", "priority": "HIGH"}, headers=bearer(token)
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    fetched = await client.get(f"/tasks/{task_id}", headers=bearer(token))
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["title"] == "Disk 91% on db-1"

    # A token requested with only tasks:read does not carry the write grant.
    narrow = (await client_token(client, creds, "tasks:read")).json()["access_token"]
    assert_error(
        await client.post("/tasks", json={"title": "nope"}, headers=bearer(narrow)),
        403,
        "FORBIDDEN",
    )


async def test_revoked_client_gets_no_tokens_and_old_token_dies(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    creds = await create_api_client(client, admin_headers, ["tasks:read"])
    token = (await client_token(client, creds)).json()["access_token"]
    assert (await client.get("/tasks", headers=bearer(token))).status_code == 200

    deleted = await client.delete(f"/api-clients/{creds['id']}", headers=admin_headers)
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""

    assert_error(await client_token(client, creds), 401, "UNAUTHORIZED")
    assert_error(await client.get("/tasks", headers=bearer(token)), 401, "UNAUTHORIZED")
    assert_error(await client.get("/auth/me", headers=bearer(token)), 401, "UNAUTHORIZED")
    listing = (await client.get("/api-clients", headers=admin_headers)).json()
    row = next(c for c in listing if c["id"] == creds["id"])
    assert row["revoked_at"] == "2026-01-27T10:30:00Z"
    # Deleting again is harmless; an unknown id is a 404 envelope.
    again = await client.delete(f"/api-clients/{creds['id']}", headers=admin_headers)
    assert again.status_code == 204
    missing_id = uuid.uuid4()
    missing = await client.delete(f"/api-clients/{missing_id}", headers=admin_headers)
    error = assert_error(missing, 404, "NOT_FOUND")
    assert error["entity_type"] == "api_client"
    assert error["entity_id"] == str(missing_id)


# --- /auth/me -------------------------------------------------------------------------------


async def test_me_for_user(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    dev = await make_user(client, admin_headers, "developer")
    response = await client.get("/auth/me", headers=dev.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == dev.id
    assert body["username"] == dev.username
    assert body["role"] == "developer"
    assert body["is_active"] is True
    uuid.UUID(body["session_id"])
    assert body["permissions"]["task_read"] == "all"
    assert body["permissions"]["task_progress"] == "assignee"
    assert "administer" not in body["permissions"]
    assert "audit_read" not in body["permissions"]
    assert "hashed_password" not in body

    admin = (await client.get("/auth/me", headers=admin_headers)).json()
    assert admin["permissions"]["administer"] == "all"


async def test_me_for_api_client(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    creds = await create_api_client(client, admin_headers, ["tasks:read"])
    token = (await client_token(client, creds)).json()["access_token"]
    response = await client.get("/auth/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["actor_type"] == "api"
    assert body["id"] == creds["id"]
    assert body["client_id"] == creds["client_id"]
    assert body["name"] == creds["name"]
    assert body["scopes"] == ["tasks:read"]
    assert body["permissions"] == {
        "task_read": "all",
        "read_users": "all",
        "comment_internal": "all",
    }
    assert creds["client_secret"] not in response.text


# --- refresh rotation -----------------------------------------------------------------------


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_and_reuse_kills_the_whole_session(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    first = await login_body(client, dev.username)
    other_session = await login_body(client, dev.username)

    r1 = await refresh(client, first["refresh_token"])
    assert r1.status_code == 200, r1.text
    rotated = r1.json()
    assert rotated["token_type"] == "bearer"
    assert rotated["expires_in"] == ACCESS_TTL_SECONDS
    assert rotated["refresh_token"] not in (first["refresh_token"], None)
    assert rotated["access_token"] != first["access_token"]
    assert (
        await client.get("/auth/me", headers=bearer(rotated["access_token"]))
    ).status_code == 200

    # The new refresh token works (and rotates again).
    r2 = await refresh(client, rotated["refresh_token"])
    assert r2.status_code == 200, r2.text
    newest = r2.json()

    # Replaying the first, rotated-out token: 401 and the session is revoked.
    replay = await refresh(client, first["refresh_token"])
    assert_error(replay, 401, "UNAUTHORIZED")

    for access in (first["access_token"], rotated["access_token"], newest["access_token"]):
        assert_error(await client.get("/auth/me", headers=bearer(access)), 401, "UNAUTHORIZED")
    assert_error(await refresh(client, newest["refresh_token"]), 401, "UNAUTHORIZED")
    assert_error(await refresh(client, rotated["refresh_token"]), 401, "UNAUTHORIZED")

    # Only that login's family died: the user's other session is untouched.
    me = await client.get("/auth/me", headers=bearer(other_session["access_token"]))
    assert me.status_code == 200, me.text
    assert (await refresh(client, other_session["refresh_token"])).status_code == 200


async def test_refresh_reuse_is_audited(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    first = await login_body(client, dev.username)
    assert (await refresh(client, first["refresh_token"])).status_code == 200
    assert (await refresh(client, first["refresh_token"])).status_code == 401
    rows = await client.get(
        "/audit-logs",
        params={"entity_id": dev.id, "action": "SESSION_REVOKED"},
        headers=admin_headers,
    )
    assert rows.status_code == 200, rows.text
    items = rows.json()["items"]
    assert len(items) == 1
    assert items[0]["metadata"]["reason"] == "refresh_token_reuse"


@pytest.mark.parametrize("token", ["ofr_not-a-real-token", "x", "a" * 4096])
async def test_refresh_with_unknown_token_is_401(client: httpx.AsyncClient, token: str) -> None:
    assert_error(await refresh(client, token), 401, "UNAUTHORIZED")


async def test_refresh_outlives_access_token_but_not_its_own_ttl(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    tokens = await login_body(client, dev.username)
    clock.advance(timedelta(minutes=1441))
    assert_error(
        await client.get("/auth/me", headers=bearer(tokens["access_token"])), 401, "UNAUTHORIZED"
    )
    renewed = await refresh(client, tokens["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    assert (
        await client.get("/auth/me", headers=bearer(renewed.json()["access_token"]))
    ).status_code == 200
    # Refresh tokens last 14 days by default.
    clock.advance(timedelta(days=14, minutes=1))
    assert_error(await refresh(client, renewed.json()["refresh_token"]), 401, "UNAUTHORIZED")


# --- logout and revoke ----------------------------------------------------------------------


async def test_logout_ends_the_session(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    tokens = await login_body(client, dev.username)
    headers = bearer(tokens["access_token"])
    assert (await client.get("/auth/me", headers=headers)).status_code == 200

    out = await client.post("/auth/logout", headers=headers)
    assert out.status_code == 204, out.text
    assert out.content == b""
    assert_error(await client.get("/auth/me", headers=headers), 401, "UNAUTHORIZED")
    assert_error(await refresh(client, tokens["refresh_token"]), 401, "UNAUTHORIZED")
    assert_error(await client.post("/auth/logout", headers=headers), 401, "UNAUTHORIZED")
    # The make_user login is a separate session and still alive.
    assert (await client.get("/auth/me", headers=dev.headers)).status_code == 200


async def test_logout_with_refresh_token_of_another_own_session(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    laptop = await login_body(client, dev.username)
    phone = await login_body(client, dev.username)
    out = await client.post(
        "/auth/logout",
        json={"refresh_token": phone["refresh_token"]},
        headers=bearer(laptop["access_token"]),
    )
    assert out.status_code == 204, out.text
    for tokens in (laptop, phone):
        assert_error(
            await client.get("/auth/me", headers=bearer(tokens["access_token"])),
            401,
            "UNAUTHORIZED",
        )


async def test_logout_without_token_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/auth/logout"), 401, "UNAUTHORIZED")


async def test_revoke_refresh_token(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    victim = await login_body(client, dev.username)
    response = await client.post(
        "/auth/revoke",
        json={"token": victim["refresh_token"], "token_type_hint": "refresh_token"},
        headers=dev.headers,
    )
    assert response.status_code == 204, response.text
    assert_error(await refresh(client, victim["refresh_token"]), 401, "UNAUTHORIZED")
    assert_error(
        await client.get("/auth/me", headers=bearer(victim["access_token"])), 401, "UNAUTHORIZED"
    )
    # The caller's own (different) session is still alive.
    assert (await client.get("/auth/me", headers=dev.headers)).status_code == 200


async def test_revoke_access_token_of_own_other_session(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    other = await login_body(client, dev.username)
    response = await client.post(
        "/auth/revoke", json={"token": other["access_token"]}, headers=dev.headers
    )
    assert response.status_code == 204, response.text
    assert_error(
        await client.get("/auth/me", headers=bearer(other["access_token"])), 401, "UNAUTHORIZED"
    )
    assert_error(await refresh(client, other["refresh_token"]), 401, "UNAUTHORIZED")


async def test_revoke_of_someone_elses_token(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    alice = await make_user(client, admin_headers, "developer")
    bob = await make_user(client, admin_headers, "developer")
    bob_tokens = await login_body(client, bob.username)
    denied = await client.post(
        "/auth/revoke", json={"token": bob_tokens["refresh_token"]}, headers=alice.headers
    )
    assert assert_error(denied, 403, "FORBIDDEN")["required_role"] == "admin"
    assert (
        await client.get("/auth/me", headers=bearer(bob_tokens["access_token"]))
    ).status_code == 200

    by_admin = await client.post(
        "/auth/revoke", json={"token": bob_tokens["refresh_token"]}, headers=admin_headers
    )
    assert by_admin.status_code == 204, by_admin.text
    assert_error(
        await client.get("/auth/me", headers=bearer(bob_tokens["access_token"])),
        401,
        "UNAUTHORIZED",
    )


@pytest.mark.parametrize("token", ["ofr_unknown", "not.a.jwt", "eyJhbGciOiJIUzI1NiJ9.e30.x"])
async def test_revoke_unknown_token_is_204(
    client: httpx.AsyncClient, admin_headers: dict[str, str], token: str
) -> None:
    response = await client.post("/auth/revoke", json={"token": token}, headers=admin_headers)
    assert response.status_code == 204, response.text
    assert (await client.get("/auth/me", headers=admin_headers)).status_code == 200


async def test_revoke_requires_authentication(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/auth/revoke", json={"token": "ofr_x"}), 401, "UNAUTHORIZED")


# --- bearer token checks --------------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(part: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def _flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


def tamper(kind: str, token: str, secret: str, admin_id: str) -> str:
    header, payload, signature = token.split(".")
    claims = _unb64(payload)
    if kind == "flip-signature":
        return f"{header}.{payload}.{_flip(signature, len(signature) // 2)}"
    if kind == "flip-payload":
        return f"{header}.{_flip(payload, len(payload) // 2)}.{signature}"
    if kind == "escalate-subject":
        return f"{header}.{_b64({**claims, 'sub': admin_id})}.{signature}"
    if kind == "drop-signature":
        return f"{header}.{payload}."
    if kind == "alg-none":
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    if kind == "other-secret":
        return jwt.encode(claims, "another-secret-that-is-long-enough-0123456789", "HS256")
    if kind == "other-algorithm":
        return jwt.encode(claims, secret, "HS512")
    if kind == "wrong-issuer":
        return jwt.encode({**claims, "iss": "someone-else"}, secret, "HS256")
    if kind == "no-session":
        return jwt.encode({k: v for k, v in claims.items() if k != "sid"}, secret, "HS256")
    if kind == "foreign-session":
        return jwt.encode({**claims, "sid": str(uuid.uuid4())}, secret, "HS256")
    if kind == "not-yet-valid":
        later = claims["iat"] + 3600
        return jwt.encode({**claims, "iat": later, "nbf": later}, secret, "HS256")
    if kind == "truncated":
        return token[:-10]
    if kind == "garbage":
        return "definitely-not-a-token"
    raise AssertionError(kind)


TAMPERINGS = [
    "flip-signature",
    "flip-payload",
    "escalate-subject",
    "drop-signature",
    "alg-none",
    "other-secret",
    "other-algorithm",
    "wrong-issuer",
    "no-session",
    "foreign-session",
    "not-yet-valid",
    "truncated",
    "garbage",
]


@pytest.mark.filterwarnings("ignore:The HMAC key is")
@pytest.mark.parametrize("kind", TAMPERINGS)
async def test_tampered_token_is_401(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Settings, kind: str
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    admin_id = (await client.get("/auth/me", headers=admin_headers)).json()["id"]
    token = dev.headers["Authorization"].removeprefix("Bearer ")
    forged = tamper(kind, token, settings.jwt_secret_key, admin_id)
    assert forged != token
    response = await client.get("/auth/me", headers=bearer(forged))
    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == "Bearer"
    # The genuine token still works (the check is not just "everything fails").
    assert (await client.get("/auth/me", headers=dev.headers)).status_code == 200


async def test_untampered_reencoding_is_accepted(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Settings
) -> None:
    """Control for the tampering cases: re-signing the same claims with the real key works."""
    token = admin_headers["Authorization"].removeprefix("Bearer ")
    claims = _unb64(token.split(".")[1])
    resigned = jwt.encode(claims, settings.jwt_secret_key, "HS256")
    assert (await client.get("/auth/me", headers=bearer(resigned))).status_code == 200


async def test_access_token_expires_after_configured_minutes(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    clock.advance(timedelta(minutes=1439))
    assert (await client.get("/auth/me", headers=admin_headers)).status_code == 200
    clock.advance(timedelta(minutes=2))
    response = await client.get("/auth/me", headers=admin_headers)
    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_api_client_token_expires(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    creds = await create_api_client(client, admin_headers, ["tasks:read"])
    token = (await client_token(client, creds)).json()["access_token"]
    clock.advance(timedelta(minutes=1441))
    assert_error(await client.get("/tasks", headers=bearer(token)), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/auth/me"),
        ("GET", "/users"),
        ("GET", "/teams"),
        ("GET", "/tasks"),
        ("POST", "/tasks"),
        ("GET", "/audit-logs"),
        ("GET", "/audit-logs/verify"),
        ("GET", "/api-clients"),
        ("GET", "/users/me/notification-preferences"),
    ],
)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic YWRtaW46eA==", "Token abc", "Bearer " + "a" * 5000],
    ids=["absent", "empty", "scheme-only", "scheme-space", "basic", "other-scheme", "oversize"],
)
async def test_missing_or_malformed_authorization_is_401(
    client: httpx.AsyncClient, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.request(method, path, headers=headers, json={"title": "x"})
    error = assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Traceback" not in error["message"]


# --- hostile credentials on the token endpoint -----------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic éé",  # not ASCII at all
        "Basic " + base64.b64encode("ofc_x:sécret".encode("latin-1")).decode(),  # not UTF-8
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b"ofc_\x00abc:secret").decode(),  # NUL in the client id
        "Basic " + base64.b64encode(b"ofc_abc:sec\x00ret").decode(),  # NUL in the secret
        "Basic " + base64.b64encode(b":secret").decode(),  # empty client id
        "Basic =",
        "Basic ",
    ],
    ids=["non-ascii", "latin-1", "no-colon", "nul-id", "nul-secret", "empty-id", "pad", "empty"],
)
async def test_hostile_basic_credentials_are_401(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.post(
        "/auth/token",
        content=b"grant_type=client_credentials",
        headers={
            b"Authorization": authorization.encode(),  # raw UTF-8 bytes on the wire
            b"Content-Type": b"application/x-www-form-urlencoded",
        },
    )
    error = assert_error(response, 401, "UNAUTHORIZED")
    assert error.get("oauth_error") in (None, "invalid_client")


async def test_nul_in_form_client_id_is_refused_without_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "client_id": "ofc_\x00x", "client_secret": "s"},
    )
    assert response.status_code in (400, 401), response.text
    assert "error" in response.json()


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"], ids=["huge-exp", "huge-iat", "huge-nbf"])
@pytest.mark.parametrize("value", [10**20, 2**63, 1e300])
async def test_validly_signed_token_with_absurd_times_is_401(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    claim: str,
    value: float,
) -> None:
    token = admin_headers["Authorization"].removeprefix("Bearer ")
    claims = {**_unb64(token.split(".")[1]), claim: value}
    forged = jwt.encode(claims, settings.jwt_secret_key, "HS256")
    response = await client.get("/auth/me", headers=bearer(forged))
    assert_error(response, 401, "UNAUTHORIZED")
    revoke = await client.post("/auth/revoke", json={"token": forged}, headers=admin_headers)
    assert revoke.status_code == 204, revoke.text
