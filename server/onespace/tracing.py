"""Tracing as the gateway sees it: what the engine records, independent of OpenTelemetry.

Off by default (`--tracing off`): nothing imports OpenTelemetry, the gateway holds `None` and
each hot path pays one `is None` check. On (`--tracing otlp|console`, the optional `otel`
extra), `onespace.otel` implements `Tracer`: one SERVER span per RPC (continuing the caller's
W3C `traceparent`), and under it the stages one item went through.

The stages are recorded *after the fact*, from timestamps the engine keeps anyway, by the caller
they belong to: one provider call or index search serves many RPCs at once (that is the point
of batching), so each RPC gets its own child span for the shared call, with the batch's size as
an attribute, instead of one span that would belong to a single trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import grpc

if TYPE_CHECKING:
    from onespace.config import Settings

__all__ = ["Attributes", "Metadata", "RpcTrace", "Tracer", "TracingError", "build_tracer"]

Attributes = Mapping[str, str | int | float | bool]
Metadata = Sequence[tuple[str, str | bytes]]


class TracingError(ValueError):
    """Tracing cannot start as configured (the `otel` extra is missing, a setting is out of range)."""


class RpcTrace(Protocol):
    def end(self, code: grpc.StatusCode, message: str = "") -> None:
        """End the RPC's span with its status (in the context that started it)."""


class Tracer(Protocol):
    def rpc(self, method: str, metadata: Metadata) -> RpcTrace:
        """Start the span of an RPC (`/package.Service/Method`), continuing the caller's trace
        from its metadata, and make it the current RPC's."""

    def stage(self, name: str, start: float, end: float, attributes: Attributes) -> None:
        """Record a finished stage of the current RPC (`start`/`end` on `time.monotonic()`) as a
        child of its span; nothing outside an RPC, nor past the RPC's span budget."""

    def event(self, name: str, attributes: Attributes) -> None:
        """Note a moment (a cache hit) on the current RPC's span."""

    def shutdown(self) -> None:
        """Export what is buffered and stop (at server stop)."""


def build_tracer(settings: Settings) -> Tracer | None:
    """The tracer `settings.tracing` asks for; None when off."""
    if settings.tracing == "off":
        return None
    if not 0.0 <= settings.trace_sample_ratio <= 1.0:
        raise TracingError(f"--trace-sample-ratio {settings.trace_sample_ratio} is outside 0..1")
    if settings.trace_max_spans_per_rpc < 0:
        raise TracingError(f"--trace-max-spans-per-rpc {settings.trace_max_spans_per_rpc} is negative")
    try:
        from onespace.otel import OtelTracer
    except ImportError as exc:
        raise TracingError(
            f"--tracing {settings.tracing} needs OpenTelemetry, which is not installed ({exc.name}): "
            "pip install 'onespace[otel]', or set --tracing off"
        ) from None
    return OtelTracer.from_settings(settings)
