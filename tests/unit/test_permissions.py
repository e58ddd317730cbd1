"""The role matrix against docs/roles.md, written out here independently of the code."""

from __future__ import annotations

import uuid

import pytest

from opsflow.auth.permissions import (
    MATRIX,
    Permission,
    Reach,
    allowed_roles,
    check_row,
    granted_permissions,
    reach_allows,
    reach_of,
    require_reach,
)
from opsflow.auth.principal import Principal
from opsflow.errors import Forbidden
from opsflow.models.enums import ActorType, Role, Scope

P = Permission
ROLES = ["admin", "manager", "team_lead", "developer", "support", "auditor", "viewer"]
Y, TEAM, ASSIGNEE, OWN, NO = "all", "own_team", "assignee", "own", None

# docs/roles.md, row by row, columns in ROLES order.
DOCUMENTED_ROWS: dict[Permission, list[str | None]] = {
    # register users, API clients, integrations, templates, webhooks
    P.ADMINISTER: [Y, NO, NO, NO, NO, NO, NO],
    # SLA policies, calendars, escalation policies (team_lead: read)
    P.SLA_READ: [Y, Y, Y, NO, NO, NO, NO],
    P.SLA_WRITE: [Y, Y, NO, NO, NO, NO, NO],
    P.TASK_CREATE: [Y, Y, Y, NO, Y, NO, NO],
    P.INCIDENT_DECLARE: [Y, Y, Y, Y, Y, NO, NO],
    # update, assign
    P.TASK_UPDATE: [Y, Y, TEAM, NO, NO, NO, NO],
    # acknowledge, start, block, complete
    P.TASK_PROGRESS: [Y, Y, TEAM, ASSIGNEE, NO, NO, NO],
    # pause/resume SLA, snooze
    P.TASK_SNOOZE: [Y, Y, TEAM, NO, NO, NO, NO],
    P.TASK_CANCEL: [Y, NO, NO, NO, NO, NO, NO],
    # comment, attach
    P.COMMENT: [Y, Y, Y, Y, Y, NO, NO],
    # read internal comments
    P.COMMENT_INTERNAL: [Y, Y, Y, Y, Y, Y, NO],
    # change or delete anybody's comment
    P.COMMENT_MODERATE: [Y, NO, NO, NO, NO, NO, NO],
    P.TASK_READ: [Y, Y, Y, Y, Y, Y, Y],
    P.REPORTS_READ: [Y, Y, Y, NO, NO, Y, Y],
    P.AUDIT_READ: [Y, NO, NO, NO, NO, Y, NO],
    # notifications: all / retry
    P.NOTIFICATIONS_READ: [Y, Y, NO, OWN, OWN, NO, NO],
    P.NOTIFICATIONS_RETRY: [Y, NO, NO, NO, NO, NO, NO],
    # heartbeat monitors (reading them is reading tasks)
    P.MONITORS_WRITE: [Y, Y, NO, NO, NO, NO, NO],
}

# Capabilities the table does not list; pinned so that a change to them is a conscious one.
NOT_IN_TABLE: dict[Permission, list[str | None]] = {
    P.MANAGE_TEAMS: [Y, Y, NO, NO, NO, NO, NO],
    P.READ_USERS: [Y, Y, Y, Y, Y, Y, Y],
    # e-mail addresses of others: admins and managers all, the other roles their own team's
    P.READ_EMAILS: [Y, Y, TEAM, TEAM, TEAM, TEAM, TEAM],
    P.TICKETS_INGEST: [Y, Y, NO, NO, NO, NO, NO],
}

TEAM_A, TEAM_B = uuid.uuid4(), uuid.uuid4()


def _user(role: str, team_id: uuid.UUID | None = None) -> Principal:
    return Principal(ActorType.USER, uuid.uuid4(), f"{role}-user", Role(role), team_id=team_id)


def _client(*scopes: Scope) -> Principal:
    return Principal(ActorType.API, uuid.uuid4(), "client", scopes=frozenset(scopes))


def _as_row(permission: Permission) -> list[str | None]:
    reaches = MATRIX[permission]
    return [reaches[Role(r)].value if Role(r) in reaches else None for r in ROLES]


def test_every_permission_is_accounted_for() -> None:
    assert set(DOCUMENTED_ROWS) | set(NOT_IN_TABLE) == set(Permission)
    assert set(MATRIX) == set(Permission)


@pytest.mark.parametrize("permission", list(DOCUMENTED_ROWS), ids=str)
def test_matrix_row_equals_spec(permission: Permission) -> None:
    assert _as_row(permission) == DOCUMENTED_ROWS[permission]


@pytest.mark.parametrize("permission", list(NOT_IN_TABLE), ids=str)
def test_matrix_row_outside_spec(permission: Permission) -> None:
    assert _as_row(permission) == NOT_IN_TABLE[permission]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("permission", list(Permission), ids=str)
def test_reach_of_user_follows_the_matrix(role: str, permission: Permission) -> None:
    expected = {**DOCUMENTED_ROWS, **NOT_IN_TABLE}[permission][ROLES.index(role)]
    reach = reach_of(_user(role, TEAM_A), permission)
    assert (reach.value if reach else None) == expected


def test_allowed_roles_in_role_order() -> None:
    assert allowed_roles(P.AUDIT_READ) == ["admin", "auditor"]
    assert allowed_roles(P.TASK_PROGRESS) == ["admin", "manager", "team_lead", "developer"]


def test_user_without_role_holds_nothing() -> None:
    nobody = Principal(ActorType.USER, uuid.uuid4(), "ghost")
    assert granted_permissions(nobody) == {}
    with pytest.raises(Forbidden):
        require_reach(nobody, P.TASK_READ)


# --- row-dependent reaches -----------------------------------------------------------------


def test_team_lead_own_team_only() -> None:
    lead = _user("team_lead", TEAM_A)
    check_row(lead, P.TASK_UPDATE, team_id=TEAM_A)
    with pytest.raises(Forbidden) as info:
        check_row(lead, P.TASK_UPDATE, team_id=TEAM_B)
    assert info.value.extra["required_role"] == "admin"
    assert info.value.extra["allowed_roles"] == ["admin", "manager"]
    assert info.value.extra["permission"] == "task_update"
    with pytest.raises(Forbidden):
        check_row(lead, P.TASK_SNOOZE, team_id=None)


def test_team_lead_without_team_matches_no_task_even_teamless() -> None:
    lead = _user("team_lead", None)
    assert not reach_allows(lead, Reach.OWN_TEAM, team_id=None)
    with pytest.raises(Forbidden):
        check_row(lead, P.TASK_UPDATE, team_id=None)


def test_developer_progress_only_when_assignee() -> None:
    dev = _user("developer", TEAM_A)
    other = uuid.uuid4()
    check_row(dev, P.TASK_PROGRESS, team_id=TEAM_B, assignee_ids=[other, dev.id])
    with pytest.raises(Forbidden) as info:
        check_row(dev, P.TASK_PROGRESS, team_id=TEAM_A, assignee_ids=[other])
    assert info.value.extra["required_role"] == "admin"
    assert "assigned to you" in info.value.message
    with pytest.raises(Forbidden):
        check_row(dev, P.TASK_PROGRESS, assignee_ids=[])


def test_assignee_ids_may_be_a_generator() -> None:
    dev = _user("developer")
    check_row(dev, P.TASK_PROGRESS, assignee_ids=(u for u in [dev.id]))


def test_own_notifications_only() -> None:
    support = _user("support")
    check_row(support, P.NOTIFICATIONS_READ, owner_id=support.id)
    with pytest.raises(Forbidden):
        check_row(support, P.NOTIFICATIONS_READ, owner_id=uuid.uuid4())
    with pytest.raises(Forbidden):
        check_row(support, P.NOTIFICATIONS_READ, owner_id=None)


def test_full_reach_ignores_the_row() -> None:
    manager = _user("manager", TEAM_A)
    check_row(manager, P.TASK_UPDATE, team_id=TEAM_B, assignee_ids=[], owner_id=None)
    check_row(manager, P.NOTIFICATIONS_READ, owner_id=uuid.uuid4())


def test_missing_permission_is_forbidden_with_required_role() -> None:
    viewer = _user("viewer")
    with pytest.raises(Forbidden) as info:
        check_row(viewer, P.TASK_CREATE)
    error = info.value
    assert error.status_code == 403
    assert error.code == "FORBIDDEN"
    assert error.extra["required_role"] == "admin"
    assert error.extra["allowed_roles"] == ["admin", "manager", "team_lead", "support"]


def test_auditor_required_role_for_audit() -> None:
    with pytest.raises(Forbidden) as info:
        require_reach(_user("manager"), P.AUDIT_READ)
    assert info.value.extra["allowed_roles"] == ["admin", "auditor"]


# --- API clients and the system --------------------------------------------------------------

SCOPE_GRANTS: dict[Scope, set[Permission]] = {
    Scope.TASKS_READ: {P.TASK_READ, P.READ_USERS, P.COMMENT_INTERNAL},
    Scope.TASKS_WRITE: {
        P.TASK_CREATE,
        P.INCIDENT_DECLARE,
        P.TASK_UPDATE,
        P.TASK_PROGRESS,
        P.TASK_SNOOZE,
        P.COMMENT,
        P.COMMENT_INTERNAL,
    },
    Scope.TICKETS_INGEST: {P.TICKETS_INGEST},
    Scope.REPORTS_READ: {P.REPORTS_READ},
}


@pytest.mark.parametrize("scope", list(Scope), ids=str)
def test_api_client_scope_grants(scope: Scope) -> None:
    client = _client(scope)
    granted = {p for p in Permission if reach_of(client, p) is not None}
    assert granted == SCOPE_GRANTS[scope]
    assert all(reach_of(client, p) is Reach.ALL for p in granted)


def test_api_client_never_administers_or_cancels() -> None:
    client = _client(*Scope)
    for permission in (P.ADMINISTER, P.TASK_CANCEL, P.AUDIT_READ, P.SLA_WRITE):
        assert reach_of(client, permission) is None


def test_api_client_without_scopes_holds_nothing() -> None:
    assert granted_permissions(_client()) == {}


def test_api_client_scope_reaches_any_row() -> None:
    client = _client(Scope.TASKS_WRITE)
    check_row(client, P.TASK_UPDATE, team_id=TEAM_B, assignee_ids=[])
    with pytest.raises(Forbidden):
        check_row(client, P.TASK_READ)


def test_api_client_role_is_ignored() -> None:
    client = Principal(ActorType.API, uuid.uuid4(), "c", role=Role.ADMIN)
    assert reach_of(client, P.ADMINISTER) is None


def test_system_principal_holds_everything() -> None:
    system = Principal.system()
    assert granted_permissions(system) == {p.value: "all" for p in Permission}
    check_row(system, P.TASK_PROGRESS, team_id=TEAM_A, assignee_ids=[])
    check_row(system, P.NOTIFICATIONS_READ, owner_id=None)


def test_granted_permissions_for_developer() -> None:
    assert granted_permissions(_user("developer")) == {
        "read_users": "all",
        "read_emails": "own_team",
        "incident_declare": "all",
        "task_progress": "assignee",
        "comment": "all",
        "comment_internal": "all",
        "task_read": "all",
        "notifications_read": "own",
    }
