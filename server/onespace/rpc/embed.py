"""EmbedService: Embed (unary) and EmbedStream (bidi) share `Gateway.embed_input`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import grpc

from onespace.content import Purpose
from onespace.engine import Admission
from onespace.errors import InvalidArgument, OnespaceError
from onespace.gateway import Gateway, Timings
from onespace.rpc import convert
from onespace.rpc.guard import deadline_of, stream_method, unary_method
from onespace.rpc.status import status_for
from onespace.rpc.streaming import bounded_stream
from onespace_client.v1 import common_pb2, embed_pb2, embed_pb2_grpc

__all__ = ["EmbedServicer"]

Ctx = grpc.aio.ServicerContext[Any, Any]


def item_error(exc: OnespaceError) -> common_pb2.ItemError:
    return common_pb2.ItemError(code=status_for(exc).value[0], message=str(exc))


class EmbedServicer(embed_pb2_grpc.EmbedServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.metrics = gateway.metrics
        self.default_deadline = gateway.settings.default_deadline_seconds

    @unary_method("Embed")
    async def Embed(self, request: embed_pb2.EmbedRequest, context: Ctx) -> embed_pb2.EmbedResponse:
        limit = self.gateway.settings.max_items_per_request
        if not request.items:
            raise InvalidArgument("items", "must contain at least one item")
        if len(request.items) > limit:
            raise InvalidArgument(
                "items", f"{len(request.items)} items exceeds the limit of {limit} per request"
            )
        items = [convert.content_from_proto(c, f"items[{i}]") for i, c in enumerate(request.items)]
        options = convert.options_from_proto(request.options)
        deadline = deadline_of(context, self.default_deadline)
        results, spec, dimension, timings = await self.gateway.embed(
            items, options, deadline=deadline, admission=Admission.FAIL_FAST
        )
        return embed_pb2.EmbedResponse(
            results=[convert.embedded_to_proto(r) for r in results],
            model=spec.id,
            dimension=dimension,
            timings=convert.timings_to_proto(timings),
        )

    @stream_method("EmbedStream")
    async def EmbedStream(
        self, requests: AsyncIterable[embed_pb2.EmbedStreamRequest], context: Ctx
    ) -> AsyncIterator[embed_pb2.EmbedStreamResponse]:
        async def one(request: embed_pb2.EmbedStreamRequest) -> embed_pb2.EmbedStreamResponse:
            started = time.monotonic()
            try:
                options = convert.options_from_proto(request.options)
                spec, dimension = self.gateway.resolve(options)
                item = self.gateway.prepare(
                    convert.content_from_proto(request.content, "content"),
                    spec,
                    dimension,
                    options.purpose or Purpose.GENERIC_INDEX,
                    "content",
                )
                embedded, outcome = await self.gateway.embed_input(
                    item,
                    deadline=deadline_of(context, self.default_deadline),
                    admission=Admission.WAIT,
                    normalize=options.normalize,
                )
            except OnespaceError as exc:
                self.metrics.stream_items.labels("EmbedStream", status_for(exc).name).inc()
                return embed_pb2.EmbedStreamResponse(request_id=request.request_id, error=item_error(exc))
            self.metrics.stream_items.labels("EmbedStream", "OK").inc()
            timings = Timings(
                outcome.queue_seconds, outcome.provider_seconds, 0.0, time.monotonic() - started
            )
            return embed_pb2.EmbedStreamResponse(
                request_id=request.request_id,
                result=convert.embedded_to_proto(embedded),
                model=spec.id,
                dimension=dimension,
                timings=convert.timings_to_proto(timings),
            )

        window = self.gateway.settings.stream_window
        tracker = self.metrics.stream_window.labels("EmbedStream")
        async for response in bounded_stream(requests, one, window, tracker):
            yield response
