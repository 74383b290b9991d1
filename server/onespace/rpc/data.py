"""DataService: Upsert (unary), Ingest and IngestPacked (bidi, per-item acks) share `Gateway.upsert`."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from onespace.engine import Admission
from onespace.errors import InvalidArgument, OnespaceError
from onespace.gateway import ItemIn, Timings
from onespace.rpc import convert
from onespace.rpc.base import GroupAnswers, ServicerBase
from onespace.rpc.guard import stream_method, unary_method
from onespace_client.v1 import common_pb2, data_pb2_grpc
from onespace_client.v1 import data_pb2 as pb

__all__ = ["DataServicer"]

Ctx = grpc.aio.ServicerContext[Any, Any]


class DataServicer(ServicerBase, data_pb2_grpc.DataServiceServicer):
    @unary_method("Upsert")
    async def Upsert(self, request: pb.UpsertRequest, context: Ctx) -> pb.UpsertResponse:
        self.check_count(len(request.items))
        items = [convert.item_from_proto(item, f"items[{i}]") for i, item in enumerate(request.items)]
        timings = await self.gateway.upsert(
            request.collection, items, deadline=self.deadline(context), admission=Admission.FAIL_FAST
        )
        config = self.gateway.collection(request.collection, "collection").config
        return pb.UpsertResponse(
            upserted=len(items),
            model=config.model,
            dimension=config.dimension,
            timings=convert.timings_to_proto(timings),
        )

    @stream_method("Ingest")
    async def Ingest(
        self, requests: AsyncIterable[pb.IngestRequest], context: Ctx
    ) -> AsyncIterator[pb.IngestResponse]:
        answer, refuse = self._ingest_item(context)
        async for response in self.stream("Ingest", requests, answer, refuse):
            yield response

    @stream_method("IngestPacked")
    async def IngestPacked(
        self, frames: AsyncIterable[pb.IngestPackedRequest], context: Ctx
    ) -> AsyncIterator[pb.IngestPackedResponse]:
        answer, refuse = self._ingest_item(context)
        # `--fsync always` promises each item a commit of its own: no groups then
        together = _ItemGroups(self, context, refuse) if self.gateway.settings.fsync != "always" else None
        async for batch in self.packed_stream("IngestPacked", frames, answer, refuse, together):
            yield pb.IngestPackedResponse(responses=batch)

    def _ingest_item(
        self, context: Ctx
    ) -> tuple[
        Callable[[pb.IngestRequest], Awaitable[pb.IngestResponse]],
        Callable[[pb.IngestRequest, common_pb2.ItemError], pb.IngestResponse],
    ]:
        """How one streamed item is stored and acked, and how it is refused (both stream forms)."""

        async def answer(request: pb.IngestRequest) -> pb.IngestResponse:
            started = time.monotonic()
            item = convert.item_from_proto(request.item, "item")
            timings = await self.gateway.upsert(
                request.collection,
                [item],
                deadline=self.deadline(context),
                admission=Admission.WAIT,
                field="item",
            )
            timings.total = time.monotonic() - started
            return pb.IngestResponse(
                request_id=request.request_id,
                id=request.item.id,
                stored=True,
                timings=convert.timings_to_proto(timings),
            )

        def refuse(request: pb.IngestRequest, error: common_pb2.ItemError) -> pb.IngestResponse:
            return pb.IngestResponse(request_id=request.request_id, id=request.item.id, error=error)

        return answer, refuse

    @unary_method("Get")
    async def Get(self, request: pb.GetRequest, context: Ctx) -> pb.GetResponse:
        f32 = convert.vector_format(request.vector_format, "vector_format")
        found = await self.gateway.get(request.collection, list(request.ids), request.include_vectors)
        response = pb.GetResponse()
        for wanted, item in zip(request.ids, found, strict=True):
            if item is None:
                response.missing_ids.append(wanted)
            else:
                response.items.append(convert.stored_item_to_proto(item, f32))
        return response

    @unary_method("Delete")
    async def Delete(self, request: pb.DeleteRequest, context: Ctx) -> pb.DeleteResponse:
        if not request.ids:
            raise InvalidArgument("ids", "must contain at least one id")
        deleted = await self.gateway.delete(
            request.collection, list(request.ids), deadline=self.deadline(context)
        )
        return pb.DeleteResponse(deleted=deleted)


def _stored(
    asked: list[pb.IngestRequest], timings: common_pb2.Timings | None, position: int, _: Timings
) -> pb.IngestResponse:
    """The ack of `asked[position]`, stored by a write whose `timings` (as a message) it shares."""
    request = asked[position]
    return pb.IngestResponse(request_id=request.request_id, id=request.item.id, stored=True, timings=timings)


class _ItemGroups(GroupAnswers[pb.IngestRequest, pb.IngestResponse]):
    """IngestPacked's items, answered a group at a time: one validation pass per item, the
    group's contents embedded with one wait and stored one write per set of embeddings that
    came back together (`Gateway.upsert_each`), each acked once stored, instead of a task, an
    embedding wait, an upsert and a commit wait per item. Not used under `--fsync always`,
    where each item gets a commit of its own."""

    METHOD = "IngestPacked"

    async def answer(self, requests: list[pb.IngestRequest]) -> AsyncGenerator[list[pb.IngestResponse], None]:
        started = time.monotonic()
        deadline = self.servicer.deadline(self.context)  # per group, as the per-item path does
        refused: list[pb.IngestResponse] = []
        by_collection: dict[str, list[tuple[int, ItemIn]]] = {}
        for i, request in enumerate(requests):
            try:
                item = convert.item_from_proto(request.item, "item")
            except OnespaceError as exc:
                refused.append(self.refused(request, exc))
                continue
            by_collection.setdefault(request.collection, []).append((i, item))
        if refused:
            yield self.answered(refused, 0, started)
        for name, members in by_collection.items():
            unanswered = {i for i, _ in members}
            asked = [requests[i] for i, _ in members]
            writes = self.gateway.upsert_each(name, [item for _, item in members], deadline=deadline)
            try:
                async with contextlib.aclosing(writes) as waves:
                    async for wave in waves:
                        unanswered.difference_update(members[j][0] for j, _ in wave)
                        stored = next((r for _, r in wave if not isinstance(r, OnespaceError)), None)
                        # the write's timings, the same for each item in it: one message
                        timings = convert.timings_to_proto(stored) if stored is not None else None
                        yield self.part(wave, asked, functools.partial(_stored, asked, timings), started)
            except OnespaceError as exc:  # about the rest: the collection, the deadline, a commit
                if unanswered:
                    rest = [self.refused(requests[i], exc) for i in sorted(unanswered)]
                    yield self.answered(rest, 0, started)
