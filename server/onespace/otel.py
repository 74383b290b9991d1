"""`Tracer` on OpenTelemetry (the optional `otel` extra); imported only when tracing is on.

- One SERVER span per RPC, named `<service>/<method>` with the `rpc.*` attributes of the
  OpenTelemetry RPC conventions, continuing the caller's trace when its metadata carries a W3C
  `traceparent` (any propagator set by `OTEL_PROPAGATORS`). Following those conventions, a server
  span is marked as an error only for the codes that mean the server failed (UNKNOWN,
  DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS); every code is in
  `rpc.grpc.status_code`.
- Stages become its children, at most `max_spans_per_rpc` of them (a 100,000-item Ingest stream
  must not make 200,000 spans); the rest are counted in `onespace.spans_dropped` on the RPC span.
  An RPC the sampler left out records nothing below it.
- The provider is the gateway's own, never the process-wide global: an embedding application
  that has its own OpenTelemetry setup keeps it. Spans leave through a BatchSpanProcessor, whose
  queue is bounded (spans beyond it are dropped, never buffered without limit) and which exports
  from its own thread, off the event loop. The exporter reads the standard `OTEL_EXPORTER_OTLP_*`
  variables (endpoint, headers, certificates); `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
  name the service.
"""

from __future__ import annotations

import contextvars
import math
import os
import time
from dataclasses import dataclass

import grpc
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode

from onespace import __version__, logs
from onespace.config import Settings
from onespace.tracing import Attributes, Metadata

__all__ = ["OtelTracer", "RpcSpan"]

# the codes that say the server failed (OpenTelemetry semantic conventions for gRPC server spans)
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class _MetadataGetter(Getter[Metadata]):
    def get(self, carrier: Metadata, key: str) -> list[str] | None:
        values = [value for name, value in carrier if name == key and isinstance(value, str)]
        return values or None

    def keys(self, carrier: Metadata) -> list[str]:
        return [name for name, _ in carrier]


_GETTER = _MetadataGetter()


@dataclass(slots=True, eq=False)
class RpcSpan:
    """One RPC's span, the context its stages are children of, and what is left of its budget."""

    span: trace.Span
    context: Context
    budget: int
    token: contextvars.Token[RpcSpan | None] | None = None
    log_token: contextvars.Token[str] | None = None
    dropped: int = 0

    def end(self, code: grpc.StatusCode, message: str = "") -> None:
        span = self.span
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code in _SERVER_ERRORS:
            span.set_status(Status(StatusCode.ERROR, f"{code.name}: {message}" if message else code.name))
        if self.dropped:
            span.set_attribute("onespace.spans_dropped", self.dropped)
        span.end()
        if self.log_token is not None:
            logs.trace_id.reset(self.log_token)
        if self.token is not None:
            _current.reset(self.token)


_current: contextvars.ContextVar[RpcSpan | None] = contextvars.ContextVar("onespace_rpc_span", default=None)


class OtelTracer:
    def __init__(self, provider: TracerProvider, *, max_spans_per_rpc: int) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("onespace", __version__)
        self._budget = max_spans_per_rpc
        self._offset = 0  # epoch ns minus monotonic ns: stages are timed on the monotonic clock
        self._offset_at = -math.inf

    @classmethod
    def from_settings(cls, settings: Settings, exporter: SpanExporter | None = None) -> OtelTracer:
        """`exporter` replaces the one `settings.tracing` names (tests pass an in-memory one,
        exported synchronously so a finished span is there at once)."""
        if exporter is not None:
            processor: SpanProcessor = SimpleSpanProcessor(exporter)
        elif settings.tracing == "console":
            processor = BatchSpanProcessor(ConsoleSpanExporter())
        else:
            processor = BatchSpanProcessor(OTLPSpanExporter())
        attributes = {SERVICE_VERSION: __version__}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes[SERVICE_NAME] = "onespace"
        provider = TracerProvider(
            resource=Resource.create(attributes),
            sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
        )
        provider.add_span_processor(processor)
        return cls(provider, max_spans_per_rpc=settings.trace_max_spans_per_rpc)

    def rpc(self, method: str, metadata: Metadata) -> RpcSpan:
        """Start the span of an RPC (`/package.Service/Method`) and make it current; the caller
        ends it, in the same context, with `RpcSpan.end`."""
        now = time.monotonic()
        if now - self._offset_at > 60:  # follow clock adjustments, but keep siblings' times comparable
            self._offset, self._offset_at = time.time_ns() - time.monotonic_ns(), now
        service, _, name = method.lstrip("/").rpartition("/")
        span = self._tracer.start_span(
            f"{service}/{name}",
            context=propagate.extract(metadata, getter=_GETTER),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        rpc = RpcSpan(span, trace.set_span_in_context(span), self._budget)
        rpc.token = _current.set(rpc)
        if span.is_recording():
            rpc.log_token = logs.trace_id.set(trace.format_trace_id(span.get_span_context().trace_id))
        return rpc

    def stage(self, name: str, start: float, end: float, attributes: Attributes) -> None:
        rpc = _current.get()
        if rpc is None or not rpc.span.is_recording():
            return
        if rpc.budget <= 0:
            rpc.dropped += 1
            return
        rpc.budget -= 1
        offset = self._offset
        span = self._tracer.start_span(
            name, context=rpc.context, start_time=int(start * 1e9) + offset, attributes=attributes
        )
        span.end(end_time=int(max(start, end) * 1e9) + offset)

    def event(self, name: str, attributes: Attributes) -> None:
        rpc = _current.get()
        if rpc is not None and rpc.span.is_recording():
            rpc.span.add_event(name, attributes)

    def shutdown(self) -> None:
        self.provider.shutdown()
