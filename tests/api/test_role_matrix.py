"""Every endpoint x every role (the matrix in docs/roles.md).

`ENDPOINTS` lists every route of the app, written out by hand, each with the capability
of the matrix it needs and a setup that puts the world in a state where the call succeeds
for a caller holding that capability (a task in the right status, assigned to the
developer and owned by the team lead's team). The expected answer comes from `HOLDERS`,
an independent copy of the documented table — never from `opsflow.auth.permissions.MATRIX`:

* anonymous → 401 on everything but the public routes;
* a role holding the capability → the endpoint's success status;
* any other role → 403 FORBIDDEN.

`test_matrix_lists_every_route` fails when a route is added without an entry here.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount, WebSocketRoute

from tests.api.ws_support import Closed, WsClient
from tests.factories import ADMIN_PASSWORD, USER_PASSWORD, make_team, make_user

Headers = dict[str, str]
ROLES = ("admin", "manager", "team_lead", "developer", "support", "auditor", "viewer")
ANONYMOUS = "anonymous"
EVERYONE = frozenset(ROLES)

# docs/roles.md, copied by hand: capability -> roles that hold it.
HOLDERS: dict[str, frozenset[str]] = {
    # "register users, API clients, integrations, templates, webhooks" (and editing or
    # deactivating other users' accounts)
    "administer": frozenset({"admin"}),
    "create_task": frozenset({"admin", "manager", "team_lead", "support"}),
    "declare_incident": frozenset({"admin", "manager", "team_lead", "developer", "support"}),
    # "update, assign": team_lead for their own team
    "update_assign": frozenset({"admin", "manager", "team_lead"}),
    # "acknowledge, start, block, complete" (with unblock and reopen): team_lead for their
    # own team, developer when assignee
    "progress": frozenset({"admin", "manager", "team_lead", "developer"}),
    # "pause/resume SLA, snooze": team_lead for their own team
    "snooze": frozenset({"admin", "manager", "team_lead"}),
    "cancel": frozenset({"admin"}),
    # "comment, attach" (changing or deleting a comment or an attachment: its author, or an
    # admin)
    "comment": frozenset({"admin", "manager", "team_lead", "developer", "support"}),
    "read_tasks": EVERYONE,
    "audit": frozenset({"admin", "auditor"}),
    "reports": frozenset({"admin", "manager", "team_lead", "auditor", "viewer"}),
    # "ingest tickets"
    "ingest_tickets": frozenset({"admin", "manager"}),
    # "heartbeat monitors: write" (reading them is "read tasks")
    "monitors_write": frozenset({"admin", "manager"}),
    # Not rows of the documented table:
    # - the caller's own account (me, logout, revoking its own tokens, its preferences);
    "own_account": EVERYONE,
    # - the user and team directory, readable like tasks (assignees, team pickers);
    "directory": EVERYONE,
    # - managing teams: OpsFlow lets managers run teams besides admins.
    "manage_teams": frozenset({"admin", "manager"}),
    # "SLA policies, calendars, escalation policies": admin and manager; team_lead reads.
    "sla_write": frozenset({"admin", "manager"}),
    "sla_read": frozenset({"admin", "manager", "team_lead"}),
    # "notifications: all / retry": admin all + retry, manager all, developer and support own.
    "notifications_read": frozenset({"admin", "manager", "developer", "support"}),
    "notifications_retry": frozenset({"admin"}),
}
# Fields whose visibility depends on the role, not only the route:
# - a user's e-mail address (the directory rule): admins and managers read every address,
#   the other roles their own and their own team members' (null otherwise);
# - a task's `audit_trail` in GET /tasks/{id}: for the roles holding "audit" only (the
#   field is left out for the others).
EMAILS_OF_EVERYONE = frozenset({"admin", "manager"})
PUBLIC = "public"  # no authentication at all (login, token, refresh, health, docs)
# Capabilities that roles hold only for some rows ("own team", "when assignee").
ROW_SCOPED = {"update_assign", "progress", "snooze"}


# --- the world each test builds -----------------------------------------------------------


@dataclass
class Caller:
    role: str
    headers: Headers
    username: str | None = None
    password: str | None = None
    id: str | None = None


@dataclass
class World:
    client: httpx.AsyncClient
    admin: Headers
    callers: dict[str, Caller]
    team_id: str  # the team lead's (and developer's) team
    other_team_id: str
    other_developer_id: str
    # Where fresh tasks go: "home" (the team lead's team, assigned to the developer) or
    # "foreign" (another team, assigned to another developer).
    scope: str = "home"
    counter: list[int] = field(default_factory=lambda: [0])

    def unique(self, prefix: str) -> str:
        self.counter[0] += 1
        return f"{prefix}-{self.counter[0]}-{uuid.uuid4().hex[:6]}"

    @property
    def developer_id(self) -> str:
        developer_id = self.callers["developer"].id
        assert developer_id is not None
        return developer_id


async def build_world(client: httpx.AsyncClient, admin_headers: Headers) -> World:
    team_id = await make_team(client, admin_headers, "matrix-home")
    other_team_id = await make_team(client, admin_headers, "matrix-away")
    me = (await client.get("/auth/me", headers=admin_headers)).json()
    callers = {
        "admin": Caller("admin", admin_headers, "admin", ADMIN_PASSWORD, me["id"]),
        ANONYMOUS: Caller(ANONYMOUS, {}),
    }
    for role in ROLES[1:]:
        actor = await make_user(
            client, admin_headers, role, username=f"matrix-{role}", team_id=team_id
        )
        callers[role] = Caller(role, actor.headers, actor.username, USER_PASSWORD, actor.id)
    other_dev = await make_user(
        client, admin_headers, "developer", username="matrix-other-dev", team_id=other_team_id
    )
    return World(client, admin_headers, callers, team_id, other_team_id, other_dev.id)


async def fresh_task(w: World, status: str) -> str:
    """A new task in `status`, placed according to `w.scope`."""
    home = w.scope == "home"
    body = {
        "title": w.unique("matrix-task"),
        "team_id": w.team_id if home else w.other_team_id,
    }
    if status != "CREATED":
        body["assigned_to"] = w.developer_id if home else w.other_developer_id
    response = await w.client.post("/tasks", json=body, headers=w.admin)
    assert response.status_code == 201, response.text
    task_id = str(response.json()["id"])
    steps = {
        "CREATED": [],
        "ASSIGNED": [],
        "IN_PROGRESS": ["start"],
        "BLOCKED": ["start", "block"],
        "COMPLETED": ["start", "complete"],
    }[status]
    for step in steps:
        response = await w.client.patch(f"/tasks/{task_id}/{step}", headers=w.admin)
        assert response.status_code == 200, response.text
    return task_id


async def fresh_user(w: World) -> str:
    name = w.unique("victim")
    response = await w.client.post(
        "/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": USER_PASSWORD},
        headers=w.admin,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def fresh_session(w: World, who: Caller) -> dict[str, Any]:
    """A second login of the caller (for logout/revoke/refresh without losing `headers`)."""
    caller = who if who.username else w.callers["developer"]
    response = await w.client.post(
        "/auth/login", json={"username": caller.username, "password": caller.password}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def credentials(w: World, who: Caller) -> tuple[str, str]:
    caller = who if who.username else w.callers["developer"]
    assert caller.username is not None
    assert caller.password is not None
    return caller.username, caller.password


# --- setups: what each call sends ---------------------------------------------------------

Request = dict[str, Any]
Setup = Callable[[World, Caller], Awaitable[Request]]


async def no_setup(w: World, who: Caller) -> Request:
    return {}


def task_in(status: str, json: Any = None) -> Setup:
    async def setup(w: World, who: Caller) -> Request:
        request: Request = {"path": {"task_id": await fresh_task(w, status)}}
        if json is not None:
            request["json"] = json(w) if callable(json) else json
        return request

    return setup


async def existing_task(w: World, who: Caller) -> Request:
    return await task_in("ASSIGNED")(w, who)


def _writer(w: World, who: Caller) -> Headers:
    """The caller when it may add files (so it owns what the setup makes), else the admin."""
    return who.headers if who.role in HOLDERS["comment"] else w.admin


async def new_attachment(w: World, who: Caller) -> Request:
    request = await existing_task(w, who)
    return {**request, "files": {"file": ("matrix.txt", b"hello", "text/plain")}}


async def some_attachment(w: World, who: Caller) -> Request:
    task_id = await fresh_task(w, "ASSIGNED")
    response = await w.client.post(
        f"/tasks/{task_id}/attachments",
        files={"file": ("matrix.txt", b"hello", "text/plain")},
        headers=_writer(w, who),
    )
    assert response.status_code == 201, response.text
    return {"path": {"attachment_id": response.json()["id"]}}


HELLO_SHA256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


async def new_upload(w: World, who: Caller) -> Request:
    task_id = await fresh_task(w, "ASSIGNED")
    body = {
        "task_id": task_id,
        "filename": "matrix.log",
        "size": 5,
        "sha256": HELLO_SHA256,
        "chunk_size": 5 * 1024 * 1024,
    }
    return {"json": body}


async def some_upload(w: World, who: Caller, *, with_chunk: bool = False) -> Request:
    response = await w.client.post("/uploads", headers=_writer(w, who), **await new_upload(w, who))
    assert response.status_code == 201, response.text
    upload_id = response.json()["upload_id"]
    if with_chunk:
        sent = await w.client.put(
            f"/uploads/{upload_id}/chunks/0", content=b"hello", headers=_writer(w, who)
        )
        assert sent.status_code == 200, sent.text
    return {"path": {"upload_id": upload_id}}


async def upload_chunk(w: World, who: Caller) -> Request:
    request = await some_upload(w, who)
    return {"path": {**request["path"], "number": 0}, "content": b"hello"}


async def full_upload(w: World, who: Caller) -> Request:
    return await some_upload(w, who, with_chunk=True)


def _calendar_body(name: str) -> dict[str, Any]:
    return {"name": name, "timezone": "UTC", "hours": {"mon": ["09:00-17:00"]}}


async def new_calendar(w: World, who: Caller) -> Request:
    return {"json": _calendar_body(w.unique("cal"))}


async def some_calendar(w: World, who: Caller, json: Any = None) -> Request:
    created = await w.client.post(
        "/calendars", json=_calendar_body(w.unique("cal")), headers=w.admin
    )
    assert created.status_code == 201, created.text
    request: Request = {"path": {"calendar_id": created.json()["id"]}}
    if json is not None:
        request["json"] = json
    return request


async def edit_calendar(w: World, who: Caller) -> Request:
    return await some_calendar(w, who, {"holidays": ["2026-12-25"]})


def _policy_body(name: str) -> dict[str, Any]:
    # Inactive: any number of them may share a selector.
    return {"name": name, "start_minutes": 5, "resolve_minutes": 10, "is_active": False}


async def new_policy(w: World, who: Caller) -> Request:
    return {"json": _policy_body(w.unique("policy"))}


async def some_policy(w: World, who: Caller, json: Any = None) -> Request:
    created = await w.client.post(
        "/sla-policies", json=_policy_body(w.unique("p")), headers=w.admin
    )
    assert created.status_code == 201, created.text
    request: Request = {"path": {"policy_id": created.json()["id"]}}
    if json is not None:
        request["json"] = json
    return request


async def edit_policy(w: World, who: Caller) -> Request:
    return await some_policy(w, who, {"start_minutes": 7})


async def policy_file(w: World, who: Caller) -> Request:
    document = f"opsflow:\n  policies:\n    {w.unique('file')}:\n      is_active: false\n"
    document += "      response_minutes: 5\n      resolution_minutes: 10\n"
    return {"params": {"mode": "merge"}, "content": document}


async def simulation(w: World, who: Caller) -> Request:
    return {"json": {"priority": "HIGH"}}


def _escalation_policy_body(name: str) -> dict[str, Any]:
    # Inactive: it must not escalate the other tests' tasks.
    return {"name": name, "steps": [{"targets": ["assignee"]}], "is_active": False}


async def new_escalation_policy(w: World, who: Caller) -> Request:
    return {"json": _escalation_policy_body(w.unique("esc"))}


async def some_escalation_policy(w: World, who: Caller, json: Any = None) -> Request:
    created = await w.client.post(
        "/escalation-policies", json=_escalation_policy_body(w.unique("esc")), headers=w.admin
    )
    assert created.status_code == 201, created.text
    request: Request = {"path": {"policy_id": created.json()["id"]}}
    if json is not None:
        request["json"] = json
    return request


async def edit_escalation_policy(w: World, who: Caller) -> Request:
    return await some_escalation_policy(w, who, {"repeat": 1})


async def new_webhook(w: World, who: Caller) -> Request:
    # Inactive: nothing is queued for it.
    return {"json": {"name": w.unique("hook"), "url": "https://example.com/h", "is_active": False}}


async def some_webhook(w: World, who: Caller, json: Any = None) -> Request:
    created = await w.client.post(
        "/webhooks", json=(await new_webhook(w, who))["json"], headers=w.admin
    )
    assert created.status_code == 201, created.text
    request: Request = {"path": {"webhook_id": created.json()["id"]}}
    if json is not None:
        request["json"] = json
    return request


async def edit_webhook(w: World, who: Caller) -> Request:
    return await some_webhook(w, who, {"event_types": ["sla.breach"]})


async def a_template(w: World, who: Caller) -> Request:
    return {"path": {"name": "task.assigned.sms.body"}}


async def template_source(w: World, who: Caller) -> Request:
    return {
        "path": {"name": "task.assigned.sms.body"},
        "json": {"source": "Assigned: {{ task.title }}"},
    }


def _window_body(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "starts_at": "2030-01-01T00:00:00Z",
        "ends_at": "2030-01-01T01:00:00Z",
    }


async def new_window(w: World, who: Caller) -> Request:
    return {"json": _window_body(w.unique("window"))}


async def some_window(w: World, who: Caller, json: Any = None) -> Request:
    created = await w.client.post(
        "/maintenance-windows", json=_window_body(w.unique("window")), headers=w.admin
    )
    assert created.status_code == 201, created.text
    request: Request = {"path": {"window_id": created.json()["id"]}}
    if json is not None:
        request["json"] = json
    return request


async def edit_window(w: World, who: Caller) -> Request:
    return await some_window(w, who, {"on_end": "drop"})


async def unknown_notification(w: World, who: Caller) -> Request:
    # Holders are let through to the lookup, which finds nothing: 404, not 403.
    return {"path": {"notification_id": str(uuid.uuid4())}}


async def paused_task(w: World, who: Caller) -> Request:
    request = await task_in("ASSIGNED")(w, who)
    task_id = request["path"]["task_id"]
    paused = await w.client.patch(f"/tasks/{task_id}/sla/pause", headers=w.admin)
    assert paused.status_code == 200, paused.text
    return request


async def register(w: World, who: Caller) -> Request:
    name = w.unique("newcomer")
    return {
        "json": {
            "email": f"{name}@example.com",
            "username": name,
            "password": USER_PASSWORD,
            "role": "viewer",
        }
    }


async def login_body(w: World, who: Caller) -> Request:
    username, password = credentials(w, who)
    return {"json": {"username": username, "password": password}}


async def token_form(w: World, who: Caller) -> Request:
    username, password = credentials(w, who)
    return {"data": {"grant_type": "password", "username": username, "password": password}}


async def refresh_body(w: World, who: Caller) -> Request:
    session = await fresh_session(w, who)
    return {"json": {"refresh_token": session["refresh_token"]}}


async def logout_session(w: World, who: Caller) -> Request:
    if not who.headers:
        return {}
    session = await fresh_session(w, who)
    return {"headers": {"Authorization": f"Bearer {session['access_token']}"}}


async def revoke_own(w: World, who: Caller) -> Request:
    session = await fresh_session(w, who)
    return {"json": {"token": session["refresh_token"]}}


async def new_client(w: World, who: Caller) -> Request:
    return {"json": {"name": w.unique("client"), "scopes": ["tasks:read"]}}


async def existing_client(w: World, who: Caller) -> Request:
    response = await w.client.post(
        "/api-clients", json={"name": w.unique("client"), "scopes": ["tasks:read"]}, headers=w.admin
    )
    assert response.status_code == 201, response.text
    return {"path": {"api_client_id": response.json()["id"]}}


async def some_user(w: World, who: Caller) -> Request:
    return {"path": {"user_id": w.developer_id}}


async def edit_other_user(w: World, who: Caller) -> Request:
    return {"path": {"user_id": await fresh_user(w)}, "json": {"full_name": "Renamed"}}


async def deactivate_other_user(w: World, who: Caller) -> Request:
    return {"path": {"user_id": await fresh_user(w)}}


async def own_name(w: World, who: Caller) -> Request:
    return {"json": {"full_name": f"Own {who.role}"}}


async def preferences(w: World, who: Caller) -> Request:
    return {"json": {"preferences": [{"channel": "EMAIL", "enabled": False}]}}


async def home_team(w: World, who: Caller) -> Request:
    return {"path": {"team_id": w.team_id}}


async def new_team(w: World, who: Caller) -> Request:
    return {"json": {"name": w.unique("team")}}


async def spare_team(w: World, who: Caller, json: Any = None) -> Request:
    team_id = await make_team(w.client, w.admin, w.unique("spare"))
    request: Request = {"path": {"team_id": team_id}}
    if json is not None:
        request["json"] = json
    return request


async def rename_team(w: World, who: Caller) -> Request:
    return await spare_team(w, who, {"description": "renamed"})


async def new_task(w: World, who: Caller) -> Request:
    return {"json": {"title": w.unique("created"), "task_type": "TASK"}}


async def new_incident(w: World, who: Caller) -> Request:
    return {"json": {"title": w.unique("declared"), "task_type": "INCIDENT"}}


async def ticket_batch(w: World, who: Caller) -> Request:
    return {"json": {"tickets": [{"external_id": w.unique("T"), "title": "From elsewhere"}]}}


def new_monitor_body(w: World) -> dict[str, Any]:
    return {"name": w.unique("job"), "period_seconds": 300, "grace_seconds": 60}


async def new_monitor(w: World, who: Caller) -> Request:
    return {"json": new_monitor_body(w)}


async def _monitor(w: World) -> dict[str, Any]:
    response = await w.client.post("/heartbeat-monitors", json=new_monitor_body(w), headers=w.admin)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def some_monitor(w: World, who: Caller) -> Request:
    return {"path": {"monitor_id": (await _monitor(w))["id"]}}


async def edit_monitor(w: World, who: Caller) -> Request:
    return {"path": {"monitor_id": (await _monitor(w))["id"]}, "json": {"grace_seconds": 120}}


async def monitor_key(w: World, who: Caller) -> Request:
    return {"path": {"key": (await _monitor(w))["ping_key"]}}


async def monitor_key_start(w: World, who: Caller) -> Request:
    return {"path": {"key": (await _monitor(w))["ping_key"], "signal": "start"}}


async def ingested_ticket(w: World, who: Caller) -> Request:
    external_id = w.unique("T")
    response = await w.client.post(
        "/tickets",
        json={"tickets": [{"external_id": external_id, "title": "Ingested"}]},
        headers=w.admin,
    )
    assert response.json()["results"][0]["outcome"] == "created", response.text
    return {"path": {"external_id": external_id}}


async def _integration(w: World, kind: str = "generic") -> dict[str, Any]:
    response = await w.client.post(
        "/integrations", json={"name": w.unique("integration"), "type": kind}, headers=w.admin
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def new_integration(w: World, who: Caller) -> Request:
    return {"json": {"name": w.unique("integration"), "type": "generic"}}


async def some_integration(w: World, who: Caller) -> Request:
    return {"path": {"integration_id": (await _integration(w))["id"]}}


async def edit_integration(w: World, who: Caller) -> Request:
    return {**(await some_integration(w, who)), "json": {"auto_resolve": False}}


_ALERTMANAGER_BODY = {
    "version": "4",
    "groupKey": "{}:{}",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "Matrix"},
            "annotations": {},
            "startsAt": "2026-01-27T10:00:00Z",
            "fingerprint": "0123456789abcdef",
        }
    ],
}


def inbound(kind: str) -> Setup:
    """The inbound alert endpoints authenticate by the key in their URL, not by a token."""

    async def setup(w: World, who: Caller) -> Request:
        key = (await _integration(w, kind))["key"]
        body: dict[str, Any] = {
            "generic": {
                "event_action": "trigger",
                "payload": {"summary": "Matrix", "severity": "info", "source": "matrix"},
            },
            "elastic": {"watch_id": "matrix", "metadata": {"name": "Matrix"}},
        }.get(kind, _ALERTMANAGER_BODY)
        return {"path": {"key": key}, "json": body}

    return setup


async def new_comment(w: World, who: Caller) -> Request:
    request = await existing_task(w, who)
    request["json"] = {"body": f"A note from {who.role}", "internal": True}
    return request


async def own_comment(w: World, who: Caller, json: Any = None) -> Request:
    """A comment the caller wrote (the admin's, for callers who may not comment)."""
    task_id = await fresh_task(w, "ASSIGNED")
    author = who.headers if who.role in HOLDERS["comment"] else w.admin
    created = await w.client.post(
        f"/tasks/{task_id}/comments", json={"body": "first draft"}, headers=author
    )
    assert created.status_code == 201, created.text
    request: Request = {"path": {"comment_id": created.json()["id"]}}
    if json is not None:
        request["json"] = json
    return request


async def edit_own_comment(w: World, who: Caller) -> Request:
    return await own_comment(w, who, {"body": "second draft"})


def _assign_body(w: World) -> dict[str, Any]:
    return {"assigned_to": w.callers["support"].id}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as declared on the route, with its {parameters}
    capability: str
    ok: int
    setup: Setup = no_setup
    variant: str = ""

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}" + (f" [{self.variant}]" if self.variant else "")


V1 = "/api/v1"
ENDPOINTS: tuple[Endpoint, ...] = (
    # auth
    Endpoint("POST", f"{V1}/auth/register", "administer", 201, register),
    Endpoint("POST", f"{V1}/auth/login", PUBLIC, 200, login_body),
    Endpoint("POST", f"{V1}/auth/token", PUBLIC, 200, token_form),
    Endpoint("POST", f"{V1}/auth/refresh", PUBLIC, 200, refresh_body),
    Endpoint("POST", f"{V1}/auth/logout", "own_account", 204, logout_session),
    Endpoint("POST", f"{V1}/auth/revoke", "own_account", 204, revoke_own),
    Endpoint("GET", f"{V1}/auth/me", "own_account", 200),
    Endpoint("GET", f"{V1}/api-clients", "administer", 200),
    Endpoint("POST", f"{V1}/api-clients", "administer", 201, new_client),
    Endpoint("DELETE", f"{V1}/api-clients/{{api_client_id}}", "administer", 204, existing_client),
    # users
    Endpoint("GET", f"{V1}/users", "directory", 200),
    Endpoint("GET", f"{V1}/users/{{user_id}}", "directory", 200, some_user),
    Endpoint("PATCH", f"{V1}/users/{{user_id}}", "administer", 200, edit_other_user),
    Endpoint(
        "POST", f"{V1}/users/{{user_id}}/deactivate", "administer", 200, deactivate_other_user
    ),
    Endpoint("GET", f"{V1}/users/me", "own_account", 200),
    Endpoint("PATCH", f"{V1}/users/me", "own_account", 200, own_name),
    Endpoint("GET", f"{V1}/users/me/notification-preferences", "own_account", 200),
    Endpoint("PUT", f"{V1}/users/me/notification-preferences", "own_account", 200, preferences),
    # teams
    Endpoint("GET", f"{V1}/teams", "directory", 200),
    Endpoint("POST", f"{V1}/teams", "manage_teams", 201, new_team),
    Endpoint("GET", f"{V1}/teams/{{team_id}}", "directory", 200, home_team),
    Endpoint("PATCH", f"{V1}/teams/{{team_id}}", "manage_teams", 200, rename_team),
    Endpoint("DELETE", f"{V1}/teams/{{team_id}}", "manage_teams", 204, spare_team),
    Endpoint("GET", f"{V1}/teams/{{team_id}}/members", "directory", 200, home_team),
    # tasks
    Endpoint("POST", f"{V1}/tasks", "create_task", 201, new_task, "TASK"),
    Endpoint("POST", f"{V1}/tasks", "declare_incident", 201, new_incident, "INCIDENT"),
    Endpoint("GET", f"{V1}/tasks", "read_tasks", 200),
    Endpoint("GET", f"{V1}/tasks/{{task_id}}", "read_tasks", 200, existing_task),
    Endpoint(
        "PATCH",
        f"{V1}/tasks/{{task_id}}",
        "update_assign",
        200,
        task_in("ASSIGNED", {"priority": "HIGH"}),
    ),
    Endpoint(
        "PATCH",
        f"{V1}/tasks/{{task_id}}/assign",
        "update_assign",
        200,
        task_in("ASSIGNED", _assign_body),
    ),
    Endpoint("PATCH", f"{V1}/tasks/{{task_id}}/acknowledge", "progress", 200, task_in("ASSIGNED")),
    Endpoint("PATCH", f"{V1}/tasks/{{task_id}}/start", "progress", 200, task_in("ASSIGNED")),
    Endpoint(
        "PATCH",
        f"{V1}/tasks/{{task_id}}/block",
        "progress",
        200,
        task_in("IN_PROGRESS", {"reason": "vendor"}),
    ),
    Endpoint("PATCH", f"{V1}/tasks/{{task_id}}/unblock", "progress", 200, task_in("BLOCKED")),
    Endpoint(
        "PATCH",
        f"{V1}/tasks/{{task_id}}/complete",
        "progress",
        200,
        task_in("IN_PROGRESS", {"resolution_notes": "done"}),
    ),
    Endpoint("PATCH", f"{V1}/tasks/{{task_id}}/reopen", "progress", 200, task_in("COMPLETED")),
    Endpoint(
        "PATCH",
        f"{V1}/tasks/{{task_id}}/snooze",
        "snooze",
        200,
        task_in("ASSIGNED", {"minutes": 30}),
    ),
    Endpoint("DELETE", f"{V1}/tasks/{{task_id}}", "cancel", 204, task_in("ASSIGNED")),
    # comments, the timeline, the inbox
    Endpoint("GET", f"{V1}/tasks/{{task_id}}/comments", "read_tasks", 200, existing_task),
    Endpoint("POST", f"{V1}/tasks/{{task_id}}/comments", "comment", 201, new_comment),
    Endpoint("PATCH", f"{V1}/comments/{{comment_id}}", "comment", 200, edit_own_comment),
    Endpoint("DELETE", f"{V1}/comments/{{comment_id}}", "comment", 204, own_comment),
    Endpoint("GET", f"{V1}/tasks/{{task_id}}/timeline", "read_tasks", 200, existing_task),
    Endpoint("GET", f"{V1}/inbox", "read_tasks", 200),
    Endpoint("POST", f"{V1}/tasks/{{task_id}}/read", "read_tasks", 200, existing_task),
    Endpoint("POST", f"{V1}/tasks/{{task_id}}/watch", "read_tasks", 200, existing_task),
    Endpoint("DELETE", f"{V1}/tasks/{{task_id}}/watch", "read_tasks", 204, existing_task),
    # SLA
    Endpoint(
        "PATCH",
        f"{V1}/tasks/{{task_id}}/sla/pause",
        "snooze",
        200,
        task_in("ASSIGNED", {"reason": "waiting on customer"}),
    ),
    Endpoint("PATCH", f"{V1}/tasks/{{task_id}}/sla/resume", "snooze", 200, paused_task),
    Endpoint("GET", f"{V1}/tasks/{{task_id}}/sla", "read_tasks", 200, existing_task),
    Endpoint("GET", f"{V1}/tasks/{{task_id}}/sla-events", "read_tasks", 200, existing_task),
    Endpoint("GET", f"{V1}/sla-events", "read_tasks", 200),
    Endpoint("POST", f"{V1}/tickets", "ingest_tickets", 200, ticket_batch),
    Endpoint("GET", f"{V1}/tickets/{{external_id}}", "read_tasks", 200, ingested_ticket),
    Endpoint("GET", f"{V1}/tickets/{{external_id}}/sla", "read_tasks", 200, ingested_ticket),
    # alert integrations
    Endpoint("GET", f"{V1}/integrations", "administer", 200),
    Endpoint("POST", f"{V1}/integrations", "administer", 201, new_integration),
    Endpoint("GET", f"{V1}/integrations/{{integration_id}}", "administer", 200, some_integration),
    Endpoint("PATCH", f"{V1}/integrations/{{integration_id}}", "administer", 200, edit_integration),
    Endpoint(
        "DELETE", f"{V1}/integrations/{{integration_id}}", "administer", 204, some_integration
    ),
    Endpoint(
        "POST",
        f"{V1}/integrations/{{integration_id}}/rotate-key",
        "administer",
        200,
        some_integration,
    ),
    Endpoint(
        "GET", f"{V1}/integrations/{{integration_id}}/events", "administer", 200, some_integration
    ),
    Endpoint("POST", f"{V1}/integrations/{{key}}/events", PUBLIC, 202, inbound("generic")),
    Endpoint(
        "POST", f"{V1}/integrations/{{key}}/alertmanager", PUBLIC, 202, inbound("alertmanager")
    ),
    Endpoint("POST", f"{V1}/integrations/{{key}}/grafana", PUBLIC, 202, inbound("grafana")),
    Endpoint("POST", f"{V1}/integrations/{{key}}/elastic", PUBLIC, 202, inbound("elastic")),
    Endpoint("GET", f"{V1}/heartbeat-monitors", "read_tasks", 200),
    Endpoint("POST", f"{V1}/heartbeat-monitors", "monitors_write", 201, new_monitor),
    Endpoint("GET", f"{V1}/heartbeat-monitors/{{monitor_id}}", "read_tasks", 200, some_monitor),
    Endpoint(
        "PATCH", f"{V1}/heartbeat-monitors/{{monitor_id}}", "monitors_write", 200, edit_monitor
    ),
    Endpoint(
        "DELETE", f"{V1}/heartbeat-monitors/{{monitor_id}}", "monitors_write", 204, some_monitor
    ),
    Endpoint(
        "POST",
        f"{V1}/heartbeat-monitors/{{monitor_id}}/rotate-key",
        "monitors_write",
        200,
        some_monitor,
    ),
    Endpoint(
        "GET", f"{V1}/heartbeat-monitors/{{monitor_id}}/pings", "read_tasks", 200, some_monitor
    ),
    # Signals are authenticated by the monitor's key alone (HEAD: tests/api/test_heartbeats.py).
    Endpoint("GET", f"{V1}/heartbeats/{{key}}", PUBLIC, 200, monitor_key),
    Endpoint("POST", f"{V1}/heartbeats/{{key}}", PUBLIC, 200, monitor_key),
    Endpoint("GET", f"{V1}/heartbeats/{{key}}/{{signal}}", PUBLIC, 200, monitor_key_start),
    Endpoint("POST", f"{V1}/heartbeats/{{key}}/{{signal}}", PUBLIC, 200, monitor_key_start),
    Endpoint("GET", f"{V1}/sla-policies", "sla_read", 200),
    Endpoint("POST", f"{V1}/sla-policies", "sla_write", 201, new_policy),
    Endpoint("GET", f"{V1}/sla-policies/{{policy_id}}", "sla_read", 200, some_policy),
    Endpoint("PATCH", f"{V1}/sla-policies/{{policy_id}}", "sla_write", 200, edit_policy),
    Endpoint("DELETE", f"{V1}/sla-policies/{{policy_id}}", "sla_write", 204, some_policy),
    Endpoint("GET", f"{V1}/sla-policies/export", "sla_read", 200),
    Endpoint("POST", f"{V1}/sla-policies/import", "sla_write", 200, policy_file),
    Endpoint("POST", f"{V1}/sla-policies/simulate", "sla_read", 200, simulation),
    Endpoint("GET", f"{V1}/escalation-policies", "sla_read", 200),
    Endpoint("POST", f"{V1}/escalation-policies", "sla_write", 201, new_escalation_policy),
    Endpoint(
        "GET", f"{V1}/escalation-policies/{{policy_id}}", "sla_read", 200, some_escalation_policy
    ),
    Endpoint(
        "PATCH",
        f"{V1}/escalation-policies/{{policy_id}}",
        "sla_write",
        200,
        edit_escalation_policy,
    ),
    Endpoint(
        "DELETE",
        f"{V1}/escalation-policies/{{policy_id}}",
        "sla_write",
        204,
        some_escalation_policy,
    ),
    Endpoint("GET", f"{V1}/escalation-events", "read_tasks", 200),
    Endpoint("GET", f"{V1}/tasks/{{task_id}}/escalations", "read_tasks", 200, existing_task),
    # attachments and resumable uploads
    Endpoint("POST", f"{V1}/tasks/{{task_id}}/attachments", "comment", 201, new_attachment),
    Endpoint("GET", f"{V1}/tasks/{{task_id}}/attachments", "read_tasks", 200, existing_task),
    Endpoint("GET", f"{V1}/attachments/{{attachment_id}}", "read_tasks", 200, some_attachment),
    Endpoint("DELETE", f"{V1}/attachments/{{attachment_id}}", "comment", 204, some_attachment),
    Endpoint("POST", f"{V1}/uploads", "comment", 201, new_upload),
    Endpoint("GET", f"{V1}/uploads/{{upload_id}}", "comment", 200, some_upload),
    Endpoint("PUT", f"{V1}/uploads/{{upload_id}}/chunks/{{number}}", "comment", 200, upload_chunk),
    Endpoint("POST", f"{V1}/uploads/{{upload_id}}/complete", "comment", 200, full_upload),
    Endpoint("POST", f"{V1}/tasks/{{task_id}}/escalate", "update_assign", 200, task_in("ASSIGNED")),
    Endpoint("GET", f"{V1}/notifications", "notifications_read", 200),
    Endpoint("GET", f"{V1}/maintenance-windows", "sla_read", 200),
    Endpoint("POST", f"{V1}/maintenance-windows", "sla_write", 201, new_window),
    Endpoint("GET", f"{V1}/maintenance-windows/{{window_id}}", "sla_read", 200, some_window),
    Endpoint("PATCH", f"{V1}/maintenance-windows/{{window_id}}", "sla_write", 200, edit_window),
    Endpoint("DELETE", f"{V1}/maintenance-windows/{{window_id}}", "sla_write", 204, some_window),
    Endpoint("GET", f"{V1}/notification-templates", "administer", 200),
    Endpoint("GET", f"{V1}/notification-templates/{{name}}", "administer", 200, a_template),
    Endpoint("PUT", f"{V1}/notification-templates/{{name}}", "administer", 200, template_source),
    Endpoint("GET", f"{V1}/webhooks", "administer", 200),
    Endpoint("POST", f"{V1}/webhooks", "administer", 201, new_webhook),
    Endpoint("GET", f"{V1}/webhooks/{{webhook_id}}", "administer", 200, some_webhook),
    Endpoint("PATCH", f"{V1}/webhooks/{{webhook_id}}", "administer", 200, edit_webhook),
    Endpoint("DELETE", f"{V1}/webhooks/{{webhook_id}}", "administer", 204, some_webhook),
    Endpoint(
        "GET",
        f"{V1}/notifications/{{notification_id}}",
        "notifications_read",
        404,
        unknown_notification,
    ),
    Endpoint(
        "POST",
        f"{V1}/notifications/{{notification_id}}/retry",
        "notifications_retry",
        404,
        unknown_notification,
    ),
    Endpoint("GET", f"{V1}/calendars", "sla_read", 200),
    Endpoint("POST", f"{V1}/calendars", "sla_write", 201, new_calendar),
    Endpoint("GET", f"{V1}/calendars/{{calendar_id}}", "sla_read", 200, some_calendar),
    Endpoint("PATCH", f"{V1}/calendars/{{calendar_id}}", "sla_write", 200, edit_calendar),
    Endpoint("DELETE", f"{V1}/calendars/{{calendar_id}}", "sla_write", 204, some_calendar),
    # audit
    Endpoint("GET", f"{V1}/audit-logs", "audit", 200),
    Endpoint("GET", f"{V1}/audit-logs/export", "audit", 200),
    Endpoint("GET", f"{V1}/audit-logs/verify", "audit", 200),
    Endpoint("GET", f"{V1}/reports/sla-summary", "reports", 200),
    Endpoint("GET", f"{V1}/reports/team-performance", "reports", 200),
    Endpoint("GET", f"{V1}/reports/incidents", "reports", 200),
    Endpoint("GET", f"{V1}/reports/dashboard", "reports", 200),
    Endpoint("GET", f"{V1}/reports/sla-compliance", "reports", 200),
    # system and docs
    Endpoint("GET", f"{V1}/health", PUBLIC, 200),
    Endpoint("GET", f"{V1}/ready", PUBLIC, 200),
    Endpoint("GET", "/health", PUBLIC, 200),
    Endpoint("GET", "/ready", PUBLIC, 200),
    Endpoint("GET", f"{V1}/metrics", PUBLIC, 200),
    Endpoint("GET", "/metrics", PUBLIC, 200),
    Endpoint("GET", "/", PUBLIC, 200),
    # The dashboard's static files (public; probed by tests/api/test_web.py).
    Endpoint("MOUNT", "/static", PUBLIC, 200),
    Endpoint("GET", f"{V1}/openapi.json", PUBLIC, 200),
    Endpoint("GET", f"{V1}/docs", PUBLIC, 200),
    Endpoint("GET", f"{V1}/redoc", PUBLIC, 200),
    # The event stream: 101 stands for an accepted, authenticated socket (probed apart).
    Endpoint("WS", f"{V1}/ws", "read_tasks", 101),
    Endpoint("WS", f"{V1}/ws/alerts", "read_tasks", 101),
)


def expected_status(endpoint: Endpoint, role: str) -> int:
    if endpoint.capability == PUBLIC:
        return endpoint.ok
    if role == ANONYMOUS:
        return 401
    return endpoint.ok if role in HOLDERS[endpoint.capability] else 403


async def call(w: World, endpoint: Endpoint, who: Caller) -> httpx.Response:
    if endpoint.method not in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
        raise AssertionError(f"no way to probe {endpoint.label}: extend call()")
    request = await endpoint.setup(w, who)
    url = "http://testserver" + endpoint.path.format(**request.pop("path", {}))
    headers = request.pop("headers", who.headers)
    return await w.client.request(endpoint.method, url, headers=headers, **request)


def verdict(endpoint: Endpoint, role: str, response: httpx.Response) -> str | None:
    """None when the answer is the expected one, else a line for the failure report."""
    want = expected_status(endpoint, role)
    got = response.status_code
    problem = None
    if got != want:
        problem = f"expected {want}, got {got}"
    elif want in (401, 403):
        error = response.json().get("error", {})
        code = "UNAUTHORIZED" if want == 401 else "FORBIDDEN"
        if error.get("code") != code:
            problem = f"expected code {code}, got {error.get('code')}"
        elif want == 403 and not error.get("required_role"):
            problem = "403 without required_role"
        elif want == 401 and response.headers.get("WWW-Authenticate") != "Bearer":
            problem = "401 without WWW-Authenticate: Bearer"
    if problem is None:
        return None
    return f"{role:>10} {endpoint.label}: {problem}: {response.text[:200]}"


# --- tests --------------------------------------------------------------------------------


def test_matrix_is_a_faithful_copy_of_spec_6() -> None:
    """A few spot checks of the hand-written table, so a typo in it cannot hide."""
    assert HOLDERS["read_tasks"] == EVERYONE
    assert HOLDERS["cancel"] == {"admin"}
    assert HOLDERS["declare_incident"] - HOLDERS["create_task"] == {"developer"}
    assert "auditor" in HOLDERS["audit"]
    assert "manager" not in HOLDERS["audit"]
    assert "support" not in HOLDERS["progress"]
    assert {"viewer", "auditor"} <= HOLDERS["reports"]
    assert "developer" not in HOLDERS["reports"]
    for capability in {e.capability for e in ENDPOINTS} - {PUBLIC}:
        assert capability in HOLDERS, capability


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, however FastAPI nests included routers
    (recent FastAPI versions keep `include_router` results as lazy groups in `app.routes`)."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    entries: list[tuple[Any, str, set[str]]] = []
    if flatten is None:
        entries = [
            (r, getattr(r, "path", ""), set(getattr(r, "methods", None) or ())) for r in app.routes
        ]
    else:
        entries = [
            (c.original_route, str(c.path), set(c.methods or ())) for c in flatten(app.routes)
        ]
    routes: set[tuple[str, str]] = set()
    for route, path, methods in entries:
        if isinstance(route, WebSocketRoute):
            routes.add(("WS", path))
        elif isinstance(route, Mount):
            routes.add(("MOUNT", path))
        else:
            assert methods, f"route without methods: {route!r}"
            routes.update((method, path) for method in methods - {"HEAD", "OPTIONS"})
    return routes


async def test_matrix_lists_every_route(app: FastAPI) -> None:
    routes = app_routes(app)
    assert len(routes) >= 40  # the walk really saw the included routers
    listed = {(e.method, e.path) for e in ENDPOINTS}
    missing = sorted(routes - listed)
    stale = sorted(listed - routes)
    assert not missing, f"routes without a role-matrix entry: {missing}"
    assert not stale, f"role-matrix entries for routes that do not exist: {stale}"
    labels = [e.label for e in ENDPOINTS]
    assert len(labels) == len(set(labels))


@pytest.mark.parametrize("role", [*ROLES, ANONYMOUS])
async def test_role_matrix(client: httpx.AsyncClient, admin_headers: Headers, role: str) -> None:
    w = await build_world(client, admin_headers)
    who = w.callers[role]
    failures = []
    for endpoint in ENDPOINTS:
        if endpoint.method in {"WS", "MOUNT"}:
            continue  # test_websocket_routes_follow_the_matrix; tests/api/test_web.py
        response = await call(w, endpoint, who)
        if (problem := verdict(endpoint, role, response)) is not None:
            failures.append(problem)
        # The caller's own session must survive every probe (logout/revoke use a spare one).
    me = await client.get("/auth/me", headers=who.headers)
    assert me.status_code == (401 if role == ANONYMOUS else 200), me.text
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", ["admin", "manager", "team_lead", "developer"])
async def test_row_scoped_capabilities_outside_the_callers_reach(
    client: httpx.AsyncClient, admin_headers: Headers, role: str
) -> None:
    """Tasks of another team, assigned to another developer: the team lead's "own team" and
    the developer's "when assignee" no longer apply; admins and managers are unaffected."""
    w = await build_world(client, admin_headers)
    w.scope = "foreign"
    who = w.callers[role]
    scoped = [e for e in ENDPOINTS if e.capability in ROW_SCOPED]
    assert len(scoped) == 12
    failures = []
    for endpoint in scoped:
        response = await call(w, endpoint, who)
        want = endpoint.ok if role in {"admin", "manager"} else 403
        if response.status_code != want:
            failures.append(f"{endpoint.label}: expected {want}, got {response.text[:200]}")
        elif want == 403 and response.json()["error"]["code"] != "FORBIDDEN":
            failures.append(f"{endpoint.label}: {response.text[:200]}")
    # Reading stays open to every role whatever the row.
    task_id = await fresh_task(w, "ASSIGNED")
    assert (await client.get(f"/tasks/{task_id}", headers=who.headers)).status_code == 200
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", ROLES)
async def test_own_account_versus_other_accounts(
    client: httpx.AsyncClient, admin_headers: Headers, role: str
) -> None:
    """Every role may edit its own profile and revoke its own tokens; only admins may do
    either for somebody else."""
    w = await build_world(client, admin_headers)
    who = w.callers[role]
    own = await client.patch(
        f"/users/{who.id}", json={"full_name": f"Own {role}"}, headers=who.headers
    )
    assert own.status_code == 200, own.text
    assert own.json()["full_name"] == f"Own {role}"

    victim = w.callers["viewer"] if role != "viewer" else w.callers["support"]
    other = await client.patch(
        f"/users/{victim.id}", json={"full_name": "Renamed by someone"}, headers=who.headers
    )
    assert other.status_code == (200 if role == "admin" else 403), other.text

    if role != "admin":
        # Promoting oneself is an admin's decision.
        promote = await client.patch(
            f"/users/{who.id}", json={"role": "admin"}, headers=who.headers
        )
        assert promote.status_code == 403, promote.text

    victim_session = await fresh_session(w, victim)
    revoke = await client.post(
        "/auth/revoke", json={"token": victim_session["refresh_token"]}, headers=who.headers
    )
    assert revoke.status_code == (204 if role == "admin" else 403), revoke.text
    still = await client.get(
        "/auth/me", headers={"Authorization": f"Bearer {victim_session['access_token']}"}
    )
    assert still.status_code == (401 if role == "admin" else 200), still.text


def sees_email(role: str, who: Caller, user: dict[str, Any], my_team: str | None) -> bool:
    if role in EMAILS_OF_EVERYONE or user["id"] == who.id:
        return True
    return my_team is not None and user["team_id"] == my_team


@pytest.mark.parametrize("role", ROLES)
async def test_fields_follow_the_matrix(
    client: httpx.AsyncClient, admin_headers: Headers, role: str
) -> None:
    w = await build_world(client, admin_headers)
    who = w.callers[role]
    my_team = None if role == "admin" else w.team_id
    failures: list[str] = []

    def check(where: str, user: dict[str, Any]) -> None:
        visible = sees_email(role, who, user, my_team)
        if visible != (user["email"] is not None):
            failures.append(f"{where}: {user['username']} email={user['email']!r}")
        if user["email"] is not None:
            assert user["email"] == f"{user['username']}@example.com" or user["username"] == (
                "admin"
            )

    listed = await client.get("/users", params={"page_size": 100}, headers=who.headers)
    assert listed.status_code == 200, listed.text
    users = listed.json()["items"]
    assert {u["id"] for u in users} >= {w.other_developer_id, w.developer_id, who.id}
    for user in users:
        check("GET /users", user)
    for user_id in (w.other_developer_id, w.developer_id, who.id):
        one = await client.get(f"/users/{user_id}", headers=who.headers)
        assert one.status_code == 200, one.text
        check(f"GET /users/{user_id}", one.json())
    for team_id in (w.team_id, w.other_team_id):
        members = await client.get(f"/teams/{team_id}/members", headers=who.headers)
        assert members.status_code == 200, members.text
        for user in members.json():
            check(f"GET /teams/{team_id}/members", user)

    # Searching does not reveal the addresses the caller cannot read.
    found = await client.get(
        "/users", params={"q": "@example.com", "page_size": 100}, headers=who.headers
    )
    hits = found.json()["items"]
    assert hits
    for user in hits:
        if not sees_email(role, who, user, my_team):
            failures.append(f"GET /users?q=@example.com matched {user['username']}")

    task_id = await fresh_task(w, "ASSIGNED")
    detail = await client.get(f"/tasks/{task_id}", headers=who.headers)
    assert detail.status_code == 200, detail.text
    body = detail.json()
    if role in HOLDERS["audit"]:
        actions = [row["action"] for row in body.get("audit_trail", [])]
        if "TASK_CREATED" not in actions:
            failures.append(f"audit_trail missing for {role}: {actions}")
    elif "audit_trail" in body:
        failures.append(f"audit_trail shown to {role}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", [*ROLES, ANONYMOUS])
async def test_websocket_routes_follow_the_matrix(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: Headers, role: str
) -> None:
    """A holder of the capability is authenticated (``auth.ok``); anyone else is closed
    with 4401."""
    w = await build_world(client, admin_headers)
    token = w.callers[role].headers.get("Authorization", "").removeprefix("Bearer ")
    for endpoint in (e for e in ENDPOINTS if e.method == "WS"):
        async with WsClient(app, endpoint.path, query=f"token={token}") as ws:
            try:
                got = 101 if (await ws.receive())["type"] == "auth.ok" else 0
            except Closed as closed:
                got = closed.code
        want = 101 if expected_status(endpoint, role) == 101 else 4401
        assert got == want, f"{role} {endpoint.label}: expected {want}, got {got}"
