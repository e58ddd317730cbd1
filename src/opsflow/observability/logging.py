"""structlog configuration: JSON lines with request context bound per request.

Query strings never reach a log with a secret in them: the access log shows them through
:func:`redact_query`, and a filter on uvicorn's own loggers (which name the path and query of
each WebSocket handshake) does the same to their lines. The values of parameters named like
a token, secret, password, key, signature, code or session become ``[REDACTED]``.
"""

from __future__ import annotations

import logging
import re
import sys
from urllib.parse import parse_qsl, urlencode

import structlog


def add_trace_context(
    _logger: object, _method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """`trace_id` and `span_id` of the current OpenTelemetry span, when OpenTelemetry is
    installed and a span is recording; nothing otherwise."""
    if _current_span is None:
        return event
    context = _current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", f"{context.trace_id:032x}")
        event.setdefault("span_id", f"{context.span_id:016x}")
    return event


try:  # OpenTelemetry is optional
    from opentelemetry.trace import get_current_span as _current_span
except ImportError:  # pragma: no cover - depends on the installation
    _current_span = None  # type: ignore[assignment]


def configure(level: str = "INFO", json_logs: bool = True) -> None:
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    install_redaction()


REDACTED = "[REDACTED]"
_SECRET_NAME = re.compile(
    r"token|secret|passw|api[_-]?key|^key$|signature|^sig$|^code$|credential|session",
    re.IGNORECASE,
)


def redact_query(raw: bytes | str) -> str | None:
    """The query string for a log line, secret values replaced (None when there is none)."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    if not text:
        return None
    pairs = parse_qsl(text, keep_blank_values=True)
    if not pairs:
        return REDACTED  # not name=value pairs: nothing tells what it holds
    shown = [(name, REDACTED if _SECRET_NAME.search(name) else value) for name, value in pairs]
    return urlencode(shown, safe="[]")


_QUERY_IN_TEXT = re.compile(r"(?P<path>/[^\s?\"']*)\?(?P<query>[^\s\"']*)")


def redact_text(text: str) -> str:
    """Every ``/path?query`` in a log message, its query redacted."""
    return _QUERY_IN_TEXT.sub(lambda m: f"{m['path']}?{redact_query(m['query']) or ''}", text)


class RedactQueries(logging.Filter):
    """Redacts query strings in the arguments of a standard-library log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_text(arg) if isinstance(arg, str) and "?" in arg else arg
                for arg in record.args
            )
        if isinstance(record.msg, str) and "?" in record.msg and not record.args:
            record.msg = redact_text(record.msg)
        return True


_REDACTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def install_redaction() -> None:
    for name in _REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQueries) for f in logger.filters):
            logger.addFilter(RedactQueries())


def get_logger(name: str = "opsflow") -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
