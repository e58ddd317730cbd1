"""POSTing to a destination: a capped response read, one overall timeout, redirects never
followed, and the one classification of HTTP answers shared by the HTTP channels."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Self

import httpx

from opsflow.clock import Clock
from opsflow.kit.jsonable import to_jsonable
from opsflow.notifications.channels.base import (
    DEFAULT_TIMEOUT,
    MAX_RESPONSE_BYTES,
    USER_AGENT,
    DeliveryResult,
    clean_header,
    describe_error,
    redact,
)
from opsflow.notifications.channels.urls import parse_url, url_secrets, validate_url


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


class HttpSender:
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
        hide = (url, *url_secrets(url), *secrets)
        try:
            async with asyncio.timeout(self.timeout):
                async with self.client.stream(
                    "POST",
                    parse_url(url),
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
                destination, redact(describe_error(exc), *hide), retryable=False
            )
        except (httpx.TransportError, OSError) as exc:
            return DeliveryResult.failure(
                destination, redact(describe_error(exc), *hide), retryable=True
            )
        except httpx.HTTPError as exc:
            return DeliveryResult.failure(
                destination, redact(describe_error(exc), *hide), retryable=True
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
        snippet = redact(" ".join(text.split())[:500], *hide)
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


def json_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(to_jsonable(payload), separators=(",", ":"), ensure_ascii=False).encode()


class HttpChannel:
    def __init__(
        self,
        *,
        clock: Clock,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._http = HttpSender(
            clock=clock, client=client, timeout=timeout, max_response_bytes=max_response_bytes
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this channel created it (a shared one is left open)."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()
