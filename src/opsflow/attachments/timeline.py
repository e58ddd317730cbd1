"""The `attachment` entries of a task's timeline: one per file attached (a deleted one says
so). Importing this module registers the source."""

from __future__ import annotations

from opsflow.attachments import repository
from opsflow.collaboration.timeline import Ask, Said, actor, from_rows, register, short
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.attachment import Attachment

RANK = 40  # after the comment that announces a file, before the SLA events of that instant


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


async def _rows(ask: Ask) -> list[Attachment]:
    return await repository.timeline_rows(ask.session, ask.task.id, ask.after, ask.rank, ask.limit)


def _attachment(row: Attachment) -> Said:
    return Said(
        at=row.created_at,
        key=str(row.id),
        summary=(
            f"{row.uploaded_by_name} attached {short(row.filename, 80)} ({_size(row.size)})"
            + (" — since deleted" if row.deleted_at is not None else "")
        ),
        actor=actor(row.uploaded_by_type, row.uploaded_by, row.uploaded_by_name),
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


register(from_rows("attachment", RANK, {"attachment"}, _rows, _attachment))
