"""Query strings in logs: secret values become [REDACTED], the rest stays readable."""

from __future__ import annotations

import logging

import pytest

from opsflow.observability.logging import RedactQueries, redact_query, redact_text


@pytest.mark.parametrize(
    ("query", "logged"),
    [
        (b"", None),
        (b"page=2&q=db", "page=2&q=db"),
        (b"token=abc", "token=[REDACTED]"),
        (b"access_token=abc&page=2", "access_token=[REDACTED]&page=2"),
        (
            b"refresh_token=a&password=b&api_key=c&signature=d",
            "refresh_token=[REDACTED]&password=[REDACTED]&api_key=[REDACTED]&signature=[REDACTED]",
        ),
        (b"Token=abc", "Token=[REDACTED]"),
        (b"justatoken", "justatoken=[REDACTED]"),
    ],
)
def test_redact_query(query: bytes, logged: str | None) -> None:
    assert redact_query(query) == logged


def test_uvicorn_handshake_lines_are_redacted() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" %d',
        ("127.0.0.1:5000", "/api/v1/ws?token=s3cret&x=1", 404),
        None,
    )
    assert RedactQueries().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "WebSocket /api/v1/ws?token=[REDACTED]&x=1" 404'
    assert redact_text("GET /a?b=1 and /c?password=2") == "GET /a?b=1 and /c?password=[REDACTED]"
