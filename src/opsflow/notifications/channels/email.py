"""E-mail: SMTP through aiosmtplib, or ``.eml`` files in an outbox folder when no relay is
configured."""

from __future__ import annotations

import asyncio
import email.errors
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path

import aiosmtplib

from opsflow.clock import Clock
from opsflow.models.enums import Channel
from opsflow.notifications.channels.base import (
    CONTROL_CHARS,
    DEFAULT_TIMEOUT,
    MAX_SUBJECT_CHARS,
    Delivery,
    DeliveryResult,
    clean_header,
    describe_error,
    redact,
)

_SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")


@dataclass(frozen=True)
class SmtpSettings:
    """Where e-mail goes. No ``host``: written to the outbox folder instead.

    The embedded mode needs no mail server: every message is still rendered and kept.
    """

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
                redact(f"{type(exc).__name__}: {exc.code} {exc.message}", s.password),
                retryable=400 <= exc.code < 500,
                status_code=exc.code,
            )
        except aiosmtplib.SMTPNotSupported as exc:
            # e.g. STARTTLS required but not offered: configuration, not a hiccup.
            return DeliveryResult.failure(destination, describe_error(exc), retryable=False)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) and not str(exc):
                error = f"SMTP timed out after {s.timeout:g}s"
            else:
                error = redact(describe_error(exc), s.password)
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
            return DeliveryResult.failure(destination, describe_error(exc), retryable=True)
        return DeliveryResult.success(destination, reply=f"written {target.name}")


def build_email(delivery: Delivery, *, from_address: str, now: datetime) -> EmailMessage:
    address = delivery.address.strip()
    if CONTROL_CHARS.search(address) or parseaddr(address)[1] != address or "@" not in address:
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
