"""SearchService: query by content, raw vector, or stored id; served through the search batcher.

`Search` takes one query; `SearchBatch` many, which join the same per-collection index batches
without paying the per-RPC transport cost for each.
"""

from __future__ import annotations

from typing import Any

import grpc

from onespace.errors import InvalidArgument
from onespace.gateway import SearchIn, Timings
from onespace.index import Hit
from onespace.index.backend import CollectionHandle
from onespace.rpc import convert
from onespace.rpc.base import ServicerBase
from onespace.rpc.guard import unary_method
from onespace_client.v1 import search_pb2 as pb
from onespace_client.v1 import search_pb2_grpc

__all__ = ["SearchServicer"]

Ctx = grpc.aio.ServicerContext[Any, Any]


def _search_in(request: pb.SearchRequest) -> tuple[SearchIn, bool]:
    """The query, and whether its hits carry packed vectors (`vector_format`, checked here once)."""
    f32 = convert.vector_format(request.vector_format, "vector_format")
    kind = request.WhichOneof("query")
    query = SearchIn(
        collection=request.collection,
        content=convert.content_from_proto(request.content, "content") if kind == "content" else None,
        vector=convert.vector_from_proto(request.vector, "vector") if kind == "vector" else None,
        id=request.id if kind == "id" else None,
        k=request.k or 10,
        dimension=request.dimension if request.HasField("dimension") else None,
        filter=convert.filter_from_proto(request.filter),
        purpose=convert.purpose_from_proto(request.purpose, "purpose"),
        include_vectors=request.include_vectors,
    )
    return query, f32


def _response(
    f32: bool, hits: list[Hit], collection: CollectionHandle, dimension: int, timings: Timings
) -> pb.SearchResponse:
    response = pb.SearchResponse(
        model=collection.config.model, dimension=dimension, timings=convert.timings_to_proto(timings)
    )
    convert.add_hits(response.hits, hits, f32)
    return response


class SearchServicer(ServicerBase, search_pb2_grpc.SearchServiceServicer):
    @unary_method("Search")
    async def Search(self, request: pb.SearchRequest, context: Ctx) -> pb.SearchResponse:
        query, f32 = _search_in(request)
        hits, collection, dimension, timings = await self.gateway.search(
            query, deadline=self.deadline(context)
        )
        return _response(f32, hits, collection, dimension, timings)

    @unary_method("SearchBatch")
    async def SearchBatch(self, request: pb.SearchBatchRequest, context: Ctx) -> pb.SearchBatchResponse:
        self.check_count(len(request.queries), "queries")
        parsed = []
        for i, query in enumerate(request.queries):
            try:
                parsed.append(_search_in(query))
            except InvalidArgument as exc:
                raise exc.at(f"queries[{i}]") from None
        results = await self.gateway.search_batch([q for q, _ in parsed], deadline=self.deadline(context))
        return pb.SearchBatchResponse(
            results=[_response(f32, *result) for (_, f32), result in zip(parsed, results, strict=True)]
        )
