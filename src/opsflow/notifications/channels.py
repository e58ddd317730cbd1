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
"""

from __future__ import annotations

import asyncio
import base64
import email.errors
import hashlib
import hmac
import json
import os
import re
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr, parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal, Protocol, Self
from urllib.parse import urlencode

import aiosmtplib
import httpx

from opsflow.clock import Clock
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.enums import Channel
from opsflow.notifications.breaker import CircuitBreaker

MAX_ERROR_CHARS = 2000
MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_TIMEOUT = 10.0
MAX_SUBJECT_CHARS = 500  # the notifications.subject column (seed 000)
USER_AGENT = "OpsFlow-Notifier/1"

# GSM 03.38: characters that fit a 7-bit SMS (160 per segment); the extension table costs
# two septets each. Anything else makes the message UCS-2 (70 per segment).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
_PHONE_NOISE = re.compile(r"[\s().-]")
_PHONE = re.compile(r"\+?[0-9]{6,15}")


# --------------------------------------------------------------------------- values


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
            reply=_clip(reply),
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
            reply=_clip(reply),
            error=_clip(error) or "failed",
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


# --------------------------------------------------------------------------- safety helpers


def clean_header(value: str, *, max_chars: int = 998) -> str:
    """A header value with no way to start another header: CR, LF and other control
    characters become spaces (header injection), runs of spaces collapse."""
    return " ".join(_CONTROL.sub(" ", value).split())[:max_chars]


def validate_url(url: str) -> str:
    """The URL if it is absolute http(s) with a host and no whitespace; ValueError otherwise.

    Other schemes (``file:``, ``gopher:``, ``ftp:``) are refused outright. Whether private
    addresses are acceptable is a policy of whoever registers the URL, not of the sender:
    loopback targets are legitimate in embedded mode.
    """
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise ValueError("URL must be a non-empty string of at most 2048 characters")
    if _CONTROL.search(url) or any(ch.isspace() for ch in url):
        raise ValueError("URL must not contain whitespace or control characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError("only http and https URLs are allowed")
    if not parsed.host:
        raise ValueError("URL has no host")
    return url


def url_origin(url: str) -> str:
    """``scheme://host:port`` of a URL: the circuit-breaker key, free of path secrets
    (a Slack webhook URL *is* its secret)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "invalid-url"
    if not parsed.host:
        return "invalid-url"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{parsed.scheme}://{host.lower()}:{port}"


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


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A ``Retry-After`` header (delta-seconds or HTTP-date) as a delay from ``now``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=min(int(value), 7 * 24 * 3600))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


def classify_status(status: int) -> tuple[bool, bool]:
    """``(ok, retryable)`` for an HTTP status."""
    if 200 <= status < 300:
        return True, False
    if status in (408, 429) or status >= 500:
        return False, True
    return False, False


def segment_sms(text: str, *, max_segments: int = 3) -> list[str]:
    """Split a text into SMS segments, at word boundaries, at most ``max_segments``.

    A text that fits one message is sent as it is (160 GSM-7 characters, 70 if it needs
    Unicode). Longer texts become numbered parts (`` (1/2)``), each a full message on its
    own, because not every provider or handset reassembles concatenated SMS. What does
    not fit in ``max_segments`` is cut at a word boundary and ends with ``...``.
    """
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    flat = " ".join(_CONTROL.sub(" ", text).split())
    if not flat:
        return []
    limit = 160 if _is_gsm7(flat) else 70
    if _sms_len(flat) <= limit:
        return [flat]
    if max_segments == 1:
        return [_cut_words(flat, limit, "...")]
    # Number the parts; the suffix " (i/n)" is 6 characters for n < 10.
    for count in range(2, max_segments + 1):
        parts = _split_words(flat, limit - len(f" ({count}/{count})"))
        if len(parts) <= count:
            return [f"{part} ({i}/{len(parts)})" for i, part in enumerate(parts, 1)]
    room = limit - len(f" ({max_segments}/{max_segments})")
    parts = _split_words(flat, room)
    parts = [
        *parts[: max_segments - 1],
        _cut_words(" ".join(parts[max_segments - 1 :]), room, "..."),
    ]
    return [f"{part} ({i}/{max_segments})" for i, part in enumerate(parts, 1)]


def _is_gsm7(text: str) -> bool:
    return all(ch in _GSM7_BASIC or ch in _GSM7_EXTENDED for ch in text)


def _sms_len(text: str) -> int:
    return sum(2 if ch in _GSM7_EXTENDED else 1 for ch in text)


def _split_words(text: str, limit: int) -> list[str]:
    """Greedy word wrap into pieces of at most ``limit`` (SMS length); over-long words
    (a long URL) are broken."""
    parts: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if _sms_len(candidate) <= limit:
            current = candidate
            continue
        if current:
            parts.append(current)
        while _sms_len(word) > limit:
            head = _take(word, limit)
            parts.append(head)
            word = word[len(head) :]
        current = word
    if current:
        parts.append(current)
    return parts


def _take(word: str, budget: int) -> str:
    taken = ""
    for ch in word:
        if _sms_len(taken + ch) > budget:
            break
        taken += ch
    return taken


def _cut_words(text: str, limit: int, marker: str) -> str:
    if _sms_len(text) <= limit:
        return text
    room = limit - len(marker)
    head = _take(text, room)
    if " " in head and not text[len(head) : len(head) + 1].isspace():
        head = head[: head.rfind(" ")]
    return head.rstrip() + marker


def _clip(text: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def _url_secrets(url: str) -> tuple[str, ...]:
    """Parts of a URL that may be credentials (a Slack hook's path, a ``?token=``)."""
    parsed = httpx.URL(url)
    path = parsed.path if len(parsed.path) > 1 else ""
    query = parsed.query.decode("ascii", "replace")
    return tuple(part for part in (path, query, parsed.password) if part)


def _describe(exc: BaseException) -> str:
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


# --------------------------------------------------------------------------- e-mail


@dataclass(frozen=True)
class SmtpSettings:
    """Where e-mail goes. No ``host``: written to the outbox folder instead (SPEC §1)."""

    host: str | None = None
    port: int | None = None
    """None: 465 with ``use_tls``, else 587 with STARTTLS or 25 (aiosmtplib's choice)."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool | None = None
    """True: require STARTTLS; False: never; None: upgrade when the server offers it."""
    use_tls: bool = False
    """Implicit TLS from the first byte (port 465)."""
    from_address: str = "OpsFlow <noreply@opsflow.local>"
    timeout: float = DEFAULT_TIMEOUT
    validate_certs: bool = True


class EmailChannel:
    """E-mail through SMTP (aiosmtplib), or as ``.eml`` files in an outbox folder.

    The Message-ID is derived from the idempotency key, so a retry after a lost ``250``
    carries the same Message-ID and mail systems can recognise the duplicate. Outbox file
    names come from the same key, so a re-delivery overwrites its own file.
    """

    channel = Channel.EMAIL

    def __init__(
        self, settings: SmtpSettings, *, clock: Clock, outbox_dir: Path | None = None
    ) -> None:
        if not settings.host and outbox_dir is None:
            raise ValueError("without an SMTP host, e-mail needs an outbox folder")
        self.settings = settings
        self.outbox_dir = outbox_dir
        self._clock = clock

    def destination_for(self, delivery: Delivery) -> str:
        if self.settings.host:
            port = self.settings.port or (465 if self.settings.use_tls else 25)
            return f"smtp:{self.settings.host.lower()}:{port}"
        return "email:outbox"

    def build_message(self, delivery: Delivery) -> EmailMessage:
        """The RFC 5322 message; ValueError for an address that is not one mailbox."""
        return build_email(delivery, from_address=self.settings.from_address, now=self._clock.now())

    async def send(self, delivery: Delivery) -> DeliveryResult:
        destination = self.destination_for(delivery)
        try:
            message = self.build_message(delivery)
        except ValueError as exc:
            return DeliveryResult.failure(destination, str(exc), retryable=False)
        if not self.settings.host:
            return await self._write_outbox(message, delivery, destination)
        return await self._send_smtp(message, destination)

    async def _send_smtp(self, message: EmailMessage, destination: str) -> DeliveryResult:
        s = self.settings
        try:
            async with asyncio.timeout(s.timeout * 3):  # per step below, bounded in total
                _errors, reply = await aiosmtplib.send(
                    message,
                    hostname=s.host,
                    port=s.port,
                    username=s.username,
                    password=s.password,
                    use_tls=s.use_tls,
                    start_tls=s.starttls,
                    validate_certs=s.validate_certs,
                    timeout=s.timeout,
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            transient = bool(codes) and all(400 <= code < 500 for code in codes)
            return DeliveryResult.failure(
                destination,
                f"recipient refused: {text}",
                retryable=transient,
                status_code=codes[0] if codes else None,
            )
        except aiosmtplib.SMTPResponseException as exc:
            # RFC 5321: 4yz transient (try again), 5yz permanent.
            return DeliveryResult.failure(
                destination,
                _redact(f"{type(exc).__name__}: {exc.code} {exc.message}", s.password),
                retryable=400 <= exc.code < 500,
                status_code=exc.code,
            )
        except aiosmtplib.SMTPNotSupported as exc:
            # e.g. STARTTLS required but not offered: configuration, not a hiccup.
            return DeliveryResult.failure(destination, _describe(exc), retryable=False)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) and not str(exc):
                error = f"SMTP timed out after {s.timeout:g}s"
            else:
                error = _redact(_describe(exc), s.password)
            return DeliveryResult.failure(destination, error, retryable=True)
        return DeliveryResult.success(destination, reply=reply)

    async def _write_outbox(
        self, message: EmailMessage, delivery: Delivery, destination: str
    ) -> DeliveryResult:
        assert self.outbox_dir is not None
        target = self.outbox_dir / outbox_file_name(delivery.idempotency_key)
        data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        try:
            await asyncio.to_thread(_atomic_write, target, data)
        except OSError as exc:
            return DeliveryResult.failure(destination, _describe(exc), retryable=True)
        return DeliveryResult.success(destination, reply=f"written {target.name}")


def build_email(delivery: Delivery, *, from_address: str, now: datetime) -> EmailMessage:
    address = delivery.address.strip()
    if _CONTROL.search(address) or parseaddr(address)[1] != address or "@" not in address:
        raise ValueError(f"not a single e-mail address: {clean_header(address)[:200]!r}")
    try:
        to = Address(display_name=clean_header(delivery.recipient), addr_spec=address)
    except (ValueError, IndexError, email.errors.MessageError) as exc:
        raise ValueError(f"invalid e-mail address {address!r}: {exc}") from None
    domain = parseaddr(from_address)[1].rpartition("@")[2] or "opsflow.local"
    digest = hashlib.sha256(delivery.idempotency_key.encode()).hexdigest()[:40]
    message = EmailMessage()
    message["From"] = clean_header(from_address)
    message["To"] = to
    message["Subject"] = clean_header(delivery.subject or "", max_chars=MAX_SUBJECT_CHARS)
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = f"<{digest}@{clean_header(domain)}>"
    message["X-OpsFlow-Idempotency-Key"] = clean_header(delivery.idempotency_key)
    message["X-OpsFlow-Notification-Id"] = str(delivery.notification_id)
    if delivery.event:
        message["X-OpsFlow-Event"] = clean_header(delivery.event)
    # RFC 3834: tells vacation responders not to answer.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(delivery.body or "")
    if delivery.html_body:
        message.add_alternative(delivery.html_body, subtype="html")
    return message


def outbox_file_name(idempotency_key: str) -> str:
    """``<key>.eml`` for plain keys, a digest otherwise: never a path, never a hidden file."""
    if _SAFE_FILE_NAME.fullmatch(idempotency_key):
        return f"{idempotency_key}.eml"
    return hashlib.sha256(idempotency_key.encode()).hexdigest() + ".eml"


def _atomic_write(target: Path, data: bytes) -> None:
    """Readers (and a mail catcher) see the old file or the whole new one, never half."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".eml")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- HTTP


class _HttpSender:
    """POSTs with a capped response read, one overall timeout and the shared classification.

    Uses the caller's ``httpx.AsyncClient`` when given (one connection pool for the
    process) or owns one. Redirects are never followed.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        client: httpx.AsyncClient | None,
        timeout: float,
        max_response_bytes: int,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.clock = clock
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._owned = client is None
        self.client = client if client is not None else httpx.AsyncClient()

    async def aclose(self) -> None:
        if self._owned:
            await self.client.aclose()

    async def post(
        self,
        url: str,
        *,
        content: bytes,
        headers: Mapping[str, str],
        destination: str,
        secrets: tuple[str | None, ...] = (),
    ) -> DeliveryResult:
        try:
            validate_url(url)
        except ValueError as exc:
            return DeliveryResult.failure(destination, str(exc), retryable=False)
        safe_headers = {
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",  # the read cap counts the bytes that arrive
            **{clean_header(k): clean_header(v) for k, v in headers.items()},
        }
        hide = (url, *_url_secrets(url), *secrets)
        try:
            async with asyncio.timeout(self.timeout):
                async with self.client.stream(
                    "POST",
                    url,
                    content=content,
                    headers=safe_headers,
                    timeout=self.timeout,
                    follow_redirects=False,
                ) as response:
                    raw = await self._read(response)
        except (TimeoutError, httpx.TimeoutException):
            return DeliveryResult.failure(
                destination, f"timed out after {self.timeout:g}s", retryable=True
            )
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            return DeliveryResult.failure(
                destination, _redact(_describe(exc), *hide), retryable=False
            )
        except (httpx.TransportError, OSError) as exc:
            return DeliveryResult.failure(
                destination, _redact(_describe(exc), *hide), retryable=True
            )
        except httpx.HTTPError as exc:
            return DeliveryResult.failure(
                destination, _redact(_describe(exc), *hide), retryable=True
            )
        text = raw.decode("utf-8", "replace")
        ok, retryable = classify_status(response.status_code)
        if ok:
            return DeliveryResult.success(destination, status_code=response.status_code, reply=text)
        retry_after = None
        if response.status_code in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"), self.clock.now())
        reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        if 300 <= response.status_code < 400:
            reason += " (redirects are not followed)"
        snippet = _redact(" ".join(text.split())[:500], *hide)
        return DeliveryResult.failure(
            destination,
            f"{reason}: {snippet}" if snippet else reason,
            retryable=retryable,
            status_code=response.status_code,
            reply=snippet,
            retry_after=retry_after,
        )

    async def _read(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            room = self.max_response_bytes - size
            chunks.append(chunk[:room])
            size += min(len(chunk), room)
            if size >= self.max_response_bytes:
                break  # the rest is not read: closing the stream drops the connection
        return b"".join(chunks)


def _json_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(to_jsonable(payload), separators=(",", ":"), ensure_ascii=False).encode()


class _HttpChannel:
    def __init__(
        self,
        *,
        clock: Clock,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._http = _HttpSender(
            clock=clock, client=client, timeout=timeout, max_response_bytes=max_response_bytes
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this channel created it (a shared one is left open)."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


class WebhookChannel(_HttpChannel):
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
        body = _json_bytes(delivery.payload)
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


class SlackChannel(_HttpChannel):
    """Slack incoming webhooks: ``text`` (notification fallback) plus Block Kit blocks.

    The header is ``delivery.subject`` (or ``payload["title"]``), the section is
    ``delivery.body`` (Slack mrkdwn, already escaped by the SLACK templates) and the context
    line shows ``payload`` facts: priority, status and a link.
    """

    channel = Channel.SLACK

    def destination_for(self, delivery: Delivery) -> str:
        return f"slack:{url_origin(delivery.address)}"

    async def send(self, delivery: Delivery) -> DeliveryResult:
        body = _json_bytes(slack_message(delivery))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": delivery.idempotency_key,
            "X-OpsFlow-Delivery": delivery.idempotency_key,
        }
        return await self._http.post(
            delivery.address,
            content=body,
            headers=headers,
            destination=self.destination_for(delivery),
        )


def slack_escape(text: str) -> str:
    """Slack's three control characters; anything else is literal in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(delivery: Delivery) -> dict[str, Any]:
    """The incoming-webhook JSON for a delivery (limits: header 150, section 3000)."""
    facts = delivery.payload
    task = facts.get("task") if isinstance(facts.get("task"), Mapping) else {}

    def fact(name: str) -> str:
        value = facts.get(name)
        if value is None and isinstance(task, Mapping):
            value = task.get(name)
        return "" if value is None else clean_header(str(value))

    title = clean_header(delivery.subject or "") or fact("title") or "OpsFlow notification"
    text = delivery.body.strip() or slack_escape(title)
    context: list[str] = []
    for label, name in (("Priority", "priority"), ("Status", "status")):
        if value := fact(name):
            context.append(f"*{label}:* {slack_escape(value)}")
    link = fact("link") or fact("url")
    if link:
        try:
            validate_url(link)
        except ValueError:
            link = ""
    if link:
        context.append(f"<{slack_escape(link)}|Open in OpsFlow>")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(title, 150), "emoji": True},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, 3000)}},
    ]
    if context:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " | ".join(context)}]}
        )
    return {"text": _clip(text, 3000), "blocks": blocks}


# --------------------------------------------------------------------------- SMS


class SmsProvider(Protocol):
    destination: str
    """Circuit-breaker key of the provider."""

    async def send(self, to: str, text: str, idempotency_key: str) -> DeliveryResult: ...


@dataclass(frozen=True)
class SentSms:
    to: str
    text: str
    idempotency_key: str


class RecordingSmsProvider:
    """Keeps messages in memory; for tests, demos and embedded mode without a provider.

    Like a real provider it drops a repeated idempotency key (answers success without a
    second message). ``fail_next(n)`` makes the next ``n`` sends fail (retryable).
    """

    destination = "sms:recording"

    def __init__(self) -> None:
        self.sent: list[SentSms] = []
        self._seen: set[str] = set()
        self._failures = 0
        self._failure_retryable = True
        self.calls = 0

    def fail_next(self, count: int, *, retryable: bool = True) -> None:
        self._failures = count
        self._failure_retryable = retryable

    async def send(self, to: str, text: str, idempotency_key: str) -> DeliveryResult:
        self.calls += 1
        if self._failures > 0:
            self._failures -= 1
            return DeliveryResult.failure(
                self.destination, "simulated provider failure", retryable=self._failure_retryable
            )
        if idempotency_key in self._seen:
            return DeliveryResult.success(self.destination, reply="duplicate ignored")
        self._seen.add(idempotency_key)
        self.sent.append(SentSms(to, text, idempotency_key))
        return DeliveryResult.success(self.destination, reply=f"queued #{len(self.sent)}")


class HttpSmsProvider:
    """A generic HTTP SMS gateway: POST ``{"to": ..., "text": ...}`` as JSON (or a form)
    to one URL, with an optional bearer token or basic auth and an ``Idempotency-Key``."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        client: httpx.AsyncClient | None = None,
        token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        encoding: Literal["json", "form"] = "json",
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        extra_fields: Mapping[str, str] | None = None,
    ) -> None:
        validate_url(url)
        if token and basic_auth:
            raise ValueError("use a bearer token or basic auth, not both")
        self.url = url
        self.destination = f"sms:{url_origin(url)}"
        self._token = token
        self._basic = basic_auth
        self._encoding = encoding
        self._extra = dict(extra_fields or {})
        self._http = _HttpSender(
            clock=clock, client=client, timeout=timeout, max_response_bytes=max_response_bytes
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, to: str, text: str, idempotency_key: str) -> DeliveryResult:
        fields = {**self._extra, "to": to, "text": text}
        headers = {"Idempotency-Key": idempotency_key}
        if self._encoding == "json":
            content = json.dumps(fields, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        else:
            content = urlencode(fields).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        elif self._basic:
            pair = f"{self._basic[0]}:{self._basic[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        secrets = (self._token, self._basic[1] if self._basic else None)
        return await self._http.post(
            self.url,
            content=content,
            headers=headers,
            destination=self.destination,
            secrets=secrets,
        )


class SmsChannel:
    """SMS through an :class:`SmsProvider`, split by :func:`segment_sms`.

    Each segment is its own provider call with its own idempotency key (``key`` for a
    single message, ``key:1/3``... for parts), sent in order; the first failure stops and
    is the result. A retry re-sends every part with the same keys, so a provider that
    honours them does not repeat the parts that already went out.
    """

    channel = Channel.SMS

    def __init__(self, provider: SmsProvider, *, max_segments: int = 3) -> None:
        self.provider = provider
        self.max_segments = max_segments

    def destination_for(self, delivery: Delivery) -> str:
        return self.provider.destination

    async def send(self, delivery: Delivery) -> DeliveryResult:
        destination = self.destination_for(delivery)
        phone = normalise_phone(delivery.address)
        if phone is None:
            return DeliveryResult.failure(
                destination,
                f"not a phone number: {clean_header(delivery.address)[:40]!r}",
                retryable=False,
            )
        segments = segment_sms(
            delivery.body or delivery.subject or "", max_segments=self.max_segments
        )
        if not segments:
            return DeliveryResult.failure(destination, "empty SMS text", retryable=False)
        key = clean_header(delivery.idempotency_key)
        result = DeliveryResult.success(destination)
        for index, segment in enumerate(segments, 1):
            part_key = key if len(segments) == 1 else f"{key}:{index}/{len(segments)}"
            result = await self.provider.send(phone, segment, part_key)
            if not result.ok:
                if len(segments) > 1:
                    return DeliveryResult.failure(
                        result.destination,
                        f"part {index}/{len(segments)}: {result.error}",
                        retryable=result.retryable,
                        status_code=result.status_code,
                        reply=result.reply,
                        retry_after=result.retry_after,
                    )
                return result
        return result


def normalise_phone(value: str) -> str | None:
    """``+4915112345678`` from ``+49 151 1234-5678``; None when it is not a phone number."""
    compact = _PHONE_NOISE.sub("", value)
    return compact if _PHONE.fullmatch(compact) else None
