"""The upload collector: removes abandoned uploads and the bytes of deleted attachments.

An upload that received nothing for `OPSFLOW_UPLOAD_EXPIRY_HOURS` (24 h by default), or that
failed, is past its `expires_at`: its parts are dropped from the storage backend (the S3
multipart upload is aborted) and its rows deleted. A deleted attachment's bytes are removed
and the row marked purged. One pass = one transaction; rows are claimed ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL so passes side by side take different ones.
"""

from __future__ import annotations

from opsflow.attachments import repository
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.workers.contract import PassReport


class UploadCollector:
    """The upload collector (`name` ``uploads``)."""

    name = "uploads"
    on_commit = False

    def __init__(self, *, batch: int = 100) -> None:
        self.batch = batch

    async def run(self, ctx: AppContext, *, batch: int) -> PassReport:
        counts = {"uploads_expired": 0, "attachments_purged": 0}
        lags: list[tuple[str, float]] = []
        async with unit_of_work(ctx.sessions) as session:
            now = ctx.clock.now()
            expired = await repository.claim_expired(session, now, batch)
            for upload in expired:
                await ctx.storage.abort_upload(upload.storage_key, upload.backend_id)
                if upload.state != "completed":
                    # A failed or interrupted assembly may have left the object behind.
                    await ctx.storage.delete(upload.storage_key)
                if upload.expires_at is not None:
                    lags.append(("upload", (now - upload.expires_at).total_seconds()))
                await repository.remove_upload(session, upload)
            counts["uploads_expired"] = len(expired)
            deleted = await repository.claim_deleted(session, batch)
            for attachment in deleted:
                await ctx.storage.delete(attachment.storage_key)
                attachment.purged_at = now
            counts["attachments_purged"] = len(deleted)
            await session.flush()
            next_due = await repository.next_expiry(session)
        worked = bool(expired or deleted)
        return PassReport(
            self.name,
            worked=worked,
            backlog=len(expired) >= batch or len(deleted) >= batch,
            next_due=next_due,
            counts=counts,
            at=now,
            lags=lags,
        )
