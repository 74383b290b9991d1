"""What every servicer holds, and the request checks and stream plumbing they share."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from onespace.errors import InvalidArgument, OnespaceError
from onespace.gateway import Gateway
from onespace.rpc.guard import RpcAdmission, deadline_of
from onespace.rpc.status import bounded_details, status_for
from onespace.rpc.streaming import bounded_stream
from onespace_client.v1 import common_pb2

__all__ = ["ServicerBase"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Ctx = grpc.aio.ServicerContext[Any, Any]


class ServicerBase:
    def __init__(self, gateway: Gateway, admission: RpcAdmission) -> None:
        self.gateway = gateway
        self.admission = admission
        self.metrics = gateway.metrics
        self.default_deadline = gateway.settings.default_deadline_seconds
        self.max_deadline = gateway.settings.max_deadline_seconds

    def deadline(self, context: Ctx) -> float:
        return deadline_of(context, self.default_deadline, self.max_deadline)

    def check_count(self, count: int, field: str = "items") -> None:
        limit = self.gateway.settings.max_items_per_request
        if count == 0:
            raise InvalidArgument(field, "must contain at least one item")
        if count > limit:
            raise InvalidArgument(field, f"{count} items exceeds the limit of {limit} per request")

    async def stream(
        self,
        method: str,
        requests: AsyncIterable[Req],
        answer: Callable[[Req], Awaitable[Resp]],
        refuse: Callable[[Req, common_pb2.ItemError], Resp],
    ) -> AsyncIterator[Resp]:
        """Answer each request within the stream's window; a bad item gets `refuse(...)`, and the
        stream goes on. Per-item outcomes are counted by status code."""
        items = self.metrics.stream_items
        latency = self.metrics.stream_item_duration.labels(method)

        async def one(request: Req) -> Resp:
            started = time.monotonic()
            try:
                response = await answer(request)
            except OnespaceError as exc:
                code = status_for(exc)
                items.labels(method, code.name).inc()
                error = common_pb2.ItemError(code=code.value[0], message=bounded_details(str(exc)))
                return refuse(request, error)
            finally:
                latency.observe(time.monotonic() - started)
            items.labels(method, "OK").inc()
            return response

        window = self.gateway.settings.stream_window
        async for response in bounded_stream(
            requests, one, window, self.metrics.stream_window.labels(method), self.gateway.draining
        ):
            yield response
