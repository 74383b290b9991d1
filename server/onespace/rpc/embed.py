"""EmbedService: Embed (unary), EmbedStream and EmbedStreamPacked (bidi) share `Gateway.embed_input`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from onespace.content import Purpose
from onespace.engine import Admission
from onespace.engine.scheduler import EmbedOutcome
from onespace.errors import OnespaceError
from onespace.gateway import Embedded, Gateway, Timings
from onespace.providers.base import EmbedInput
from onespace.rpc import convert
from onespace.rpc.base import GroupAnswers, ServicerBase
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
        together = _EmbedGroups(self, context, refuse)
        async for batch in self.packed_stream("EmbedStreamPacked", frames, answer, refuse, together):
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
            item = _StreamItem.parse(self.gateway, request)
            embedded, outcome = await self.gateway.embed_input(
                item.input,
                deadline=self.deadline(context),
                admission=Admission.WAIT,
                normalize=item.normalize,
            )
            return item.response(embedded, outcome, started)

        def refuse(
            request: embed_pb2.EmbedStreamRequest, error: common_pb2.ItemError
        ) -> embed_pb2.EmbedStreamResponse:
            return embed_pb2.EmbedStreamResponse(request_id=request.request_id, error=error)

        return answer, refuse


@dataclass(frozen=True, slots=True)
class _StreamItem:
    """One streamed request, checked: what to embed and how to answer it."""

    request: embed_pb2.EmbedStreamRequest
    input: EmbedInput
    model: str
    dimension: int
    normalize: bool
    f32: bool

    @classmethod
    def parse(cls, gateway: Gateway, request: embed_pb2.EmbedStreamRequest) -> _StreamItem:
        options = convert.options_from_proto(request.options)
        f32 = convert.vector_format(request.options.vector_format, "options.vector_format")
        spec, dimension = gateway.resolve(options)
        content = convert.content_from_proto(request.content, "content")
        item = gateway.prepare(content, spec, dimension, options.purpose or Purpose.GENERIC_INDEX, "content")
        return cls(request, item, spec.id, dimension, options.normalize, f32)

    def response(
        self, embedded: Embedded, outcome: EmbedOutcome, started: float
    ) -> embed_pb2.EmbedStreamResponse:
        timings = Timings(outcome.queue_seconds, outcome.provider_seconds, 0.0, time.monotonic() - started)
        return embed_pb2.EmbedStreamResponse(
            request_id=self.request.request_id,
            result=convert.embedded_to_proto(embedded, self.f32),
            model=self.model,
            dimension=self.dimension,
            timings=convert.timings_to_proto(timings),
        )


class _EmbedGroups(GroupAnswers[embed_pb2.EmbedStreamRequest, embed_pb2.EmbedStreamResponse]):
    """EmbedStreamPacked's items, answered a group at a time: each checked on its own, all
    embedded with one wait (`Gateway.embed_inputs`) instead of a task and a wait per item, and
    answered as their embeddings come back; each item keeps its own answer or error."""

    METHOD = "EmbedStreamPacked"

    async def answer(
        self, requests: list[embed_pb2.EmbedStreamRequest]
    ) -> AsyncGenerator[list[embed_pb2.EmbedStreamResponse], None]:
        started = time.monotonic()
        refused: list[embed_pb2.EmbedStreamResponse] = []
        items: list[_StreamItem] = []
        for request in requests:
            try:
                items.append(_StreamItem.parse(self.gateway, request))
            except OnespaceError as exc:
                refused.append(self.refused(request, exc))
        if refused:
            yield self.answered(refused, 0, started)
        if not items:
            return
        embeddings = self.gateway.embed_inputs(
            [item.input for item in items],
            [item.normalize for item in items],
            deadline=self.servicer.deadline(self.context),
            admission=Admission.WAIT,
        )
        async with contextlib.aclosing(embeddings) as waves:
            asked = [item.request for item in items]
            async for wave in waves:
                yield self.part(wave, asked, lambda i, result: items[i].response(*result, started), started)
