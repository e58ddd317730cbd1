"""Outbound webhooks: signed JSON POSTs, and the signature check a receiver runs."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from opsflow.models.enums import Channel
from opsflow.notifications.channels.base import Delivery, DeliveryResult
from opsflow.notifications.channels.http import HttpChannel, json_bytes
from opsflow.notifications.channels.urls import url_origin


class WebhookChannel(HttpChannel):
    """Signed JSON POSTs to outbound webhook subscriptions.

    Headers: ``X-OpsFlow-Event``, ``X-OpsFlow-Delivery`` and ``Idempotency-Key`` (the
    idempotency key), ``X-OpsFlow-Attempt``, ``X-OpsFlow-Timestamp`` (unix seconds from the
    injected clock) and, when the delivery has a secret, ``X-OpsFlow-Signature:
    sha256=<hex>`` over ``f"{timestamp}.{body}"`` — receivers check it with :func:`verify`.
    """

    channel = Channel.WEBHOOK

    def destination_for(self, delivery: Delivery) -> str:
        return f"webhook:{url_origin(delivery.address)}"

    def request_for(self, delivery: Delivery) -> tuple[bytes, dict[str, str]]:
        """The exact body and headers that :meth:`send` posts."""
        body = json_bytes(delivery.payload)
        timestamp = int(self._http.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "X-OpsFlow-Event": delivery.event,
            "X-OpsFlow-Delivery": delivery.idempotency_key,
            "Idempotency-Key": delivery.idempotency_key,
            "X-OpsFlow-Attempt": str(delivery.attempt),
            "X-OpsFlow-Timestamp": str(timestamp),
        }
        if delivery.secret:
            headers["X-OpsFlow-Signature"] = sign(delivery.secret, timestamp, body)
        return body, headers

    async def send(self, delivery: Delivery) -> DeliveryResult:
        body, headers = self.request_for(delivery)
        return await self._http.post(
            delivery.address,
            content=body,
            headers=headers,
            destination=self.destination_for(delivery),
            secrets=(delivery.secret,),
        )


def sign(secret: str | bytes, timestamp: int | str, body: bytes | str) -> str:
    """``sha256=<hex>``: HMAC-SHA256 over ``f"{timestamp}.{raw_body}"`` with the secret."""
    key = secret.encode() if isinstance(secret, str) else secret
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(key, f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: str | bytes,
    timestamp: int | str,
    body: bytes | str,
    signature: str,
    now: datetime,
    tolerance_seconds: int = 300,
) -> bool:
    """Check a webhook signature as a receiver should.

    Refuses timestamps more than ``tolerance_seconds`` away from ``now`` in either direction
    (a captured request cannot be replayed later) and compares in constant time.
    ``signature`` may list several comma-separated values (secret rotation).
    """
    try:
        stamp = int(str(timestamp).strip())
    except ValueError:
        return False
    if abs(now.timestamp() - stamp) > tolerance_seconds:
        return False
    expected = sign(secret, stamp, body).encode()
    matched = False
    for candidate in signature.split(","):
        matched |= hmac.compare_digest(expected, candidate.strip().encode())
    return matched
