"""SMS: texts split into segments that every handset shows whole, sent through a provider
(a generic HTTP gateway, or one that records messages for tests and embedded mode)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlencode

from opsflow.clock import Clock
from opsflow.models.enums import Channel
from opsflow.notifications.channels.base import (
    CONTROL_CHARS,
    DEFAULT_TIMEOUT,
    MAX_RESPONSE_BYTES,
    Delivery,
    DeliveryResult,
    clean_header,
)
from opsflow.notifications.channels.http import Connections, HttpSender
from opsflow.notifications.channels.urls import url_origin, validate_url

# GSM 03.38: characters that fit a 7-bit SMS (160 per segment); the extension table costs
# two septets each. Anything else makes the message UCS-2 (70 per segment).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
_PHONE_NOISE = re.compile(r"[\s().-]")
_PHONE = re.compile(r"\+?[0-9]{6,15}")


def segment_sms(text: str, *, max_segments: int = 3) -> list[str]:
    """Split a text into SMS segments, at word boundaries, at most ``max_segments``.

    A text that fits one message is sent as it is (160 GSM-7 characters, 70 if it needs
    Unicode). Longer texts become numbered parts (`` (1/2)``), each a full message on its
    own, because not every provider or handset reassembles concatenated SMS. What does
    not fit in ``max_segments`` is cut at a word boundary and ends with ``...``.
    """
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    flat = " ".join(CONTROL_CHARS.sub(" ", text).split())
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
        connections: Connections | None = None,
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
        self._http = HttpSender(
            clock=clock,
            connections=connections,
            timeout=timeout,
            max_response_bytes=max_response_bytes,
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
