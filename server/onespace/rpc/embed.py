"""EmbedService: Embed (unary), EmbedStream and EmbedStreamPacked (bidi) share `Gateway.embed_input`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from onespace.content import Purpose
from onespace.engine import Admission
from onespace.gateway import Timings
from onespace.rpc import convert
from onespace.rpc.base import ServicerBase
from onespace.rpc.guard import stream_method, unary_method
from onespace_client.v1 import common_pb2, embed_pb2, embed_pb2_grpc

__all__ = ["EmbedServicer"]

Ctx = grpc.aio.ServicerContext[Any, Any]


class EmbedServicer(ServicerBase, embed_pb2_grpc.EmbedServiceServicer):
    @unary_method("Embed")
    async def Embed(self, request: embed_pb2.EmbedRequest, context: Ctx) -> embed_pb2.EmbedResponse:
        self.check_count(len(request.items))
        items = [convert.content_from_proto(c, f"items[{i}]") for i, c in enumerate(request.items)]
        options = convert.options_from_proto(request.options)
        f32 = convert.vector_format(request.options.vector_format, "options.vector_format")
        results, spec, dimension, timings = await self.gateway.embed(
            items, options, deadline=self.deadline(context), admission=Admission.FAIL_FAST
        )
        return embed_pb2.EmbedResponse(
            results=[convert.embedded_to_proto(r, f32) for r in results],
            model=spec.id,
            dimension=dimension,
            timings=convert.timings_to_proto(timings),
        )

    @stream_method("EmbedStream")
    async def EmbedStream(
        self, requests: AsyncIterable[embed_pb2.EmbedStreamRequest], context: Ctx
    ) -> AsyncIterator[embed_pb2.EmbedStreamResponse]:
        answer, refuse = self._stream_item(context)
        async for response in self.stream("EmbedStream", requests, answer, refuse):
            yield response

    @stream_method("EmbedStreamPacked")
    async def EmbedStreamPacked(
        self, frames: AsyncIterable[embed_pb2.EmbedStreamPackedRequest], context: Ctx
    ) -> AsyncIterator[embed_pb2.EmbedStreamPackedResponse]:
        answer, refuse = self._stream_item(context)
        async for batch in self.packed_stream("EmbedStreamPacked", frames, answer, refuse):
            yield embed_pb2.EmbedStreamPackedResponse(responses=batch)

    def _stream_item(
        self, context: Ctx
    ) -> tuple[
        Callable[[embed_pb2.EmbedStreamRequest], Awaitable[embed_pb2.EmbedStreamResponse]],
        Callable[[embed_pb2.EmbedStreamRequest, common_pb2.ItemError], embed_pb2.EmbedStreamResponse],
    ]:
        """How one streamed item is answered, and how it is refused (both stream forms)."""

        async def answer(request: embed_pb2.EmbedStreamRequest) -> embed_pb2.EmbedStreamResponse:
            started = time.monotonic()
            options = convert.options_from_proto(request.options)
            f32 = convert.vector_format(request.options.vector_format, "options.vector_format")
            spec, dimension = self.gateway.resolve(options)
            content = convert.content_from_proto(request.content, "content")
            item = self.gateway.prepare(
                content, spec, dimension, options.purpose or Purpose.GENERIC_INDEX, "content"
            )
            embedded, outcome = await self.gateway.embed_input(
                item, deadline=self.deadline(context), admission=Admission.WAIT, normalize=options.normalize
            )
            timings = Timings(
                outcome.queue_seconds, outcome.provider_seconds, 0.0, time.monotonic() - started
            )
            return embed_pb2.EmbedStreamResponse(
                request_id=request.request_id,
                result=convert.embedded_to_proto(embedded, f32),
                model=spec.id,
                dimension=dimension,
                timings=convert.timings_to_proto(timings),
            )

        def refuse(
            request: embed_pb2.EmbedStreamRequest, error: common_pb2.ItemError
        ) -> embed_pb2.EmbedStreamResponse:
            return embed_pb2.EmbedStreamResponse(request_id=request.request_id, error=error)

        return answer, refuse
