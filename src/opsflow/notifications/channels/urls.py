"""URL safety for everything the notifier posts to: only absolute http(s) URLs, a
breaker key without path secrets, and the parts of a URL never to write into a record."""

from __future__ import annotations

from functools import lru_cache

import httpx

from opsflow.notifications.channels.base import CONTROL_CHARS


def validate_url(url: str) -> str:
    """The URL if it is absolute http(s) with a host and no whitespace; ValueError otherwise.

    Other schemes (``file:``, ``gopher:``, ``ftp:``) are refused outright. Whether private
    addresses are acceptable is a policy of whoever registers the URL, not of the sender:
    loopback targets are legitimate in embedded mode.
    """
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise ValueError("URL must be a non-empty string of at most 2048 characters")
    if CONTROL_CHARS.search(url) or any(ch.isspace() for ch in url):
        raise ValueError("URL must not contain whitespace or control characters")
    try:
        parsed = parse_url(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError("only http and https URLs are allowed")
    if not parsed.host:
        raise ValueError("URL has no host")
    return url


@lru_cache(maxsize=4096)
def parse_url(url: str) -> httpx.URL:
    """The URL parsed, once per process: a delivery validates it, keys its breaker by its
    origin, redacts its secrets and posts to it, and a batch posts to the same few URLs.
    (httpx takes an ``httpx.URL`` without parsing it again; it is immutable.)"""
    return httpx.URL(url)


@lru_cache(maxsize=4096)
def url_origin(url: str) -> str:
    """``scheme://host:port`` of a URL: the circuit-breaker key, free of path secrets
    (a Slack webhook URL *is* its secret)."""
    try:
        parsed = parse_url(url)
    except httpx.InvalidURL:
        return "invalid-url"
    if not parsed.host:
        return "invalid-url"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{parsed.scheme}://{host.lower()}:{port}"


def url_secrets(url: str) -> tuple[str, ...]:
    """Parts of a URL that may be credentials (a Slack hook's path, a ``?token=``)."""
    parsed = parse_url(url)
    path = parsed.path if len(parsed.path) > 1 else ""
    query = parsed.query.decode("ascii", "replace")
    return tuple(part for part in (path, query, parsed.password) if part)
