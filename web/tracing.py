"""OpenTelemetry tracing, on only when the standard OTEL_* variables ask for it (config.tracing).

Off, nothing of it runs: no middleware, no schema extension. On, each request has a server span
(the ASGI instrumentation) with the GraphQL operation's spans inside it (strawberry's extension)
and a span for each SQL statement (the SQLAlchemy instrumentation: the statement with its
placeholders, never the values), each log line names the trace and span it was written in,
and spans are exported as OTEL_TRACES_EXPORTER says (`otlp`, the default, over HTTP to
OTEL_EXPORTER_OTLP_ENDPOINT; or `console`). No span carries personal data: not the document
(its literals may hold a password), not resolver arguments, not the query string or the path's
token, not the client's address.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Generator
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span
from starlette.middleware import Middleware
from starlette.types import Scope
from strawberry.extensions import LifecycleStep
from strawberry.extensions.tracing import OpenTelemetryExtension

from models import Database
from web.access_log import REDACTED, redact

SERVICE_NAME = "privacy-api"
# Attributes the ASGI instrumentation sets that may hold a token or a person's address.
_ADDRESS_ATTRIBUTES = ("client.address", "net.peer.ip", "http.client_ip", "client.port")
_TARGET_ATTRIBUTES = ("http.target", "url.path", "url.query", "http.url", "url.full")


def _exporter() -> SpanExporter:
    name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower()
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself


def install_provider() -> None:
    """Export spans as the environment says, unless a provider is installed already (a test's,
    or one set up by `opentelemetry-instrument`)."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(_exporter()))
    trace.set_tracer_provider(provider)


def trace_statements(database: Database) -> None:
    """A span for each statement `database` runs, inside the request's trace. A process serves
    one app, so the instrumentation follows the newest one's engine."""
    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    # Its declared range ends before SQLAlchemy 2.1, whose engine events it uses unchanged
    # (tests/test_observability.py::TestTracing shows the spans).
    instrumentor.instrument(engine=database.engine.sync_engine, skip_dep_check=True)


class TraceContext(logging.Filter):
    """Adds `trace_id` and `span_id` (hexadecimal, as trace viewers show them) to a record
    written inside a span, so a log line leads to its trace and back."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        return True


class GraphQLTracing(OpenTelemetryExtension):
    """Strawberry's spans, without the document or any resolver argument."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(arg_filter=lambda _arguments, _info: {}, **kwargs)

    def on_operation(self) -> Generator[None, None, None]:
        steps = super().on_operation()
        next(steps)
        span = self._span_holder[LifecycleStep.OPERATION]
        # Set over the document strawberry records, before the span can be exported.
        span.set_attribute("query", REDACTED)
        try:
            yield
        finally:
            context = self.execution_context
            if context.operation_name:
                span.set_attribute("graphql.operation.name", context.operation_name)
            with contextlib.suppress(RuntimeError):  # no document, or no such operation in it
                span.set_attribute("graphql.operation.type", context.operation_type.value)
            next(steps, None)


def _without_personal_data(span: Span, scope: dict[str, Any]) -> None:
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for name in _TARGET_ATTRIBUTES:
        if name in attributes:
            span.set_attribute(name, redact(str(attributes[name])))
    for name in _ADDRESS_ATTRIBUTES:
        if name in attributes:
            span.set_attribute(name, REDACTED)


def _span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    return f"{scope.get('method', 'HTTP')} {redact(scope.get('path', ''))}", {}


def middleware() -> Middleware:
    """A server span around each request."""
    return Middleware(
        OpenTelemetryMiddleware,
        server_request_hook=_without_personal_data,
        default_span_details=_span_details,
        exclude_spans=["receive", "send"],
    )
