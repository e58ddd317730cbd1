"""Users as the directory shows them to a given caller (e-mail addresses follow the
directory rule of :func:`opsflow.auth.permissions.may_read_email`)."""

from __future__ import annotations

from opsflow.auth.permissions import Permission, Reach, may_read_email, reach_of
from opsflow.auth.principal import Principal
from opsflow.models.user import User
from opsflow.users.repository import EmailReach
from opsflow.users.schemas import UserRead


def directory_view(principal: Principal, user: User) -> UserRead:
    read = UserRead.model_validate(user)
    if not may_read_email(principal, user_id=user.id, team_id=user.team_id):
        read.email = None
    return read


def email_reach(principal: Principal) -> EmailReach:
    reach = reach_of(principal, Permission.READ_EMAILS)
    if reach is Reach.ALL:
        return EmailReach(all=True)
    team_id = principal.team_id if reach is Reach.OWN_TEAM else None
    return EmailReach(all=False, user_id=principal.user_id, team_id=team_id)
