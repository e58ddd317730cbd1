"""The delivery engine: claim due notifications, send them, record what happened.

Short steps, so that no database transaction is open while a destination is slow:

1. claim (one transaction): due PENDING/RETRY rows are taken and leased by one
   ``UPDATE … RETURNING`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL): their `scheduled_at`
   moves `notification_lease_seconds`, ``OPSFLOW_NOTIFICATION_LEASE_SECONDS``, ahead; then
   commit;
2. send, outside any transaction, through the destination's circuit breaker;
3. record (one short transaction per destination, when its deliveries of the batch have
   been sent; the new columns are computed from those read at claim time, which the lease
   keeps ours, and written by one executemany UPDATE by id): if the row's lease is still
   ours, SENT; or RETRY at the backoff's next
   instant; or DEAD once `max_attempts` are spent; or FAILED when a retry cannot help (a
   4xx, no address). A delivery held by an open circuit is rescheduled without consuming
   an attempt. Every attempt is appended to `attempt_log`.

A process killed between 1 and 3 leaves rows leased: when the lease runs out another engine
sends them again with the same idempotency key, so receivers drop the duplicate — at most
the batch's deliveries already sent to the destinations not yet recorded. Recording each
delivery on its own would shrink that to one per destination, at the cost of a transaction
per delivery: measured, that cut throughput to a few dozen deliveries a second. A lease
shorter than a batch takes to send lets another engine take rows over while they are still
being sent (the first engine's record is then skipped and the receiver sees the key
twice), so keep it well above that.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.enums import Channel, NotificationStatus
from opsflow.models.notification import Notification
from opsflow.notifications import repository
from opsflow.notifications.backoff import next_attempt_at
from opsflow.notifications.channels import Delivery, DeliveryResult, deliver
from opsflow.observability import tracing
from opsflow.tasks import conditions
from opsflow.workers.contract import PassReport

HELD_RETRY = timedelta(seconds=30)


@dataclass(frozen=True)
class _Claim:
    """A claimed notification: what to send, and the columns its outcome is computed from
    (the lease keeps them ours until it is recorded)."""

    id: uuid.UUID
    lease: datetime
    delivery: Delivery | None
    problem: str | None  # why it cannot be sent at all
    channel: str
    status: str
    attempts: int
    max_attempts: int
    attempt_log: list[Any]
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    error_message: str | None = None
    trace_context: str | None = None  # continued by the span of the send

    @classmethod
    def of(
        cls, row: Notification, lease: datetime, delivery: Delivery | None, problem: str | None
    ) -> _Claim:
        return cls(
            row.id, lease, delivery, problem, row.channel, row.status, row.attempts,
            row.max_attempts, list(row.attempt_log or []), row.sent_at, row.failed_at,
            row.error_message, row.trace_context,
        )  # fmt: skip


def _delivery(
    ctx: AppContext, row: Notification, secrets: dict[uuid.UUID, str]
) -> tuple[Delivery | None, str | None]:
    channel = Channel(row.channel)
    address = row.address
    if channel is Channel.SLACK and not address:
        address = ctx.settings.slack_webhook_url
    if not address:
        return None, f"no {channel.value.lower()} address for {row.recipient}"
    secret = None
    if channel is Channel.WEBHOOK and row.recipient_id is None:  # a subscription's delivery
        secret = secrets.get(row.webhook_id) if row.webhook_id else None
        if secret is None:
            return None, "the webhook subscription was deleted or deactivated"
    return (
        Delivery(
            notification_id=row.id,
            channel=channel,
            recipient=row.recipient,
            address=address,
            idempotency_key=f"opsflow-{row.id}",
            subject=row.subject,
            body=row.body,
            html_body=row.html_body,
            payload=row.payload or {},
            attempt=row.attempts + 1,
            event=row.notification_type,
            secret=secret,
        ),
        None,
    )


class DeliveryEngine:
    """The delivery engine (`name` ``delivery``): sends due notifications and webhook
    deliveries."""

    name = "delivery"
    on_commit = True

    def __init__(self, *, batch: int = 50) -> None:
        self.batch = batch

    async def run(self, ctx: AppContext, *, batch: int) -> PassReport:
        counts = {"claimed": 0, "sent": 0, "failed": 0}
        now, next_due = await _deliver(ctx, batch, counts)
        return PassReport(
            self.name,
            worked=counts["claimed"] > 0,
            backlog=counts["claimed"] >= batch,
            next_due=next_due,
            counts=counts,
            at=now,
        )


async def _deliver(
    ctx: AppContext, batch: int, counts: dict[str, int]
) -> tuple[datetime, datetime | None]:
    """Claim, send, record; `counts` gets claimed / sent / failed. Returns the pass's `now`
    and the earliest instant a delivery is due afterwards."""
    async with unit_of_work(ctx.sessions) as session:
        now = ctx.clock.now()
        lease = now + timedelta(seconds=ctx.settings.notification_lease_seconds)
        rows = await repository.claim_and_lease(session, now, batch, lease)
        secrets = await repository.webhook_secrets(
            session, {r.webhook_id for r in rows if r.webhook_id}
        )
        rows = await _apply_windows(session, rows, now)
        claims = [_Claim.of(row, lease, *_delivery(ctx, row, secrets)) for row in rows]
    counts["claimed"] = len(claims)
    started = now
    if not claims:
        async with unit_of_work(ctx.read_sessions) as session:
            return started, await repository.next_due(session)
    notifier = ctx.notifier

    # Destinations in parallel, each destination's deliveries one after another: a failing
    # endpoint is not hit by a whole batch at once, and its breaker sees each answer before
    # the next delivery asks it.
    by_destination: dict[str, list[int]] = defaultdict(list)
    for index, claim in enumerate(claims):
        if claim.delivery is not None:
            channel = notifier.channels[claim.delivery.channel]
            by_destination[channel.destination_for(claim.delivery)].append(index)

    async def record(done: Sequence[tuple[_Claim, DeliveryResult | None]]) -> None:
        now = ctx.clock.now()
        outcomes = [(claim, *_record(ctx, claim, outcome, now)) for claim, outcome in done]
        async with unit_of_work(ctx.sessions) as session:
            ours = await repository.still_leased(session, [c.id for c, _, _ in outcomes], lease)
            # a lease that ran out: another engine took the row over, its record is theirs
            outcomes = [entry for entry in outcomes if entry[0].id in ours]
            await repository.record_many(session, [values for _, _, values in outcomes])
        for claim, label, _ in outcomes:
            ctx.metrics.notification_deliveries.labels(claim.channel, label).inc()
            counts["sent"] += label == "sent"
            counts["failed"] += label in ("failed", "dead")

    async def send_all(indexes: list[int]) -> None:
        done: list[tuple[_Claim, DeliveryResult | None]] = []
        for index in indexes:
            delivery = claims[index].delivery
            assert delivery is not None
            channel = notifier.channels[delivery.channel]
            with tracing.span(
                "opsflow.deliver",
                claims[index].trace_context,
                attributes={
                    "opsflow.channel": delivery.channel.value,
                    "opsflow.attempt": delivery.attempt,
                },
            ):
                outcome = await deliver(
                    channel, delivery, breaker=notifier.breaker, clock=ctx.clock
                )
            done.append((claims[index], outcome))
        await record(done)

    unsendable = [(claim, None) for claim in claims if claim.delivery is None]
    if unsendable:  # nothing to send them to: recorded FAILED at once
        await record(unsendable)
    await asyncio.gather(*(send_all(indexes) for indexes in by_destination.values()))
    if len(claims) >= batch:  # a full batch: the next pass follows at once, whatever is due
        return started, None
    async with unit_of_work(ctx.read_sessions) as session:
        return started, await repository.next_due(session)


def _held_by(row: Notification) -> uuid.UUID | None:
    last = row.attempt_log[-1] if row.attempt_log else None
    if last and last.get("window_id"):
        return uuid.UUID(str(last["window_id"]))
    return None


async def _apply_windows(
    session: AsyncSession, rows: list[Notification], now: datetime
) -> list[Notification]:
    """Hold what an open maintenance window covers (no attempt, due again when it closes);
    drop what a closed `drop` window held. Returns the rows still to send."""
    held_by = {row.id: _held_by(row) for row in rows}
    windows = await repository.windows(session, {w for w in held_by.values() if w is not None}, now)
    if not windows:
        return rows
    tasks = await repository.tasks_with_team_names(
        session, {row.task_id for row in rows if row.task_id}
    )
    by_id = {window.id: window for window in windows}
    to_send = []
    for row in rows:
        held = held_by[row.id]
        previous = by_id.get(held) if held is not None else None
        if previous is not None and previous.on_end == "drop" and previous.ends_at <= now:
            row.status, row.failed_at = NotificationStatus.FAILED, now
            row.error_message = f"dropped: maintenance window '{previous.name}' ended"
            row.updated_at = now
            continue
        found = tasks.get(row.task_id) if row.task_id else None
        covering = [
            w
            for w in windows
            if w.starts_at <= now < w.ends_at
            and found is not None
            and conditions.matches(w.conditions or {}, found[0], found[1])
        ]
        if not covering:
            to_send.append(row)
            continue
        window = max(covering, key=lambda w: w.ends_at)
        row.scheduled_at = window.ends_at
        row.updated_at = now
        row.attempt_log = to_jsonable(
            [
                *row.attempt_log,
                {"at": now, "ok": False, "held": True, "window_id": window.id,
                 "error": f"held by maintenance window '{window.name}'"},
            ]
        )  # fmt: skip
    return to_send


def _record(
    ctx: AppContext, claim: _Claim, outcome: DeliveryResult | None, now: datetime
) -> tuple[str, dict[str, Any]]:
    """The outcome's label and the row's new columns (`repository.RECORDED`)."""
    row: dict[str, Any] = {
        "id": claim.id, "lease": claim.lease, "status": claim.status,
        "attempts": claim.attempts, "scheduled_at": claim.lease, "sent_at": claim.sent_at,
        "failed_at": claim.failed_at, "error_message": claim.error_message, "updated_at": now,
    }  # fmt: skip
    log = claim.attempt_log
    if outcome is None:  # nothing to send it to: retrying cannot help
        row.update(status=NotificationStatus.FAILED, failed_at=now, error_message=claim.problem)
        row["attempt_log"] = to_jsonable([*log, {"at": now, "ok": False, "error": claim.problem}])
        return "failed", row
    if outcome.held:
        row["scheduled_at"] = outcome.retry_at or now + HELD_RETRY
        row["attempt_log"] = to_jsonable(
            [*log, {"at": now, "ok": False, "held": True, "error": outcome.error}]
        )
        return "held", row
    attempts = row["attempts"] = claim.attempts + 1
    row["attempt_log"] = to_jsonable(
        [
            *log,
            {
                "at": now,
                "ok": outcome.ok,
                "status_code": outcome.status_code,
                "error": outcome.error,
                "destination": outcome.destination,
            },
        ]
    )
    if outcome.ok:
        row.update(status=NotificationStatus.SENT, sent_at=now, error_message=None)
        return "sent", row
    row["error_message"] = outcome.error
    if not outcome.retryable:
        row.update(status=NotificationStatus.FAILED, failed_at=now)
        return "failed", row
    if attempts >= claim.max_attempts:
        row.update(status=NotificationStatus.DEAD, failed_at=now)
        return "dead", row
    row["status"] = NotificationStatus.RETRY
    row["scheduled_at"] = next_attempt_at(
        attempts,
        now,
        base=timedelta(seconds=ctx.settings.notification_retry_base_seconds),
        rng=ctx.notifier.rng,
        retry_after=outcome.retry_after,
    )
    return "retry", row
