"""What every channel shares: the delivery and its result, the circuit-breaker wrapper,
and the helpers that keep secrets and control characters out of what is recorded."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from opsflow.clock import Clock
from opsflow.models.enums import Channel
from opsflow.notifications.breaker import CircuitBreaker

MAX_ERROR_CHARS = 2000
MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_TIMEOUT = 10.0
MAX_SUBJECT_CHARS = 500  # the notifications.subject column's length
USER_AGENT = "OpsFlow-Notifier/1"

CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One attempt's worth of a notification, already rendered.

    ``payload`` is what JSON channels send: the event JSON for WEBHOOK, the facts
    (``title``, ``priority``, ``status``, ``link``) for SLACK. ``secret`` signs webhooks.
    """

    notification_id: uuid.UUID
    channel: Channel
    recipient: str
    """A label for people and logs: a user's name, a subscription's name."""
    address: str
    """E-mail address, URL or phone number."""
    idempotency_key: str
    """Stable across attempts of one notification, so receivers can drop duplicates."""
    subject: str | None = None
    body: str = ""
    html_body: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1
    event: str = ""
    """Event type (``sla.breach``): the webhook ``X-OpsFlow-Event`` header."""
    secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class DeliveryResult:
    ok: bool
    retryable: bool
    destination: str
    """Circuit-breaker key of what was contacted."""
    status_code: int | None = None
    """HTTP status or SMTP reply code, when there was one."""
    reply: str | None = None
    """What the destination answered (truncated), for the record."""
    error: str | None = None
    """Why it failed, at most 2000 characters, never containing secrets."""
    retry_after: timedelta | None = None
    """The destination's own hint (HTTP ``Retry-After``) of when to come back."""
    held: bool = False
    """Not attempted: the destination's circuit is open. Does not consume an attempt."""
    retry_at: datetime | None = None
    """For a held delivery: when the breaker may let it through."""

    @property
    def healthy(self) -> bool:
        """What the circuit breaker should record: the destination answered sensibly.

        A non-retryable failure (a 404, a refused recipient) is the destination working
        and saying no; only retryable failures (timeouts, 5xx, 429) mean it is in trouble.
        """
        return self.ok or not self.retryable

    @classmethod
    def success(
        cls, destination: str, *, status_code: int | None = None, reply: str | None = None
    ) -> DeliveryResult:
        return cls(
            ok=True,
            retryable=False,
            destination=destination,
            status_code=status_code,
            reply=clip(reply),
        )

    @classmethod
    def failure(
        cls,
        destination: str,
        error: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        reply: str | None = None,
        retry_after: timedelta | None = None,
    ) -> DeliveryResult:
        return cls(
            ok=False,
            retryable=retryable,
            destination=destination,
            status_code=status_code,
            reply=clip(reply),
            error=clip(error) or "failed",
            retry_after=retry_after,
        )


class DeliveryChannel(Protocol):
    channel: Channel

    def destination_for(self, delivery: Delivery) -> str: ...

    async def send(self, delivery: Delivery) -> DeliveryResult: ...


async def deliver(
    channel: DeliveryChannel, delivery: Delivery, *, breaker: CircuitBreaker, clock: Clock
) -> DeliveryResult:
    """Send through the destination's circuit breaker.

    A held result (``held=True``, ``retry_at`` set) means nothing was attempted: reschedule
    the notification to ``retry_at`` without counting an attempt.
    """
    key = channel.destination_for(delivery)
    if not breaker.allow(key, clock.now()):
        return DeliveryResult(
            ok=False,
            retryable=True,
            destination=key,
            error="circuit open: destination is failing, delivery held",
            held=True,
            retry_at=breaker.retry_at(key),
        )
    result = await channel.send(delivery)
    breaker.record(key, result.healthy, clock.now())
    return result


def clean_header(value: str, *, max_chars: int = 998) -> str:
    """A header value with no way to start another header: CR, LF and other control
    characters become spaces (header injection), runs of spaces collapse."""
    return " ".join(CONTROL_CHARS.sub(" ", value).split())[:max_chars]


def clip(text: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def describe_error(exc: BaseException) -> str:
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
