"""The `attachment` entries of a task's timeline: one per file attached (a deleted one says
so). Importing this module registers the source."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.attachments import repository
from opsflow.collaboration.repository import After
from opsflow.collaboration.timeline import Entry, Reader, Source, rank, register, short
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.task import Task

RANK = 40  # after the comment that announces a file, before the SLA events of that instant


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


async def attachments(
    session: AsyncSession,
    task: Task,
    reader: Reader,
    after: After | None,
    wanted: frozenset[str],
    limit: int,
) -> list[Entry]:
    rows = await repository.timeline_rows(session, task.id, after, rank("attachment"), limit)
    return [
        Entry(
            occurred_at=row.created_at,
            source="attachment",
            key=str(row.id),
            kind="attachment",
            summary=(
                f"{row.uploaded_by_name} attached {short(row.filename, 80)} ({_size(row.size)})"
                + (" — since deleted" if row.deleted_at is not None else "")
            ),
            actor={
                "type": row.uploaded_by_type,
                "id": str(row.uploaded_by),
                "name": row.uploaded_by_name,
            },
            data=to_jsonable(
                {
                    "attachment_id": row.id,
                    "filename": row.filename,
                    "content_type": row.content_type,
                    "size": row.size,
                    "sha256": row.sha256,
                    "deleted_at": row.deleted_at,
                }
            ),
        )
        for row in rows
    ]


register(Source("attachment", RANK, frozenset({"attachment"}), attachments))
