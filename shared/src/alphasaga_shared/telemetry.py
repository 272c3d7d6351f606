"""Tracing (OpenTelemetry, exported over OTLP) and structured logging.

Every message carries a W3C ``traceparent``; a consumer continues that trace, so a saga
is one trace from the request to its last step. Without an OTLP endpoint the tracer is
the API's no-op one and costs next to nothing on the hot path.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from .wire import Envelope

_PROPAGATOR = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("alphasaga")
# Without an exporter no span is recorded, but the incoming traceparent must still reach
# the messages a handler sends, so that services which do export see one trace per saga.
_tracing = False
_passthrough: ContextVar[str] = ContextVar("alphasaga_traceparent", default="")


def setup_tracing(service: str, otlp_endpoint: str | None) -> None:
    """Export spans to ``otlp_endpoint`` (e.g. Jaeger's http://jaeger:4318)."""
    if not otlp_endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"alphasaga-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")))
    trace.set_tracer_provider(provider)
    global _tracer, _tracing
    _tracer = trace.get_tracer("alphasaga")
    _tracing = True


def current_traceparent() -> str:
    if not _tracing:
        return _passthrough.get()
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


@contextmanager
def consume_span(envelope: Envelope, stream: str) -> Iterator[None]:
    if not _tracing:
        token = _passthrough.set(envelope.traceparent)
        try:
            yield
        finally:
            _passthrough.reset(token)
        return
    ctx = _PROPAGATOR.extract({"traceparent": envelope.traceparent}) if envelope.traceparent else None
    with _tracer.start_as_current_span(
        f"consume {envelope.type}",
        context=ctx,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "redis",
            "messaging.destination.name": stream,
            "messaging.message.id": envelope.message_id,
            "messaging.message.conversation_id": envelope.correlation_id,
        },
    ):
        yield


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the trace id when a span is active."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
