"""Registration of the onespace servicers, built from the service descriptors, with request
deserializers that never raise.

grpc runs the request deserializer before any servicer code. The generated `add_*_to_server`
functions use `Message.FromString`, so a frame that does not parse (random bytes, bad UTF-8 in a
string field) raised `DecodeError` inside grpc: the caller got `UNKNOWN: Unexpected <class
'DecodeError'>`, the log a 7-line traceback per request (a flood anyone could trigger), and on a
stream the whole stream ended with INTERNAL. Here a frame that does not parse becomes an
`Undecodable` sentinel instead, counted (`onespace_rejected_total{reason="undecodable"}`) and
logged at WARNING without a traceback, at most one line per `interval` seconds with the count of
the ones not logged. The servicer wrappers refuse it:

- a unary method (`guard.unary_method`): INVALID_ARGUMENT
  `request: cannot decode onespace.v1.SearchRequest: <reason>`, before admission or any work;
- a stream (`streaming.bounded_group_batches`): the stream stops reading at the bad frame, answers every
  request read before it, then ends with INVALID_ARGUMENT naming the frame (`requests[3]: ...`,
  counted from 0). A per-item error is not possible: the stream responses say which request they
  answer by its `request_id`, and an undecodable frame has none to echo (docs/errors.md).

A servicer of another service (grpc's health servicer) goes through no `guard`; its unary-request
methods get a thin wrapper that answers the same INVALID_ARGUMENT.

One table for every service: each servicer is matched to its service by the generated base class
it already derives from (`SearchServiceServicer`, `HealthServicer`), and every method's kind and
message classes come from the method descriptor, so a method added to a .proto needs no
registration code.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message

from onespace.errors import InvalidArgument
from onespace.metrics import Metrics
from onespace.rpc import status
from onespace_client.v1 import collections_pb2, data_pb2, embed_pb2, info_pb2, search_pb2

__all__ = ["ONESPACE", "Undecodable", "UndecodableLog", "add_servicers", "safe_deserializer", "service_of"]

log = logging.getLogger(__name__)
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

# The onespace services: their servicer methods go through `guard`, which refuses what did not parse.
ONESPACE = frozenset(
    service.full_name
    for module in (embed_pb2, collections_pb2, data_pb2, search_pb2, info_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
)


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What grpc hands a servicer instead of a request whose bytes did not parse."""

    message_type: str  # e.g. onespace.v1.SearchRequest
    reason: str  # the parser's, e.g. "String field had bad UTF-8"
    size: int  # bytes received

    def error(self, field: str = "request", after: str = "") -> InvalidArgument:
        return InvalidArgument(field, f"cannot decode {self.message_type}: {self.reason}{after}")


class UndecodableLog:
    """Counts every undecodable frame and logs at most one WARNING line per `interval` seconds
    (no traceback: the bytes are the caller's mistake, not a fault of the server)."""

    def __init__(self, metrics: Metrics, interval: float = 10.0) -> None:
        self.rejected = metrics.rejected.labels("undecodable")
        self.interval = interval
        self.suppressed = 0
        self.last = -float("inf")

    def note(self, method: str, bad: Undecodable) -> None:
        self.rejected.inc()
        now = time.monotonic()
        if now - self.last < self.interval:
            self.suppressed += 1
            return
        more = f"; {self.suppressed} more in the last {now - self.last:.0f} s" if self.suppressed else ""
        log.warning(
            "refused an undecodable request on %s: %s bytes, not a %s (%s)%s",
            method,
            bad.size,
            bad.message_type,
            bad.reason,
            more,
        )
        self.last = now
        self.suppressed = 0


def _reason(exc: Exception) -> str:
    """The parser's reason without its "Error parsing message with type 'X': " preamble."""
    text = str(exc)
    head, sep, tail = text.partition("': ")
    if sep and head.startswith("Error parsing message"):
        text = tail
    if not isinstance(exc, DecodeError):
        text = f"{type(exc).__name__}: {text}"
    return text or type(exc).__name__


def safe_deserializer(
    cls: type[Message], method: str, report: UndecodableLog
) -> Callable[[bytes], Message | Undecodable]:
    """`cls.FromString`, except that it returns an `Undecodable` instead of raising."""
    name = cls.DESCRIPTOR.full_name

    def parse(raw: bytes) -> Message | Undecodable:
        try:
            return cls.FromString(raw)
        except Exception as exc:  # DecodeError, and whatever else a parser may raise on hostile bytes
            bad = Undecodable(name, _reason(exc), len(raw))
            report.note(method, bad)
            return bad

    return parse


_KINDS: dict[tuple[bool, bool], Callable[..., Handler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _refusing(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """A foreign servicer's unary-request method (grpc's health Check and Watch), which goes
    through no `guard` wrapper, with an undecodable request refused before it runs."""
    if inspect.isasyncgenfunction(behaviour):

        async def streaming(request: object, context: Ctx) -> AsyncIterator[object]:
            if isinstance(request, Undecodable):
                await status.abort(context, request.error())
            async for response in behaviour(request, context):
                yield response

        return streaming

    async def unary(request: object, context: Ctx) -> object:
        if isinstance(request, Undecodable):
            await status.abort(context, request.error())
        return await behaviour(request, context)

    return unary


def _handler(servicer: object, method: MethodDescriptor, report: UndecodableLog) -> Handler:
    service = method.containing_service
    path = f"/{service.full_name}/{method.name}"
    behaviour = getattr(servicer, method.name)
    if service.full_name not in ONESPACE:  # onespace methods refuse it in `guard` and `streaming`
        if method.client_streaming:
            raise TypeError(f"{path}: a foreign stream of requests cannot refuse undecodable frames")
        behaviour = _refusing(behaviour)
    request = message_factory.GetMessageClass(method.input_type)
    response = message_factory.GetMessageClass(method.output_type)
    return _KINDS[method.client_streaming, method.server_streaming](
        behaviour,
        request_deserializer=safe_deserializer(request, path, report),
        response_serializer=response.SerializeToString,
    )


def service_of(servicer: object) -> ServiceDescriptor:
    """The service `servicer` implements: the one whose generated `<Name>Servicer` class (in a
    `*_pb2_grpc` module, next to the `*_pb2` module holding its descriptor) it derives from."""
    for base in type(servicer).__mro__:
        if not base.__module__.endswith("_pb2_grpc") or not base.__name__.endswith("Servicer"):
            continue
        pb2 = importlib.import_module(base.__module__.removesuffix("_grpc"))
        service = pb2.DESCRIPTOR.services_by_name.get(base.__name__.removesuffix("Servicer"))
        if service is not None:
            return cast(ServiceDescriptor, service)
    raise TypeError(f"{type(servicer).__name__} derives from no generated *Servicer class")


def add_servicers(server: grpc.aio.Server, servicers: Iterable[object], metrics: Metrics) -> None:
    """Add every method of every servicer's service to `server`, each with a safe deserializer
    (one undecodable-request log, so one rate limit, per server)."""
    report = UndecodableLog(metrics)
    for servicer in servicers:
        service = service_of(servicer)
        handlers: dict[str, Handler] = {m.name: _handler(servicer, m, report) for m in service.methods}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
        server.add_registered_method_handlers(service.full_name, handlers)
