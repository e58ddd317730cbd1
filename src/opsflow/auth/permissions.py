"""The permission matrix (which role may do what), in one place.

Every endpoint asks for a :class:`Permission`; :data:`MATRIX` says which roles hold it and
how far (:class:`Reach`). Row-dependent reaches (own team, assignee, own) are checked by the
service that loads the row, through :func:`reach_allows`. API clients hold permissions
through their scopes (:data:`SCOPE_PERMISSIONS`) with full reach.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from enum import StrEnum

from opsflow.auth.principal import Principal
from opsflow.errors import Forbidden
from opsflow.models.enums import ActorType, Role, Scope


class Permission(StrEnum):
    ADMINISTER = "administer"  # register users, API clients, integrations, templates, webhooks
    MANAGE_TEAMS = "manage_teams"
    READ_USERS = "read_users"
    # E-mail addresses in the user directory: besides one's own address (always).
    READ_EMAILS = "read_emails"
    SLA_READ = "sla_read"
    SLA_WRITE = "sla_write"
    TASK_CREATE = "task_create"
    INCIDENT_DECLARE = "incident_declare"
    TASK_UPDATE = "task_update"  # update fields, assign
    TASK_PROGRESS = "task_progress"  # acknowledge, start, block/unblock, complete, reopen
    TASK_SNOOZE = "task_snooze"  # snooze, pause/resume SLA
    TASK_CANCEL = "task_cancel"
    COMMENT = "comment"  # write comments; change or delete one's own
    COMMENT_INTERNAL = "comment_internal"  # read internal comments (and be notified of them)
    COMMENT_MODERATE = "comment_moderate"  # change or delete anybody's comment
    TASK_READ = "task_read"
    REPORTS_READ = "reports_read"
    AUDIT_READ = "audit_read"
    NOTIFICATIONS_READ = "notifications_read"
    NOTIFICATIONS_RETRY = "notifications_retry"
    TICKETS_INGEST = "tickets_ingest"
    MONITORS_WRITE = "monitors_write"  # heartbeat monitors


class Reach(StrEnum):
    ALL = "all"
    OWN_TEAM = "own_team"  # tasks whose team is the caller's team
    ASSIGNEE = "assignee"  # tasks the caller is (one of) the assignees of
    OWN = "own"  # rows addressed to the caller (notifications)


A, M, TL, D, S, AU, V = (
    Role.ADMIN,
    Role.MANAGER,
    Role.TEAM_LEAD,
    Role.DEVELOPER,
    Role.SUPPORT,
    Role.AUDITOR,
    Role.VIEWER,
)
ALL, TEAM, ASSIGNEE, OWN = Reach.ALL, Reach.OWN_TEAM, Reach.ASSIGNEE, Reach.OWN


def _all(*roles: Role) -> dict[Role, Reach]:
    return dict.fromkeys(roles, ALL)


MATRIX: dict[Permission, dict[Role, Reach]] = {
    Permission.ADMINISTER: _all(A),
    Permission.MANAGE_TEAMS: _all(A, M),
    Permission.READ_USERS: _all(A, M, TL, D, S, AU, V),
    Permission.READ_EMAILS: {A: ALL, M: ALL, TL: TEAM, D: TEAM, S: TEAM, AU: TEAM, V: TEAM},
    Permission.SLA_READ: _all(A, M, TL),
    Permission.SLA_WRITE: _all(A, M),
    Permission.TASK_CREATE: _all(A, M, TL, S),
    Permission.INCIDENT_DECLARE: _all(A, M, TL, D, S),
    Permission.TASK_UPDATE: {A: ALL, M: ALL, TL: TEAM},
    Permission.TASK_PROGRESS: {A: ALL, M: ALL, TL: TEAM, D: ASSIGNEE},
    Permission.TASK_SNOOZE: {A: ALL, M: ALL, TL: TEAM},
    Permission.TASK_CANCEL: _all(A),
    Permission.COMMENT: _all(A, M, TL, D, S),
    Permission.COMMENT_INTERNAL: _all(A, M, TL, D, S, AU),
    Permission.COMMENT_MODERATE: _all(A),
    Permission.TASK_READ: _all(A, M, TL, D, S, AU, V),
    Permission.REPORTS_READ: _all(A, M, TL, AU, V),
    Permission.AUDIT_READ: _all(A, AU),
    Permission.NOTIFICATIONS_READ: {A: ALL, M: ALL, D: OWN, S: OWN},
    Permission.NOTIFICATIONS_RETRY: _all(A),
    Permission.TICKETS_INGEST: _all(A, M),
    Permission.MONITORS_WRITE: _all(A, M),
}

SCOPE_PERMISSIONS: dict[Scope, frozenset[Permission]] = {
    Scope.TASKS_READ: frozenset(
        {Permission.TASK_READ, Permission.READ_USERS, Permission.COMMENT_INTERNAL}
    ),
    Scope.TASKS_WRITE: frozenset(
        {
            Permission.TASK_CREATE,
            Permission.INCIDENT_DECLARE,
            Permission.TASK_UPDATE,
            Permission.TASK_PROGRESS,
            Permission.TASK_SNOOZE,
            Permission.COMMENT,
            Permission.COMMENT_INTERNAL,
        }
    ),
    Scope.TICKETS_INGEST: frozenset({Permission.TICKETS_INGEST}),
    Scope.REPORTS_READ: frozenset({Permission.REPORTS_READ}),
}


def allowed_roles(permission: Permission) -> list[str]:
    return [role.value for role in Role if role in MATRIX[permission]]


def reach_of(principal: Principal, permission: Permission) -> Reach | None:
    """How far `principal` holds `permission`, or None when it does not at all."""
    if principal.actor_type is ActorType.SYSTEM:
        return Reach.ALL
    if principal.actor_type is ActorType.API:
        granted = any(permission in SCOPE_PERMISSIONS[scope] for scope in principal.scopes)
        return Reach.ALL if granted else None
    if principal.role is None:
        return None
    return MATRIX[permission].get(principal.role)


def granting_scopes(permission: Permission) -> list[str]:
    return [scope.value for scope in Scope if permission in SCOPE_PERMISSIONS[scope]]


def require_reach(principal: Principal, permission: Permission) -> Reach:
    reach = reach_of(principal, permission)
    if reach is None:
        if principal.actor_type is ActorType.API:
            raise _missing_scope(principal, permission)
        raise Forbidden(required_roles=allowed_roles(permission), permission=permission.value)
    return reach


def _missing_scope(principal: Principal, permission: Permission) -> Forbidden:
    """An API client acts through its token's scopes, not a role: name the scope it lacks."""
    scopes = granting_scopes(permission)
    message = (
        f"This token lacks the scope {' or '.join(scopes)}"
        if scopes
        else "No API-client scope grants this; it needs a signed-in user"
    )
    return Forbidden(
        message,
        permission=permission.value,
        required_scope=scopes[0] if scopes else None,
        allowed_scopes=scopes,
        granted_scopes=sorted(scope.value for scope in principal.scopes),
    )


def reach_allows(
    principal: Principal,
    reach: Reach,
    *,
    team_id: uuid.UUID | None = None,
    assignee_ids: Iterable[uuid.UUID] = (),
    owner_id: uuid.UUID | None = None,
) -> bool:
    if reach is Reach.ALL:
        return True
    if reach is Reach.OWN_TEAM:
        return principal.team_id is not None and principal.team_id == team_id
    if reach is Reach.ASSIGNEE:
        return principal.id in set(assignee_ids)
    return owner_id is not None and owner_id == principal.id


def may_read_email(principal: Principal, *, user_id: uuid.UUID, team_id: uuid.UUID | None) -> bool:
    """The directory rule for e-mail addresses: everyone sees their own; admins and
    managers see every address; the other roles see those of their own team's members.
    API clients see none (no scope grants it)."""
    if principal.user_id is not None and principal.user_id == user_id:
        return True
    reach = reach_of(principal, Permission.READ_EMAILS)
    return reach is not None and reach_allows(principal, reach, team_id=team_id)


def check_row(
    principal: Principal,
    permission: Permission,
    *,
    team_id: uuid.UUID | None = None,
    assignee_ids: Iterable[uuid.UUID] = (),
    owner_id: uuid.UUID | None = None,
) -> None:
    """Raise 403 unless `principal` may use `permission` on this particular row."""
    reach = require_reach(principal, permission)
    if not reach_allows(
        principal, reach, team_id=team_id, assignee_ids=assignee_ids, owner_id=owner_id
    ):
        raise Forbidden(
            _REACH_MESSAGES[reach],
            required_roles=[
                r for r in allowed_roles(permission) if MATRIX[permission][Role(r)] is Reach.ALL
            ],
            permission=permission.value,
        )


_REACH_MESSAGES = {
    Reach.OWN_TEAM: "Your role may do this only for tasks of your own team",
    Reach.ASSIGNEE: "Your role may do this only for tasks assigned to you",
    Reach.OWN: "Your role may do this only for your own items",
    Reach.ALL: "Insufficient permissions to perform this action",
}


def granted_permissions(principal: Principal) -> dict[str, str]:
    """Permission name -> reach, for `/auth/me` and the dashboard."""
    result: dict[str, str] = {}
    for permission in Permission:
        reach = reach_of(principal, permission)
        if reach is not None:
            result[permission.value] = reach.value
    return result
