"""Queries for outbound webhook subscriptions and the deliveries already planned for them."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.db import read_shared
from opsflow.kit.pagination import PageParams
from opsflow.models.notification import Notification, WebhookSubscription


async def active(session: AsyncSession) -> list[WebhookSubscription]:
    """The active subscriptions; read once per relay pass (`db.shared`)."""

    async def load() -> list[WebhookSubscription]:
        query = select(WebhookSubscription).where(WebhookSubscription.is_active.is_(True))
        return list(await session.scalars(query))

    return await read_shared(session, "webhooks.active", None, load)


async def planned_keys(session: AsyncSession, keys: Collection[str]) -> set[str]:
    """Which of these delivery dedup keys already have a notification row."""
    if not keys:
        return set()
    rows = await session.scalars(
        select(Notification.dedup_key).where(Notification.dedup_key.in_(set(keys)))
    )
    return {key for key in rows if key is not None}


async def name_taken(session: AsyncSession, name: str) -> bool:
    query = select(WebhookSubscription.id).where(WebhookSubscription.name == name)
    return (await session.scalar(query)) is not None


async def page_of(session: AsyncSession, page: PageParams) -> tuple[list[WebhookSubscription], int]:
    total = int(await session.scalar(select(func.count()).select_from(WebhookSubscription)) or 0)
    rows = await session.scalars(
        select(WebhookSubscription)
        .order_by(WebhookSubscription.name)
        .offset(page.offset)
        .limit(page.page_size)
    )
    return list(rows), total
