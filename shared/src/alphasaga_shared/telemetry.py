"""Tracing (OpenTelemetry, exported over OTLP) and structured logging.

Every message carries a W3C ``traceparent``; a consumer continues that trace, so a saga
is one trace from the request to its last step. Without an OTLP endpoint nothing is
instrumented and no span is made: the hot path only passes the incoming traceparent on.

Spans that last longer than one message (a saga, a step attempt) are emitted when they
end, with span ids derived from what they are (``derived_span_id``): the messages sent
while they ran already named them as parent. ``emit_span`` gives such a span its id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.sampling import Sampler

    from .wire import Envelope

P = ParamSpec("P")
R = TypeVar("R")

_PROPAGATOR = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("alphasaga")
# Without an exporter no span is recorded, but the incoming traceparent must still reach
# the messages a handler sends, so that services which do export see one trace per saga.
_tracing = False
_sample_ratio = 1.0
_passthrough: ContextVar[str] = ContextVar("alphasaga_traceparent", default="")
# The saga a log line is about: the correlation id of the message being handled.
_saga_id: ContextVar[str] = ContextVar("alphasaga_saga_id", default="")
# The ids ``emit_span`` gives the next span it starts (read by the provider's generator).
_next_ids: ContextVar[tuple[int, int] | None] = ContextVar("alphasaga_next_ids", default=None)
TRACE_ID_LIMIT = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class SpanIds:
    trace_id: int
    span_id: int
    sampled: bool

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"

    def context(self) -> trace.SpanContext:
        flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if self.sampled else trace.TraceFlags.DEFAULT)
        return trace.SpanContext(self.trace_id, self.span_id, is_remote=True, trace_flags=flags)


def tracing() -> bool:
    return _tracing


def setup_tracing(service: str, otlp_endpoint: str | None, sample_ratio: float = 1.0) -> None:
    """Export spans to ``otlp_endpoint`` (e.g. Jaeger's http://jaeger:4318), sampling
    ``sample_ratio`` of the sagas that start without a sampled parent; the rest follow
    their parent, so a saga is sampled whole or not at all."""
    global _tracer, _tracing, _sample_ratio
    _sample_ratio = sample_ratio
    if not otlp_endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"alphasaga-{service}"}),
        sampler=ParentBased(root=_root_sampler(sample_ratio)),
        id_generator=_id_generator(),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")))
    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    RedisInstrumentor().instrument(tracer_provider=provider)
    _tracer = trace.get_tracer("alphasaga")
    _tracing = True


def shutdown_tracing() -> None:
    """Send the spans still buffered (at a graceful stop)."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if _tracing and shutdown is not None:
        shutdown()


def sampled(trace_id: int) -> bool:
    """The ratio sampler's choice for a trace that starts here (the same rule as the SDK's
    ``TraceIdRatioBased``: the low 64 bits of the trace id under a bound)."""
    return trace_id & TRACE_ID_LIMIT < round(_sample_ratio * (TRACE_ID_LIMIT + 1))


def _root_sampler(ratio: float) -> Sampler:
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult, TraceIdRatioBased

    class RootSampler(Sampler):
        """A ratio of the traces that start here; never a database or Redis call with no
        parent (the polling loops), which would be a trace of one span every few ms."""

        def __init__(self) -> None:
            self.ratio = TraceIdRatioBased(ratio)

        def should_sample(  # type: ignore[no-untyped-def]
            self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None
        ) -> SamplingResult:
            if kind == trace.SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return self.ratio.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"AlphaSagaRoot{{{ratio}}}"

    return RootSampler()


def _id_generator() -> Any:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class DerivedIds(RandomIdGenerator):
        """Random ids, except for the span ``emit_span`` is starting."""

        def generate_span_id(self) -> int:
            ids = _next_ids.get()
            return ids[1] if ids is not None else super().generate_span_id()

        def generate_trace_id(self) -> int:
            ids = _next_ids.get()
            return ids[0] if ids is not None else super().generate_trace_id()

    return DerivedIds()


def derived_span_id(*parts: object) -> int:
    """A span id that is a function of ``parts``: any process can name the span of a saga
    or a step attempt before it is emitted."""
    digest = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest) or 1


def parse_traceparent(traceparent: str) -> trace.SpanContext | None:
    if not traceparent:
        return None
    span_ctx = trace.get_current_span(_PROPAGATOR.extract({"traceparent": traceparent})).get_span_context()
    return span_ctx if span_ctx.is_valid else None


def emit_span(
    name: str,
    ids: SpanIds,
    parent: trace.SpanContext | None,
    start_ns: int,
    end_ns: int,
    attributes: dict[str, Any],
    *,
    error: bool = False,
) -> None:
    """Record a span that has already ended, with the ids it was named by."""
    if not (_tracing and ids.sampled):
        return
    ctx = trace.set_span_in_context(trace.NonRecordingSpan(parent)) if parent is not None else otel_context.Context()
    token = _next_ids.set((ids.trace_id, ids.span_id))
    try:
        span = _tracer.start_span(name, context=ctx, start_time=start_ns, attributes=attributes)
    finally:
        _next_ids.reset(token)
    if error:
        span.set_status(trace.StatusCode.ERROR)
    span.end(end_time=max(start_ns, end_ns))


def current_traceparent() -> str:
    if not _tracing:
        return _passthrough.get()
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


@contextmanager
def consume_span(envelope: Envelope, stream: str, *, traced: bool = True) -> Iterator[None]:
    saga = _saga_id.set(envelope.correlation_id)
    try:
        if not (_tracing and traced):
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
                "messaging.operation.type": "process",
                "messaging.destination.name": stream,
                "messaging.message.id": envelope.message_id,
                "messaging.message.conversation_id": envelope.correlation_id,
                "alphasaga.saga_id": envelope.correlation_id,
            },
        ):
            yield
    finally:
        _saga_id.reset(saga)


def links_to(traceparents: Sequence[str]) -> list[trace.Link]:
    """Links to the messages of a batch (the messaging conventions' way for a batch that
    has many parents)."""
    return [trace.Link(c) for tp in dict.fromkeys(traceparents) if (c := parse_traceparent(tp)) is not None]


@contextmanager
def span(
    name: str,
    attributes: dict[str, Any] | None = None,
    *,
    parent: SpanIds | None = None,
    links: Sequence[trace.Link] = (),
) -> Iterator[None]:
    """A span around a piece of work (a child of the current one, or of ``parent``); no
    cost when tracing is off."""
    if not _tracing:
        yield
        return
    ctx = trace.set_span_in_context(trace.NonRecordingSpan(parent.context())) if parent is not None else None
    with _tracer.start_as_current_span(name, context=ctx, attributes=attributes, links=links):
        yield


def traced(name: str, fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` with a span around each call."""

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        with span(name):
            return fn(*args, **kwargs)

    return call


@contextmanager
def about_saga(saga_id: str) -> Iterator[None]:
    """Log lines written inside name ``saga_id``."""
    token = _saga_id.set(saga_id)
    try:
        yield
    finally:
        _saga_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the trace id when a span is active and the saga id
    when a saga's message is being handled."""

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
        span_ctx = trace.get_current_span().get_span_context()
        if span_ctx.is_valid:
            entry["trace_id"] = format(span_ctx.trace_id, "032x")
        elif (incoming := parse_traceparent(_passthrough.get())) is not None:
            entry["trace_id"] = format(incoming.trace_id, "032x")
        if saga_id := _saga_id.get():
            entry["saga_id"] = saga_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
