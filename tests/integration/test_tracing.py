"""One trace from an API request to the webhook and e-mail it causes, received for real.

A real `opsflow serve` (engines inside) runs with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at
an OTLP/HTTP receiver on loopback that decodes every ``ExportTraceServiceRequest`` it gets.
The request carries a ``traceparent`` chosen here; the server span, the outbox insert, the
relay's span, the escalation step it planned and fired, the relay of that firing, the
delivery spans and the outgoing webhook request must all belong to it.
"""

from __future__ import annotations

import gzip
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from tests.processes import opsflow_serve
from tests.sinks import SmtpSink

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ADMIN_PASSWORD = "Trace-Admin-Pass-1"
SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    service: str


def _value(pair: KeyValue) -> Any:
    kind = pair.value.WhichOneof("value")
    return getattr(pair.value, kind) if kind else None


class Loopback:
    """A threaded HTTP server on loopback: OTLP/HTTP trace exports decoded into `spans`,
    any other POST recorded in `requests` (the webhook destination)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    owner._export(body)
                    answer = ExportTraceServiceResponse().SerializeToString()
                    content_type = "application/x-protobuf"
                else:
                    with owner.lock:
                        owner.requests.append((self.path, dict(self.headers.items()), body))
                    answer, content_type = b"{}", "application/json"
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _export(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        decoded = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    decoded.append(
                        Span(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes={kv.key: _value(kv) for kv in span.attributes},
                            service=str(resource.get("service.name")),
                        )
                    )
        with self.lock:
            self.spans.extend(decoded)

    def __enter__(self) -> Loopback:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    with Loopback() as server:
        yield server


def _until(
    what: str, found: Callable[[], bool], seconds: float = 60, seen: Callable[[], object] = str
) -> None:
    deadline = time.monotonic() + seconds
    while not found():
        assert time.monotonic() < deadline, f"not seen within {seconds} s: {what}; {seen()}"
        time.sleep(0.1)  # polling for what the server sends, not waiting on a deadline


def test_one_trace_from_request_to_webhook_and_email(
    database_url: str,
    tmp_path: Path,
    loopback: Loopback,
    smtp: tuple[SmtpSink, int],
) -> None:
    sink, smtp_port = smtp
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    with (
        opsflow_serve(
            tmp_path,
            database_url,
            ADMIN_PASSWORD,
            OTEL_EXPORTER_OTLP_ENDPOINT=loopback.url,
            OTEL_SERVICE_NAME="opsflow-test",
            OTEL_BSP_SCHEDULE_DELAY="100",
            OPSFLOW_SMTP_HOST="127.0.0.1",
            OPSFLOW_SMTP_PORT=str(smtp_port),
            OPSFLOW_SMTP_STARTTLS="false",
            OPSFLOW_ENGINE_INTERVAL_SECONDS="0.2",
        ) as base,
        httpx.Client(base_url=f"{base}/api/v1", timeout=30) as http,
    ):
        login = http.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        person = http.post(
            "/auth/register",
            json={
                "email": "traced.person@example.com",
                "username": "traced.person",
                "password": "Traced-Pass-1234",
                "full_name": "Traced Person",
                "role": "developer",
            },
            headers=admin,
        )
        assert person.status_code == 201, person.text
        # pages the assignee by e-mail as soon as a task is created: the e-mail goes out
        # through the escalation engine, the relay of `escalation.fired` and the delivery
        policy = http.post(
            "/escalation-policies",
            json={
                "name": "page at once",
                "trigger": "created",
                "steps": [{"delay_minutes": 0, "targets": ["assignee"], "channels": ["email"]}],
            },
            headers=admin,
        )
        assert policy.status_code == 201, policy.text
        hook = http.post(
            "/webhooks",
            json={"name": "traced", "url": f"{loopback.url}/hook", "event_types": ["task.*"]},
            headers=admin,
        )
        assert hook.status_code == 201, hook.text
        created = http.post(
            "/tasks",
            json={"title": "Traced task", "assigned_to": person.json()["id"]},
            headers={**admin, "traceparent": f"00-{trace_id}-{caller_span}-01"},
        )
        assert created.status_code == 201, created.text

        _until("the webhook delivery", lambda: bool(loopback.requests))
        _until("the e-mail", lambda: bool(sink.received))
        path, headers, _ = loopback.requests[0]
        assert path == "/hook"
        # the outgoing request carries the trace on to the receiver
        traceparent = {k.lower(): v for k, v in headers.items()}["traceparent"]
        assert traceparent.split("-")[1] == trace_id

        def ours() -> list[Span]:
            with loopback.lock:
                return [s for s in loopback.spans if s.trace_id == trace_id]

        def has(check: Callable[[Span], bool]) -> bool:
            return any(check(s) for s in ours())

        wanted: dict[str, Callable[[Span], bool]] = {
            "server span of POST /tasks": lambda s: (
                s.kind == SPAN_KIND_SERVER and s.parent_span_id == caller_span
            ),
            "outbox insert": lambda s: (
                "INSERT INTO outbox_events" in str(s.attributes.get("db.statement", ""))
            ),
            "relay span": lambda s: (
                s.name == "opsflow.relay" and s.attributes["opsflow.event_type"] == "task.created"
            ),
            "escalation step fired": lambda s: s.name == "opsflow.escalation.fire",
            "relay of the firing": lambda s: (
                s.name == "opsflow.relay"
                and s.attributes["opsflow.event_type"] == "escalation.fired"
            ),
            "webhook delivery": lambda s: (
                s.name == "opsflow.deliver" and s.attributes["opsflow.channel"] == "WEBHOOK"
            ),
            "e-mail delivery": lambda s: (
                s.name == "opsflow.deliver" and s.attributes["opsflow.channel"] == "EMAIL"
            ),
            "outgoing webhook request": lambda s: s.kind == SPAN_KIND_CLIENT and s.name == "POST",
        }
        for what, check in wanted.items():
            _until(what, lambda check=check: has(check), seen=lambda: _names(loopback.spans))  # type: ignore[misc]

    spans = ours()
    assert {s.service for s in spans} == {"opsflow-test"}
    by_id = {s.span_id: s for s in spans}
    server = next(s for s in spans if wanted["server span of POST /tasks"](s))
    relay = next(s for s in spans if wanted["relay span"](s))
    fired = next(s for s in spans if wanted["escalation step fired"](s))
    relay_fired = next(s for s in spans if wanted["relay of the firing"](s))
    email = next(s for s in spans if wanted["e-mail delivery"](s))
    webhook = next(s for s in spans if wanted["webhook delivery"](s))
    # request -> relay -> (webhook delivery | escalation fired -> relay -> e-mail delivery)
    assert relay.parent_span_id == server.span_id
    assert webhook.parent_span_id == relay.span_id
    assert fired.parent_span_id == relay.span_id
    assert relay_fired.parent_span_id == fired.span_id
    assert email.parent_span_id == relay_fired.span_id
    assert _root_of(email, by_id) == server
    print(
        f"trace {trace_id}: {len(spans)} spans, "
        f"{sorted({s.name for s in spans if s.name.startswith('opsflow.')})}"
    )


def _names(spans: list[Span]) -> list[tuple[str, str, str]]:
    return [(s.trace_id[:8], s.name, str(s.attributes.get("db.statement", ""))[:40]) for s in spans]


def _root_of(span: Span, by_id: dict[str, Span]) -> Span:
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
    return span
