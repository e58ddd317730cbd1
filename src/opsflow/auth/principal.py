"""Who is acting, and from where. Passed from the edge to services and the audit writer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from opsflow.models.enums import ActorType, Role, Scope

SYSTEM_ACTOR_ID = uuid.UUID(int=0)


@dataclass(frozen=True)
class RequestMeta:
    ip_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Principal:
    """An authenticated user, an API client acting through scopes, or the system itself."""

    actor_type: ActorType
    id: uuid.UUID
    name: str
    role: Role | None = None
    team_id: uuid.UUID | None = None
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    session_id: uuid.UUID | None = None
    # For API clients: the user who created the client; recorded as creator of their tasks.
    on_behalf_of: uuid.UUID | None = None
    meta: RequestMeta = field(default_factory=RequestMeta)

    @property
    def is_user(self) -> bool:
        return self.actor_type is ActorType.USER

    @property
    def user_id(self) -> uuid.UUID | None:
        """The user behind this principal, if any (API clients and the system have none)."""
        return self.id if self.is_user else None

    @classmethod
    def system(cls, name: str = "system", meta: RequestMeta | None = None) -> Principal:
        return cls(
            actor_type=ActorType.SYSTEM,
            id=SYSTEM_ACTOR_ID,
            name=name,
            role=Role.ADMIN,
            meta=meta or RequestMeta(),
        )
