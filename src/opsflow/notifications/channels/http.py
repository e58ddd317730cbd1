"""POSTing to a destination: a capped response read, one overall timeout, redirects never
followed, and the one classification of HTTP answers shared by the HTTP channels."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, Self

import httpcore
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
from opsflow.observability import tracing


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


# httpx's client defaults, kept when the client was replaced by its transport layer
_POOL_LIMITS: dict[str, Any] = {
    "max_connections": 100,
    "max_keepalive_connections": 20,
    "keepalive_expiry": 5.0,
}


@lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """Certificates checked against certifi's roots (what httpx's client does), built once
    per process: loading the roots takes longer than a delivery."""
    return httpx.create_ssl_context()


@lru_cache(maxsize=4096)
def _target(url: str) -> httpcore.URL:
    """The URL as the transport takes it (IDNA host, percent-encoded path and query)."""
    parsed = parse_url(url)
    return httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )


def _proxy_pool(proxy: str) -> httpcore.AsyncHTTPProxy:
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    parsed = httpx.URL(proxy)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"unsupported proxy {parsed.scheme}://{parsed.host} (http or https only)")
    auth = (parsed.username, parsed.password) if parsed.username else None
    return httpcore.AsyncHTTPProxy(
        proxy_url=httpcore.URL(
            scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=b"/"
        ),
        proxy_auth=auth,
        ssl_context=_ssl_context(),
        proxy_ssl_context=_ssl_context() if parsed.scheme == "https" else None,
        **_POOL_LIMITS,
    )


class Connections:
    """The keep-alive connection pools outgoing POSTs (webhooks, Slack, SMS gateways) use.

    Built on httpcore, the transport under httpx's client: a delivery needs none of the
    client's cookie jar, auth and redirect flows or request and response models, and leaving
    them out takes about a third off the CPU of a POST (`docs/benchmarks.md`). What the client
    did besides is done here: certificates are checked against certifi's roots, and the
    proxies the environment names are used (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``,
    lower or upper case, with ``NO_PROXY``), read once, when the pools are made. Only http and
    https proxies are supported; a delivery through another kind fails, not retried.
    """

    def __init__(self) -> None:
        self._direct = httpcore.AsyncConnectionPool(ssl_context=_ssl_context(), **_POOL_LIMITS)
        self._proxies = urllib.request.getproxies_environment()
        self._via: dict[str, httpcore.AsyncHTTPProxy] = {}

    def pool_for(self, url: httpx.URL) -> httpcore.AsyncConnectionPool:
        """The pool a request to `url` goes through; ValueError for an unusable proxy."""
        if not self._proxies:
            return self._direct
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        # NO_PROXY's matching as the standard library does it (documented, missing in stubs)
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if not proxy or bypass(url.host, self._proxies):
            return self._direct
        if proxy not in self._via:
            self._via[proxy] = _proxy_pool(proxy)
        return self._via[proxy]

    async def aclose(self) -> None:
        for pool in (self._direct, *self._via.values()):
            await pool.aclose()


class HttpSender:
    """POSTs with a capped response read, one overall timeout and the shared classification.

    Uses the caller's :class:`Connections` when given (one set of pools for the process) or
    owns one. Redirects are never followed. With tracing on, each POST is a client span and
    carries its ``traceparent``.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        connections: Connections | None,
        timeout: float,
        max_response_bytes: int,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.clock = clock
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._owned = connections is None
        self.connections = connections if connections is not None else Connections()
        self._extensions = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)}

    async def aclose(self) -> None:
        if self._owned:
            await self.connections.aclose()

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
            pool = self.connections.pool_for(parse_url(url))
        except ValueError as exc:
            return DeliveryResult.failure(destination, str(exc), retryable=False)
        sent = [
            (b"User-Agent", USER_AGENT.encode()),
            (b"Accept", b"*/*"),
            (b"Accept-Encoding", b"identity"),  # the read cap counts the bytes that arrive
            *((clean_header(k).encode(), clean_header(v).encode()) for k, v in headers.items()),
        ]
        hide = (url, *url_secrets(url), *secrets)
        with tracing.client_span("POST", url) as span:
            if span is not None and span.traceparent:
                sent.append((b"traceparent", span.traceparent.encode()))
            try:
                async with asyncio.timeout(self.timeout):
                    async with pool.stream(
                        "POST",
                        _target(url),
                        headers=sent,
                        content=content,
                        extensions=self._extensions,
                    ) as response:
                        raw = await self._read(response)
            except (TimeoutError, httpcore.TimeoutException):
                return DeliveryResult.failure(
                    destination, f"timed out after {self.timeout:g}s", retryable=True
                )
            except (httpcore.UnsupportedProtocol, httpcore.LocalProtocolError) as exc:
                return DeliveryResult.failure(
                    destination, redact(describe_error(exc), *hide), retryable=False
                )
            except (
                httpcore.NetworkError,
                httpcore.RemoteProtocolError,
                httpcore.ProxyError,
                OSError,
            ) as exc:
                return DeliveryResult.failure(
                    destination, redact(describe_error(exc), *hide), retryable=True
                )
            if span is not None:
                span.answered(response.status)
        return self._result(response, raw, destination, hide)

    def _result(
        self,
        response: httpcore.Response,
        raw: bytes,
        destination: str,
        hide: tuple[str | None, ...],
    ) -> DeliveryResult:
        status = response.status
        text = raw.decode("utf-8", "replace")
        ok, retryable = classify_status(status)
        if ok:
            return DeliveryResult.success(destination, status_code=status, reply=text)
        retry_after = None
        if status in (429, 503):
            value = next((v for k, v in response.headers if k.lower() == b"retry-after"), None)
            retry_after = parse_retry_after(
                value.decode("latin-1") if value is not None else None, self.clock.now()
            )
        phrase = response.extensions.get("reason_phrase", b"").decode("ascii", "ignore")
        reason = f"HTTP {status} {phrase}".strip()
        if 300 <= status < 400:
            reason += " (redirects are not followed)"
        snippet = redact(" ".join(text.split())[:500], *hide)
        return DeliveryResult.failure(
            destination,
            f"{reason}: {snippet}" if snippet else reason,
            retryable=retryable,
            status_code=status,
            reply=snippet,
            retry_after=retry_after,
        )

    async def _read(self, response: httpcore.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_stream():
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
        connections: Connections | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._http = HttpSender(
            clock=clock,
            connections=connections,
            timeout=timeout,
            max_response_bytes=max_response_bytes,
        )

    async def aclose(self) -> None:
        """Close the connections if this channel made them (shared ones are left open)."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()
