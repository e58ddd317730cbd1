"""Delivery channels: hand one rendered notification to its destination (no database).

Every channel has ``async def send(delivery) -> DeliveryResult`` and never raises for a
problem at the destination: refused connections, timeouts, HTTP 4xx/5xx and SMTP errors all
come back as a :class:`DeliveryResult` saying whether a retry could help. Exceptions that do
escape are bugs. The caller (the dispatcher, which owns the notification rows) decides what
to do with the result: mark SENT, schedule a retry (``backoff.next_attempt_at``), or DEAD.

Retry classification, the same for every HTTP channel:

- 2xx: delivered;
- 408, 429, 5xx, timeouts, connection errors: retryable (``retry_after`` carries a 429/503
  ``Retry-After`` hint);
- other 4xx, 3xx (redirects are not followed: a POST must not wander), invalid addresses:
  not retryable — repeating the same request cannot succeed.

Each result names its ``destination`` (the origin of a URL, the SMTP relay, the SMS
provider): the key of its circuit breaker (:mod:`opsflow.notifications.breaker`).
``destination_for(delivery)`` gives the same key *before* sending, so the dispatcher can ask
the breaker first; :func:`deliver` does both.

Receivers deduplicate with the idempotency key, sent on every channel (``Idempotency-Key``
and ``X-OpsFlow-Delivery`` headers, the e-mail Message-ID, the SMS provider's idempotency
header), so a retry after a lost answer is not a second notification.


One module per channel (``email``, ``webhook``, ``slack``, ``sms``) over what they share:
``base`` (the delivery, its result, the breaker wrapper), ``urls`` (URL safety) and ``http``
(the HTTP sender). The names below are the package's public interface.
"""

from opsflow.notifications.channels.base import (
    DEFAULT_TIMEOUT,
    MAX_ERROR_CHARS,
    MAX_RESPONSE_BYTES,
    MAX_SUBJECT_CHARS,
    USER_AGENT,
    Delivery,
    DeliveryChannel,
    DeliveryResult,
    clean_header,
    deliver,
)
from opsflow.notifications.channels.email import (
    EmailChannel,
    SmtpSettings,
    build_email,
    outbox_file_name,
)
from opsflow.notifications.channels.http import classify_status, parse_retry_after
from opsflow.notifications.channels.slack import SlackChannel, slack_escape, slack_message
from opsflow.notifications.channels.sms import (
    HttpSmsProvider,
    RecordingSmsProvider,
    SentSms,
    SmsChannel,
    SmsProvider,
    normalise_phone,
    segment_sms,
)
from opsflow.notifications.channels.urls import url_origin, validate_url
from opsflow.notifications.channels.webhook import WebhookChannel, sign, verify

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_ERROR_CHARS",
    "MAX_RESPONSE_BYTES",
    "MAX_SUBJECT_CHARS",
    "USER_AGENT",
    "Delivery",
    "DeliveryChannel",
    "DeliveryResult",
    "EmailChannel",
    "HttpSmsProvider",
    "RecordingSmsProvider",
    "SentSms",
    "SlackChannel",
    "SmsChannel",
    "SmsProvider",
    "SmtpSettings",
    "WebhookChannel",
    "build_email",
    "classify_status",
    "clean_header",
    "deliver",
    "normalise_phone",
    "outbox_file_name",
    "parse_retry_after",
    "segment_sms",
    "sign",
    "slack_escape",
    "slack_message",
    "url_origin",
    "validate_url",
    "verify",
]
