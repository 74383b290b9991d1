"""SearchService: query by content, raw vector, or stored id; served through the search batcher."""

from __future__ import annotations

from typing import Any

import grpc

from onespace.gateway import SearchIn
from onespace.rpc import convert
from onespace.rpc.base import ServicerBase
from onespace.rpc.guard import unary_method
from onespace_client.v1 import search_pb2 as pb
from onespace_client.v1 import search_pb2_grpc

__all__ = ["SearchServicer"]

Ctx = grpc.aio.ServicerContext[Any, Any]


class SearchServicer(ServicerBase, search_pb2_grpc.SearchServiceServicer):
    @unary_method("Search")
    async def Search(self, request: pb.SearchRequest, context: Ctx) -> pb.SearchResponse:
        kind = request.WhichOneof("query")
        query = SearchIn(
            collection=request.collection,
            content=convert.content_from_proto(request.content, "content") if kind == "content" else None,
            vector=convert.vector_from_proto(request.vector, "vector.values") if kind == "vector" else None,
            id=request.id if kind == "id" else None,
            k=request.k or 10,
            dimension=request.dimension if request.HasField("dimension") else None,
            filter=convert.filter_from_proto(request.filter),
            purpose=convert.purpose_from_proto(request.purpose, "purpose"),
            include_vectors=request.include_vectors,
        )
        hits, collection, dimension, timings = await self.gateway.search(
            query, deadline=self.deadline(context)
        )
        return pb.SearchResponse(
            hits=[convert.hit_to_proto(h) for h in hits],
            model=collection.config.model,
            dimension=dimension,
            timings=convert.timings_to_proto(timings),
        )
