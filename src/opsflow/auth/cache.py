"""A short-lived, per-process cache of who a bearer token stands for.

Every authenticated request would otherwise read the user and its login session (or the
API client) before doing its own work. The cache keeps the resolved principal for
`OPSFLOW_AUTH_CACHE_SECONDS` (measured on the injected clock), keyed by what the token
names (user + session, or client + scopes); the token's signature and expiry are still
checked on every request.

Revocation rule: any write to users, login sessions or API clients clears the cache of
every context in this process, when it is flushed and again when it commits, so a logout,
a deactivation, a role change or a revoked client is refused at once by the process that
made the change. Other processes (more workers, more instances) refuse it within
`OPSFLOW_AUTH_CACHE_SECONDS`. Set it to 0 to check the database on every request.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from opsflow.auth.principal import Principal
from opsflow.clock import Clock
from opsflow.models.auth import ApiClient, AuthSession
from opsflow.models.user import User

CacheKey = tuple[Any, ...]
_IDENTITY_TYPES = (User, AuthSession, ApiClient)
_DIRTY = "opsflow.principals_changed"


class PrincipalCache:
    def __init__(self, clock: Clock, ttl: timedelta, max_entries: int = 10_000) -> None:
        self._clock = clock
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: OrderedDict[CacheKey, tuple[Principal, datetime]] = OrderedDict()
        _LIVE.add(self)

    @property
    def enabled(self) -> bool:
        return self._ttl > timedelta(0)

    def get(self, key: CacheKey) -> Principal | None:
        found = self._entries.get(key)
        if found is None:
            return None
        principal, until = found
        if self._clock.now() >= until:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return principal

    def put(self, key: CacheKey, principal: Principal) -> None:
        if not self.enabled:
            return
        self._entries[key] = (principal, self._clock.now() + self._ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_LIVE: weakref.WeakSet[PrincipalCache] = weakref.WeakSet()


def clear_all() -> None:
    for cache in list(_LIVE):
        cache.clear()


def _touches_identity(session: Session) -> bool:
    return any(
        isinstance(instance, _IDENTITY_TYPES)
        for instance in (*session.new, *session.dirty, *session.deleted)
    )


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context: Any) -> None:
    if _touches_identity(session):
        session.info[_DIRTY] = True
        clear_all()


@event.listens_for(Session, "do_orm_execute")
def _bulk_write(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    if mapper is not None and issubclass(mapper.class_, _IDENTITY_TYPES):
        state.session.info[_DIRTY] = True
        clear_all()


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    # Cleared again once the change is visible: a request that resolved its token between
    # the flush and the commit may have cached what was true before.
    if session.info.pop(_DIRTY, False):
        clear_all()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_DIRTY, None)
