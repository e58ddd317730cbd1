"""Comments (`/tasks/{id}/comments`, `/comments/{id}`), the timeline
(`/tasks/{id}/timeline`), the inbox (`/inbox`, `/tasks/{id}/read`, `/tasks/{id}/watch`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import WithJsonSchema

from opsflow.auth.deps import require
from opsflow.auth.permissions import Permission
from opsflow.auth.principal import Principal
from opsflow.collaboration import service, timeline
from opsflow.collaboration.repository import InboxRow
from opsflow.collaboration.schemas import (
    CommentAuthor,
    CommentCreate,
    CommentPage,
    CommentRead,
    CommentUpdate,
    InboxItem,
    InboxPage,
    ReadMarker,
    TimelineActor,
    TimelineEntry,
    TimelinePage,
    WatchState,
)
from opsflow.deps import ClockDep, SessionDep
from opsflow.errors import Forbidden, declares
from opsflow.idempotency.deps import Idempotent
from opsflow.kit.cursor import CURSOR_PATTERN, MAX_CURSOR_CHARS
from opsflow.kit.pagination import PageDep
from opsflow.kit.validation import Word
from opsflow.models.collaboration import Comment
from opsflow.tasks import views as task_views
from opsflow.tasks.deps import ExistingTask
from opsflow.tasks.schemas import TaskListItem

router = APIRouter(tags=["collaboration"])

Reader = Annotated[Principal, Depends(require(Permission.TASK_READ))]
Commenter = Annotated[Principal, Depends(require(Permission.COMMENT))]
Cursor = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_CHARS, pattern=CURSOR_PATTERN),
]
Limit = Annotated[int, Query(ge=1, le=100)]


def comment_view(row: Comment) -> CommentRead:
    return CommentRead(
        id=row.id,
        task_id=row.task_id,
        author=CommentAuthor(
            type=row.actor_type, id=row.actor_id, name=row.author_name, user_id=row.author_id
        ),
        body=row.body,
        internal=row.internal,
        mentions=[uuid.UUID(u) for u in row.mentions or []],
        created_at=row.created_at,
        updated_at=row.updated_at,
        edited_at=row.edited_at,
    )


@router.get("/tasks/{task_id}/comments", response_model=CommentPage)
async def list_comments(
    task_id: uuid.UUID,
    session: SessionDep,
    reader: Reader,
    task: ExistingTask,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> CommentPage:
    """Oldest first. Internal comments are left out for readers who may not see them
    (viewers, API clients without a tasks scope)."""
    rows, next_cursor = await service.list_comments(session, reader, task, cursor, limit)
    return CommentPage(items=[comment_view(r) for r in rows], next_cursor=next_cursor)


@router.post(
    "/tasks/{task_id}/comments", status_code=status.HTTP_201_CREATED, response_model=CommentRead
)
async def create_comment(
    task_id: uuid.UUID,
    body: CommentCreate,
    session: SessionDep,
    clock: ClockDep,
    actor: Commenter,
    task: ExistingTask,
    response: Response,
    _: Idempotent,
) -> CommentRead:
    """Markdown, stored as written. `@username` mentions notify those users (their
    notification preferences honoured; internal comments only reach those who may read
    them)."""
    row = await service.create_comment(session, actor, task, body, clock.now())
    response.headers["Location"] = f"/api/v1/comments/{row.id}"
    return comment_view(row)


@router.patch("/comments/{comment_id}", response_model=CommentRead)
@declares(Forbidden)
async def update_comment(
    comment_id: uuid.UUID,
    body: CommentUpdate,
    session: SessionDep,
    clock: ClockDep,
    actor: Commenter,
) -> CommentRead:
    """The author or an admin; sets `edited_at`. Newly mentioned users are notified."""
    row = await service.update_comment(session, actor, comment_id, body, clock.now())
    return comment_view(row)


@router.delete(
    "/comments/{comment_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
@declares(Forbidden)
async def delete_comment(
    comment_id: uuid.UUID, session: SessionDep, clock: ClockDep, actor: Commenter
) -> Response:
    """The author or an admin. The text leaves the comment; the audit trail keeps it."""
    await service.delete_comment(session, actor, comment_id, clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _kind_schema() -> WithJsonSchema:
    return WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "string", "enum": timeline.kinds()},
            "maxItems": 20,
        }
    )


@router.get("/tasks/{task_id}/timeline", response_model=TimelinePage)
async def get_timeline(
    task_id: uuid.UUID,
    session: SessionDep,
    reader: Reader,
    task: ExistingTask,
    cursor: Cursor = None,
    limit: Limit = 50,
    kind: Annotated[list[Word] | None, Query(max_length=20), _kind_schema()] = None,
) -> TimelinePage:
    """Everything that happened to the task, oldest first: creation, status changes,
    assignments, SLA events, escalations fired, notifications sent or given up, comments,
    alert updates. `kind` (repeatable or comma-separated) keeps only those kinds. What the
    reader may not see is left out (internal comments for viewers; notifications beyond the
    reader's own unless they read all)."""
    requested = [k.strip() for item in kind or [] for k in item.split(",") if k.strip()]
    wanted = timeline.check_kinds(requested)
    entries, next_cursor = await timeline.page(
        session, task, reader, cursor=cursor, wanted=wanted, limit=limit
    )
    return TimelinePage(
        items=[
            TimelineEntry(
                id=e.id,
                kind=e.kind,
                occurred_at=e.occurred_at,
                actor=TimelineActor(**e.actor) if e.actor else None,
                summary=e.summary,
                data=e.data,
            )
            for e in entries
        ],
        next_cursor=next_cursor,
    )


@router.get("/inbox", response_model=InboxPage)
@declares(Forbidden)
async def get_inbox(
    session: SessionDep, clock: ClockDep, reader: Reader, page: PageDep
) -> InboxPage:
    """Tasks the caller is assigned to, created, commented on or watches (cancelled ones
    left out), latest activity first (the task's last change or its last comment the caller
    may see), each with its unread comments. A signed-in user's; API clients have none."""
    rows, why, total, unread_total = await service.inbox(session, reader, page)
    views = await task_views.list_views(session, [r.task for r in rows], clock.now())
    return InboxPage(
        items=[
            _inbox_item(r, v, why.get(r.task.id, set())) for r, v in zip(rows, views, strict=True)
        ],
        total=total,
        unread_total=unread_total,
        page=page.page,
        page_size=page.page_size,
    )


_REASON_ORDER = ("assigned", "created", "commented", "watching")


def _inbox_item(row: InboxRow, view: TaskListItem, reasons: set[str]) -> InboxItem:
    return InboxItem(
        task=view,
        reasons=[r for r in _REASON_ORDER if r in reasons],
        unread_count=row.unread,
        last_activity_at=row.last_activity_at,
        last_read_at=row.last_read_at,
    )


@router.post("/tasks/{task_id}/read", response_model=ReadMarker)
@declares(Forbidden)
async def mark_read(
    task_id: uuid.UUID, session: SessionDep, clock: ClockDep, reader: Reader, task: ExistingTask
) -> ReadMarker:
    """The caller has read the task's conversation up to now; their other sessions are told
    (event `inbox.read`)."""
    read_at, unread = await service.mark_read(session, reader, task, clock.now())
    return ReadMarker(task_id=task.id, read_at=read_at, unread_count=unread)


@router.post("/tasks/{task_id}/watch", response_model=WatchState)
@declares(Forbidden)
async def watch(
    task_id: uuid.UUID, session: SessionDep, clock: ClockDep, reader: Reader, task: ExistingTask
) -> WatchState:
    """Follow the task: it stays in the caller's inbox. Watching twice is watching."""
    await service.watch(session, reader, task, clock.now())
    return WatchState(task_id=task.id, watching=True)


@router.delete(
    "/tasks/{task_id}/watch", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
@declares(Forbidden)
async def unwatch(
    task_id: uuid.UUID, session: SessionDep, reader: Reader, task: ExistingTask
) -> Response:
    await service.unwatch(session, reader, task)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
