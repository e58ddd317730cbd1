"""Comment, inbox and watch rules: who may read and change which comment, mentions, unread
counts. Every comment change writes its audit row and its outbox event together.

Visibility: internal comments are for the people working the task, the holders of
`Permission.COMMENT_INTERNAL` (every role but viewer; API clients with a tasks scope). Others
never see them: not in the list, the timeline, the inbox counts, nor as a mention.

Events (`comment.created|updated|deleted`, aggregate `comment`) carry `task_id`,
`comment_id`, `internal`, the `author`, the acting `actor`, the `task` summary (what the
real-time stream and notification texts show) and, under `comment`, the comment itself
(no text once deleted). `notify` lists the users a change newly mentions who may read the
comment: the notification rules reach them (their preferences honoured).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.permissions import (
    MATRIX,
    Permission,
    allowed_roles,
    reach_of,
    require_reach,
)
from opsflow.auth.principal import Principal
from opsflow.collaboration import repository
from opsflow.collaboration.schemas import CommentCreate, CommentUpdate
from opsflow.errors import Forbidden, NotFound, ValidationFailed
from opsflow.events import outbox
from opsflow.events.changes import record_change
from opsflow.kit import cursor as cursors
from opsflow.kit.changes import field_changes
from opsflow.kit.jsonable import to_jsonable
from opsflow.kit.pagination import PageParams
from opsflow.models.collaboration import Comment, TaskReadMarker, TaskWatcher
from opsflow.models.enums import Role
from opsflow.models.task import Task
from opsflow.models.user import User
from opsflow.tasks.summary import task_summary

ENTITY = "comment"
# `@name` where a name may start: not inside a word or an e-mail address.
MENTION = re.compile(r"(?<![\w@.+-])@([A-Za-z0-9._-]{3,100})")
MAX_MENTIONS = 50


def reads_internal(principal: Principal) -> bool:
    return reach_of(principal, Permission.COMMENT_INTERNAL) is not None


def user_reads_internal(user: User) -> bool:
    try:
        return Role(user.role) in MATRIX[Permission.COMMENT_INTERNAL]
    except ValueError:
        return False


def mentioned_names(body: str) -> list[str]:
    """The `@username`s of a text, lower-cased, in order, each once (trailing dots dropped:
    "thanks @dana." mentions dana)."""
    names = [m.group(1).rstrip(".").lower() for m in MENTION.finditer(body)]
    return list(dict.fromkeys(n for n in names if len(n) >= 3))[:MAX_MENTIONS]


def _author(comment: Comment) -> dict[str, Any]:
    return {
        "type": comment.actor_type,
        "id": comment.actor_id,
        "name": comment.author_name,
        "user_id": comment.author_id,
    }


def _state(comment: Comment) -> dict[str, Any]:
    """What the audit trail keeps of a comment (its text included: the trail is where a
    deleted comment's history stays)."""
    return to_jsonable(  # type: ignore[no-any-return]
        {
            "task_id": comment.task_id,
            "body": comment.body,
            "internal": comment.internal,
            "mentions": list(comment.mentions or []),
        }
    )


def _record(
    session: AsyncSession,
    actor: Principal,
    task: Task,
    comment: Comment,
    verb: str,
    now: datetime,
    *,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    notify: Sequence[uuid.UUID] = (),
) -> None:
    shown = None
    if verb != "DELETED":
        shown = {
            "id": comment.id,
            "body": comment.body,
            "internal": comment.internal,
            "mentions": list(comment.mentions or []),
            "created_at": comment.created_at,
            "edited_at": comment.edited_at,
        }
    record_change(
        session,
        actor,
        entity_type=ENTITY,
        entity_id=comment.id,
        action=f"COMMENT_{verb}",
        event_type=f"comment.{verb.lower()}",
        payload={
            "task": task_summary(task),
            "task_id": task.id,
            "comment_id": comment.id,
            "internal": comment.internal,
            "author": _author(comment),
            "actor": {"type": actor.actor_type.value, "id": actor.id, "name": actor.name},
            "comment": shown,
            "notify": [str(u) for u in notify],
        },
        now=now,
        changes=field_changes(before, after) if before and after else None,
        previous_state=before,
        new_state=after,
        metadata={"task_id": str(task.id)},
    )


async def _mentions(
    session: AsyncSession, body: str
) -> tuple[list[uuid.UUID], dict[uuid.UUID, User]]:
    """Ids of the active users the text mentions, and those users."""
    found = await repository.active_users_named(session, mentioned_names(body))
    by_name = {u.username: u for u in found}
    ordered = [by_name[n] for n in mentioned_names(body) if n in by_name]
    return [u.id for u in ordered], {u.id: u for u in ordered}


def _to_notify(
    actor: Principal,
    mentioned: list[uuid.UUID],
    users: dict[uuid.UUID, User],
    internal: bool,
    already: set[uuid.UUID],
) -> list[uuid.UUID]:
    """Mentioned users to tell: not the writer, not those told before, and only those who may
    read the comment."""
    return [
        u
        for u in mentioned
        if u not in already
        and not (actor.is_user and u == actor.id)
        and (not internal or user_reads_internal(users[u]))
    ]


async def create_comment(
    session: AsyncSession, actor: Principal, task: Task, data: CommentCreate, now: datetime
) -> Comment:
    require_reach(actor, Permission.COMMENT)
    author_user = actor.user_id or actor.on_behalf_of
    mentioned, users = await _mentions(session, data.body)
    comment = Comment(
        id=uuid.uuid4(),
        task_id=task.id,
        actor_type=actor.actor_type.value,
        actor_id=actor.id,
        author_name=actor.name[:255],
        author_id=author_user,
        body=data.body,
        internal=data.internal,
        mentions=[str(u) for u in mentioned],
        created_at=now,
        updated_at=now,
    )
    session.add(comment)
    await session.flush()
    if actor.is_user:
        # Writing in a conversation reads it up to now.
        await _mark_read(session, task.id, actor.id, now)
    notify = _to_notify(actor, mentioned, users, data.internal, set())
    _record(
        session,
        actor,
        task,
        comment,
        "CREATED",
        now,
        before=None,
        after=_state(comment),
        notify=notify,
    )
    return comment


async def _editable(
    session: AsyncSession, actor: Principal, comment_id: uuid.UUID
) -> tuple[Comment, Task]:
    """The comment for a change by `actor` (its author, or a holder of COMMENT_MODERATE), or
    404 (also for internal comments the actor may not read) / 403."""
    require_reach(actor, Permission.COMMENT)
    comment = await repository.get(session, comment_id, for_update=True)
    if comment is None or comment.deleted_at is not None:
        raise NotFound(ENTITY, comment_id)
    if comment.internal and not reads_internal(actor):
        raise NotFound(ENTITY, comment_id)
    own = comment.actor_type == actor.actor_type.value and comment.actor_id == actor.id
    if not own and reach_of(actor, Permission.COMMENT_MODERATE) is None:
        raise Forbidden(
            "Only the comment's author or an admin may change it",
            required_roles=allowed_roles(Permission.COMMENT_MODERATE),
            permission=Permission.COMMENT_MODERATE.value,
        )
    task = await session.get(Task, comment.task_id)
    if task is None:  # the foreign key cascades: cannot happen
        raise NotFound(ENTITY, comment_id)
    return comment, task


async def update_comment(
    session: AsyncSession,
    actor: Principal,
    comment_id: uuid.UUID,
    data: CommentUpdate,
    now: datetime,
) -> Comment:
    fields = data.model_dump(exclude_unset=True)
    nulls = [k for k, v in fields.items() if v is None]
    if nulls:
        raise ValidationFailed(details=[{"field": k, "message": "must not be null"} for k in nulls])
    comment, task = await _editable(session, actor, comment_id)
    before = _state(comment)
    told = {uuid.UUID(u) for u in comment.mentions or []}
    if "body" in fields:
        comment.body = fields["body"]
    if "internal" in fields:
        comment.internal = fields["internal"]
    mentioned, users = await _mentions(session, comment.body)
    comment.mentions = [str(u) for u in mentioned]
    after = _state(comment)
    if after == before:
        return comment
    comment.edited_at = now
    comment.updated_at = now
    await session.flush()
    if before["internal"]:
        # Those it mentioned who could not read it then were not told (made public, it
        # reaches them now).
        told = {u for u in told if u not in users or user_reads_internal(users[u])}
    notify = _to_notify(actor, mentioned, users, comment.internal, told)
    _record(
        session, actor, task, comment, "UPDATED", now, before=before, after=after, notify=notify
    )
    return comment


async def delete_comment(
    session: AsyncSession, actor: Principal, comment_id: uuid.UUID, now: datetime
) -> None:
    """The row stays as a tombstone without its text; the audit trail keeps the text."""
    comment, task = await _editable(session, actor, comment_id)
    before = _state(comment)
    comment.deleted_at = now
    comment.updated_at = now
    comment.body = ""
    comment.mentions = []
    await session.flush()
    _record(session, actor, task, comment, "DELETED", now, before=before, after=None)


async def list_comments(
    session: AsyncSession, actor: Principal, task: Task, cursor: str | None, limit: int
) -> tuple[list[Comment], str | None]:
    after = None
    if cursor is not None:
        at, ident = cursors.decode(cursor, 2)
        try:
            after = (cursors.instant(at), uuid.UUID(ident))
        except ValueError as exc:
            raise ValidationFailed(
                details=[{"field": "cursor", "message": "not a cursor this list gave out"}]
            ) from exc
    rows = await repository.page_of_task(
        session, task.id, include_internal=reads_internal(actor), after=after, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = (
        cursors.encode(rows[-1].created_at.isoformat(), str(rows[-1].id)) if more else None
    )
    return rows, next_cursor


# --- inbox, read markers, watching -----------------------------------------------------------


def inbox_owner(actor: Principal) -> uuid.UUID:
    """The inbox belongs to a signed-in user; an API client has none."""
    require_reach(actor, Permission.TASK_READ)
    if not actor.is_user:
        raise Forbidden(
            "The inbox, read markers and watching belong to a signed-in user",
            permission=Permission.TASK_READ.value,
            required_scope=None,
            allowed_scopes=[],
        )
    return actor.id


async def _mark_read(
    session: AsyncSession, task_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> None:
    row = await repository.marker(session, task_id, user_id)
    if row is None:
        session.add(TaskReadMarker(task_id=task_id, user_id=user_id, read_at=now))
    elif row.read_at < now:
        row.read_at = now
    await session.flush()


async def mark_read(
    session: AsyncSession, actor: Principal, task: Task, now: datetime
) -> tuple[datetime, int]:
    """Read the task's conversation up to now; the caller's other sessions hear of it through
    the `inbox.read` event (aggregate `user`)."""
    user_id = inbox_owner(actor)
    await _mark_read(session, task.id, user_id, now)
    outbox.emit(
        session,
        aggregate_type="user",
        aggregate_id=user_id,
        event_type="inbox.read",
        payload={"user_id": user_id, "task_id": task.id, "read_at": now},
        now=now,
        request_id=actor.meta.request_id,
    )
    unread = await repository.unread_count(
        session, task.id, user_id, now, include_internal=reads_internal(actor)
    )
    return now, unread


async def watch(session: AsyncSession, actor: Principal, task: Task, now: datetime) -> None:
    user_id = inbox_owner(actor)
    if await repository.watcher(session, task.id, user_id) is None:
        session.add(TaskWatcher(task_id=task.id, user_id=user_id, created_at=now))
        await session.flush()


async def unwatch(session: AsyncSession, actor: Principal, task: Task) -> None:
    user_id = inbox_owner(actor)
    row = await repository.watcher(session, task.id, user_id)
    if row is not None:
        await session.delete(row)
        await session.flush()


async def inbox(
    session: AsyncSession, actor: Principal, page: PageParams
) -> tuple[list[repository.InboxRow], dict[uuid.UUID, set[str]], int, int]:
    user_id = inbox_owner(actor)
    rows, total, unread_total = await repository.inbox(
        session, user_id, include_internal=reads_internal(actor), page=page
    )
    why = await repository.reasons(session, user_id, [r.task.id for r in rows])
    return rows, why, total, unread_total
