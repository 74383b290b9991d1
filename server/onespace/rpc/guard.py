"""Wrappers every servicer method goes through: refuse an undecodable request, admit the RPC,
time and count it, translate OnespaceError to its status (via the one table in `status`), and turn
anything unexpected into INTERNAL.

A request whose bytes did not parse arrives as a `handlers.Undecodable` (the deserializers never
raise, see `handlers`) and is answered INVALID_ARGUMENT `request: cannot decode <type>: <reason>`
before admission: it is the caller's mistake, and "busy, retry" would only bring it back.
Streams decide per frame, in `streaming.bounded_group_batches`."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from onespace.budget import response_too_large
from onespace.errors import DeadlineExceeded, OnespaceError, ResourceExhausted
from onespace.metrics import Metrics
from onespace.rpc.handlers import Undecodable
from onespace.rpc.status import bounded_details, metadata_for, status_for

if TYPE_CHECKING:
    from onespace.gateway import Gateway

__all__ = [
    "HasMetrics",
    "RpcAdmission",
    "check_fits",
    "deadline_of",
    "stream_method",
    "unary_method",
]

log = logging.getLogger(__name__)
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Ctx = grpc.aio.ServicerContext[Any, Any]


class RpcAdmission:
    """How many unary RPCs are being handled; past `limit` new ones are refused before any work.

    The bound that keeps overload an answer from onespace (RESOURCE_EXHAUSTED with a retry hint,
    counted) rather than a backlog of handlers each holding memory and a deadline that will not
    be met. Streams are bounded separately, by their window. Owned by the event loop.
    """

    def __init__(self, limit: int, pushback_seconds: float) -> None:
        self.limit = limit
        self.pushback = pushback_seconds
        self.active = 0

    def refusal(self) -> ResourceExhausted:
        return ResourceExhausted(
            f"server is busy: {self.limit} RPCs already in flight (max_in_flight_rpcs); retry later",
            retry_after_seconds=self.pushback,
        )


class HasMetrics(Protocol):
    gateway: Gateway
    metrics: Metrics
    default_deadline: float
    max_deadline: float
    admission: RpcAdmission


def deadline_of(context: Ctx, default_seconds: float, max_seconds: float = 0.0) -> float:
    """The caller's deadline as a monotonic instant: as sent, the server default when it sent
    none, and no later than `max_seconds` from now when that is set (> 0)."""
    remaining = context.time_remaining()
    if remaining is None:
        remaining = default_seconds
    if max_seconds > 0:
        remaining = min(remaining, max_seconds)
    return time.monotonic() + remaining


def check_fits(response: object, limit: int) -> None:
    """Refuse a unary response larger than the server may send. grpc would refuse it too, but
    with an ERROR traceback in the log for every such call (a Get of 100k ids with vectors)."""
    size = response.ByteSize() if isinstance(response, Message) else 0
    if size > limit:
        raise response_too_large(size, limit)


class _Outcome:
    def __init__(self, metrics: Metrics, method: str, *, stream: bool = False) -> None:
        self.metrics = metrics
        self.method = method
        self.duration = metrics.stream_duration if stream else metrics.rpc_duration
        self.code = grpc.StatusCode.OK
        self.started = time.monotonic()
        metrics.rpc_in_flight.labels(method).inc()

    async def fail(self, context: Ctx, exc: BaseException, max_deadline: float = 0.0) -> None:
        if isinstance(exc, OnespaceError):
            self.code = status_for(exc)
            message = bounded_details(str(exc))
            if isinstance(exc, DeadlineExceeded) and max_deadline > 0:
                left = context.time_remaining()
                if left is not None and left > 0:  # the caller still had time: the cap ended it
                    message += f" (max_deadline_seconds, {max_deadline:g} s, cut the deadline sent)"
            await context.abort(self.code, message, trailing_metadata=metadata_for(exc))
        if isinstance(exc, asyncio.CancelledError):
            self.code = grpc.StatusCode.CANCELLED
            raise exc
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        self.code = grpc.StatusCode.INTERNAL
        log.exception("%s failed", self.method, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")

    def close(self) -> None:
        self.metrics.rpc_in_flight.labels(self.method).dec()
        self.duration.labels(self.method, self.code.name).observe(time.monotonic() - self.started)


def unary_method(
    method: str,
) -> Callable[[Callable[[Any, Req, Ctx], Awaitable[Resp]]], Callable[[Any, Req, Ctx], Awaitable[Resp]]]:
    def wrap(fn: Callable[[Any, Req, Ctx], Awaitable[Resp]]) -> Callable[[Any, Req, Ctx], Awaitable[Resp]]:
        @functools.wraps(fn)
        async def handler(self: HasMetrics, request: Req, context: Ctx) -> Resp:
            outcome = _Outcome(self.metrics, method)
            admission = self.admission
            admission.active += 1
            try:
                if isinstance(request, Undecodable):
                    raise request.error()
                if admission.active > admission.limit:
                    self.metrics.rejected.labels("rpcs_in_flight").inc()
                    raise admission.refusal()
                response = await fn(self, request, context)
                check_fits(response, self.gateway.settings.max_request_bytes)
                return response
            except BaseException as exc:
                await outcome.fail(context, exc, self.max_deadline)
                raise
            finally:
                admission.active -= 1
                outcome.close()

        return handler

    return wrap


def stream_method(
    method: str,
) -> Callable[
    [Callable[[Any, Req, Ctx], AsyncIterator[Resp]]], Callable[[Any, Req, Ctx], AsyncIterator[Resp]]
]:
    def wrap(
        fn: Callable[[Any, Req, Ctx], AsyncIterator[Resp]],
    ) -> Callable[[Any, Req, Ctx], AsyncIterator[Resp]]:
        @functools.wraps(fn)
        async def handler(self: HasMetrics, requests: Req, context: Ctx) -> AsyncIterator[Resp]:
            outcome = _Outcome(self.metrics, method, stream=True)
            try:
                async for response in fn(self, requests, context):
                    yield response
            except BaseException as exc:
                if isinstance(exc, GeneratorExit):
                    outcome.code = grpc.StatusCode.CANCELLED
                    raise
                await outcome.fail(context, exc, self.max_deadline)
                raise
            finally:
                outcome.close()

        return handler

    return wrap
