"""Tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT) costs nothing: neither the OpenTelemetry SDK
nor an exporter or instrumentation is imported (the API package alone comes with FastAPI),
no trace context is stored and a span is one shared no-op."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from opsflow.observability import tracing

PROGRAM = """
import sys
from opsflow.app import create_app
from opsflow.config import Settings
settings = Settings(database_url=sys.argv[1], data_dir=sys.argv[2])
create_app(settings)
from opsflow.workers.celery_app import create_celery_app
create_celery_app(settings)
heavy = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation")
loaded = sorted(m for m in sys.modules if m.startswith(heavy))
assert not loaded, loaded
"""


def test_no_sdk_exporter_or_instrumentation_is_imported_without_an_endpoint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, f"sqlite+aiosqlite:///{tmp_path}/o.db", str(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_off_a_span_is_a_shared_no_op_and_no_context_is_stored() -> None:
    assert not tracing.enabled()
    assert tracing.span("opsflow.relay", "00-" + "1" * 32 + "-" + "2" * 16 + "-01") is (
        tracing.span("opsflow.deliver")
    )
    assert tracing.traceparent() is None
