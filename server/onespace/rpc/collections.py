"""CollectionService: create, get, list, update, tune, checkpoint, compact and delete collections."""

from __future__ import annotations

from typing import Any

import grpc

from onespace.auth import tenancy
from onespace.index import CollectionStats
from onespace.index.backend import CollectionHandle
from onespace.rpc import convert
from onespace.rpc.base import ServicerBase
from onespace.rpc.guard import unary_method
from onespace_client.v1 import collections_pb2 as pb
from onespace_client.v1 import collections_pb2_grpc

__all__ = ["CollectionServicer"]

DEFAULT_TUNE_K = 10  # TuneCollectionRequest.k unset

Ctx = grpc.aio.ServicerContext[Any, Any]


class CollectionServicer(ServicerBase, collections_pb2_grpc.CollectionServiceServicer):
    @unary_method("CreateCollection")
    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: Ctx
    ) -> pb.CreateCollectionResponse:
        collection = await self.gateway.create_collection(convert.config_from_proto(request.config))
        return pb.CreateCollectionResponse(collection=_summary(collection))

    @unary_method("GetCollection")
    async def GetCollection(self, request: pb.GetCollectionRequest, context: Ctx) -> pb.GetCollectionResponse:
        collection = self.gateway.collection(request.name)
        stats = await self.gateway.stats(collection)
        return pb.GetCollectionResponse(collection=_described(collection, stats))

    @unary_method("CheckpointCollection")
    async def CheckpointCollection(
        self, request: pb.CheckpointCollectionRequest, context: Ctx
    ) -> pb.CheckpointCollectionResponse:
        collection, stats = await self.gateway.checkpoint(request.name)
        return pb.CheckpointCollectionResponse(collection=_described(collection, stats))

    @unary_method("CompactCollection")
    async def CompactCollection(
        self, request: pb.CompactCollectionRequest, context: Ctx
    ) -> pb.CompactCollectionResponse:
        collection, stats = await self.gateway.compact(request.name)
        return pb.CompactCollectionResponse(collection=_described(collection, stats))

    @unary_method("UpdateCollection")
    async def UpdateCollection(
        self, request: pb.UpdateCollectionRequest, context: Ctx
    ) -> pb.UpdateCollectionResponse:
        collection, stats = await self.gateway.tune(request.name, convert.tuning_from_proto(request))
        return pb.UpdateCollectionResponse(collection=_described(collection, stats))

    @unary_method("TuneCollection")
    async def TuneCollection(
        self, request: pb.TuneCollectionRequest, context: Ctx
    ) -> pb.TuneCollectionResponse:
        queries = [convert.vector_from_proto(q, f"queries[{i}]") for i, q in enumerate(request.queries)]
        collection, stats, result = await self.gateway.tune_search(
            request.name,
            queries,
            k=request.k or DEFAULT_TUNE_K,
            target=request.target_recall,
            apply=request.apply,
            deadline=self.deadline(context),
        )
        return pb.TuneCollectionResponse(
            trials=[convert.trial_to_proto(t) for t in result.trials],
            reached=result.reached,
            collection=_described(collection, stats),
            queries=result.queries,
        )

    @unary_method("ListCollections")
    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: Ctx
    ) -> pb.ListCollectionsResponse:
        return pb.ListCollectionsResponse(collections=[_summary(c) for c in self.gateway.collections()])

    @unary_method("DeleteCollection")
    async def DeleteCollection(
        self, request: pb.DeleteCollectionRequest, context: Ctx
    ) -> pb.DeleteCollectionResponse:
        await self.gateway.delete_collection(request.name)
        return pb.DeleteCollectionResponse()


def _summary(collection: CollectionHandle) -> pb.Collection:
    return _as_known(convert.collection_to_proto(collection.config, len(collection)))


def _described(collection: CollectionHandle, stats: CollectionStats) -> pb.Collection:
    return _as_known(convert.collection_to_proto(collection.config, stats.items, stats))


def _as_known(message: pb.Collection) -> pb.Collection:
    """The collection under the name its tenant knows it by (stored names carry the tenant)."""
    message.config.name = tenancy.local_name(message.config.name)
    return message
