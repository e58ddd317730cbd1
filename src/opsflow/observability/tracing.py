"""OpenTelemetry tracing, on only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

Unset (the default), this module imports nothing of OpenTelemetry: :func:`traceparent`
returns None and :func:`span` returns one shared no-op context manager, so the request path
pays a global read per call. Set, :func:`setup` (called once per process by
`composition.build_context`) installs a tracer provider that sends spans over OTLP/HTTP in
batches and, through :func:`instrument_engine`, :func:`instrument_app` and
:func:`instrument_celery`, instruments the database engine, the ASGI application and Celery.
Outgoing webhook, Slack and SMS requests are client spans (:func:`client_span`) and carry
their ``traceparent``. The packages come with the ``otel`` extra
(``pip install 'opsflow[otel]'``).

One trace runs from an API request to the delivery it causes, across transactions and
processes: every outbox event stores the W3C ``traceparent`` of the span that wrote it
(`events.outbox.emit`); the relay handles each event in a span continuing it; the rows a
consumer plans (notifications, webhook deliveries, escalation steps) store the relay span's
``traceparent``; the escalation engine fires a step, and the delivery engine sends a
notification, in a span continuing the row's. Spans with no parent are sampled only when
they begin a unit of work (a request, a Celery job, an OpsFlow span): the queries an idle
engine round runs start no trace of their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

    from opsflow.config import Settings

_NOOP: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
_tracer: Any = None  # the process's opentelemetry Tracer once `setup` ran with an endpoint
_provider: Any = None


def enabled() -> bool:
    return _tracer is not None


def setup(settings: Settings) -> bool:
    """Configure tracing for this process from `settings` (once; later calls do nothing).
    Returns whether tracing is on."""
    global _tracer, _provider
    if _tracer is not None:
        return True
    if not settings.otel_endpoint:
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.otel_service_name}),
        sampler=_sampler(),
    )
    endpoint = settings.otel_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    _provider = provider
    _tracer = provider.get_tracer("opsflow")
    return True


def _sampler() -> Any:
    """Parent-based; a span without a parent is kept when it begins a unit of work (server,
    producer and consumer spans, OpsFlow's own), dropped otherwise (a query outside any of
    them)."""
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
    )
    from opentelemetry.trace import SpanKind

    # a request served; a Celery job sent (beat's tick: the worker's run continues it) or run
    units_of_work = (SpanKind.SERVER, SpanKind.PRODUCER, SpanKind.CONSUMER)

    class UnitsOfWork(Sampler):
        def should_sample(  # type: ignore[no-untyped-def]
            self,
            parent_context,
            trace_id,
            name,
            kind=None,
            attributes=None,
            links=None,
            trace_state=None,
        ) -> SamplingResult:
            keep = kind in units_of_work or name.startswith("opsflow.")
            decision = Decision.RECORD_AND_SAMPLE if keep else Decision.DROP
            return SamplingResult(decision, attributes if keep else None)

        def get_description(self) -> str:
            return "OpsFlowUnitsOfWork"

    return ParentBased(root=UnitsOfWork())


def instrument_engine(engine: AsyncEngine) -> None:
    """Spans for the statements of this database engine (when tracing is on)."""
    if _tracer is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # The instrumentation declares SQLAlchemy < 2.1 while OpsFlow runs 2.1: the engine events
    # it listens to are the same, so its version check is skipped.
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=_provider, skip_dep_check=True
    )


def instrument_app(app: FastAPI) -> None:
    """A server span per request of this application (when tracing is on); an incoming
    ``traceparent`` header is continued."""
    if _tracer is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        excluded_urls="/metrics,/health,/ready",
        exclude_spans=["receive", "send"],  # one span per request, not one per ASGI message
    )


def instrument_celery() -> None:
    """A consumer span per Celery job run in this process (when tracing is on)."""
    if _tracer is None:
        return
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=_provider)


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span; None when tracing is off or no span is
    recording."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def span(
    name: str,
    parent: str | None = None,
    *,
    consumer: bool = False,
    attributes: Mapping[str, str | int] | None = None,
) -> contextlib.AbstractContextManager[None]:
    """A span named `name` (prefix it ``opsflow.``) around a block, continuing the trace of
    `parent` (a stored ``traceparent``) when given, else the current span; no-op when
    tracing is off."""
    if _tracer is None:
        return _NOOP
    return _span(name, parent, consumer, attributes)


@contextlib.contextmanager
def _span(
    name: str, parent: str | None, consumer: bool, attributes: Mapping[str, str | int] | None
) -> Iterator[None]:
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract({"traceparent": parent}) if parent else None
    kind = SpanKind.CONSUMER if consumer else SpanKind.INTERNAL
    with _tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=dict(attributes or {})
    ):
        yield


class ClientSpan:
    """The span of an outgoing request: the ``traceparent`` to send, and the answer's
    status to record."""

    def __init__(self, span: Any, traceparent: str) -> None:
        self._span = span
        self.traceparent = traceparent

    def answered(self, status: int) -> None:
        self._span.set_attribute("http.response.status_code", status)
        if status >= 400:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR))


def client_span(method: str, url: str) -> contextlib.AbstractContextManager[ClientSpan | None]:
    """A client span named `method` around an outgoing request to `url`, a child of the
    current span; None (and nothing recorded) when tracing is off. The span names the
    destination's origin only: a URL's path or query can be its credential (a Slack hook)."""
    if _tracer is None:
        return _NOOP
    return _client_span(method, url)


@contextlib.contextmanager
def _client_span(method: str, url: str) -> Iterator[ClientSpan]:
    from urllib.parse import urlsplit

    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parts = urlsplit(url)
    attributes = {"http.request.method": method, "url.scheme": parts.scheme}
    if parts.hostname:
        attributes["server.address"] = parts.hostname
    with _tracer.start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes) as span:
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        yield ClientSpan(span, carrier.get("traceparent", ""))


def shutdown() -> None:
    """Send the spans still buffered (a process about to exit)."""
    if _provider is not None:
        _provider.force_flush()
