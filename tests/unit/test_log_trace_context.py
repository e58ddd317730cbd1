"""Log lines carry the current OpenTelemetry span's trace and span ids, and nothing when no
span is active."""

from __future__ import annotations

import pytest

from opsflow.observability.logging import add_trace_context

trace = pytest.importorskip("opentelemetry.trace")

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331


def test_ids_of_the_active_span() -> None:
    context = trace.SpanContext(TRACE_ID, SPAN_ID, is_remote=False)
    with trace.use_span(trace.NonRecordingSpan(context)):
        event = add_trace_context(None, "info", {"event": "request"})
    assert event["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert event["span_id"] == "b7ad6b7169203331"


def test_nothing_without_a_span() -> None:
    assert add_trace_context(None, "info", {"event": "request"}) == {"event": "request"}
