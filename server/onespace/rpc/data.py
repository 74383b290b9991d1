"""DataService: Upsert (unary) and Ingest (bidi, per-item acks) share `Gateway.upsert`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import grpc

from onespace.engine import Admission
from onespace.errors import InvalidArgument, OnespaceError
from onespace.gateway import Gateway
from onespace.rpc import convert
from onespace.rpc.embed import item_error
from onespace.rpc.guard import deadline_of, stream_method, unary_method
from onespace.rpc.status import status_for
from onespace.rpc.streaming import bounded_stream
from onespace_client.v1 import data_pb2 as pb
from onespace_client.v1 import data_pb2_grpc

__all__ = ["DataServicer"]

Ctx = grpc.aio.ServicerContext[Any, Any]


class DataServicer(data_pb2_grpc.DataServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.metrics = gateway.metrics
        self.default_deadline = gateway.settings.default_deadline_seconds

    @unary_method("Upsert")
    async def Upsert(self, request: pb.UpsertRequest, context: Ctx) -> pb.UpsertResponse:
        limit = self.gateway.settings.max_items_per_request
        if not request.items:
            raise InvalidArgument("items", "must contain at least one item")
        if len(request.items) > limit:
            raise InvalidArgument(
                "items", f"{len(request.items)} items exceeds the limit of {limit} per request"
            )
        items = [convert.item_from_proto(item, f"items[{i}]") for i, item in enumerate(request.items)]
        timings = await self.gateway.upsert(
            request.collection,
            items,
            deadline=deadline_of(context, self.default_deadline),
            admission=Admission.FAIL_FAST,
        )
        config = self.gateway.store.get(request.collection).config
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
        async def one(request: pb.IngestRequest) -> pb.IngestResponse:
            started = time.monotonic()
            try:
                item = convert.item_from_proto(request.item, "item")
                timings = await self.gateway.upsert(
                    request.collection,
                    [item],
                    deadline=deadline_of(context, self.default_deadline),
                    admission=Admission.WAIT,
                    field="item",
                )
            except OnespaceError as exc:
                self.metrics.stream_items.labels("Ingest", status_for(exc).name).inc()
                return pb.IngestResponse(
                    request_id=request.request_id, id=request.item.id, error=item_error(exc)
                )
            self.metrics.stream_items.labels("Ingest", "OK").inc()
            timings.total = time.monotonic() - started
            return pb.IngestResponse(
                request_id=request.request_id,
                id=request.item.id,
                stored=True,
                timings=convert.timings_to_proto(timings),
            )

        window = self.gateway.settings.stream_window
        tracker = self.metrics.stream_window.labels("Ingest")
        async for response in bounded_stream(requests, one, window, tracker):
            yield response

    @unary_method("Get")
    async def Get(self, request: pb.GetRequest, context: Ctx) -> pb.GetResponse:
        found = await self.gateway.get(request.collection, list(request.ids), request.include_vectors)
        response = pb.GetResponse()
        for wanted, item in zip(request.ids, found, strict=True):
            if item is None:
                response.missing_ids.append(wanted)
            else:
                response.items.append(convert.stored_item_to_proto(item))
        return response

    @unary_method("Delete")
    async def Delete(self, request: pb.DeleteRequest, context: Ctx) -> pb.DeleteResponse:
        if not request.ids:
            raise InvalidArgument("ids", "must contain at least one id")
        return pb.DeleteResponse(deleted=await self.gateway.delete(request.collection, list(request.ids)))
