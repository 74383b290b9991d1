"""InfoService: the provider, its models and their limits, and the server's own limits."""

from __future__ import annotations

from typing import Any

import grpc

from onespace import __version__
from onespace.rpc import convert
from onespace.rpc.base import ServicerBase
from onespace.rpc.guard import unary_method
from onespace_client.v1 import info_pb2 as pb
from onespace_client.v1 import info_pb2_grpc

__all__ = ["InfoServicer"]

Ctx = grpc.aio.ServicerContext[Any, Any]


class InfoServicer(ServicerBase, info_pb2_grpc.InfoServiceServicer):
    @unary_method("Info")
    async def Info(self, request: pb.InfoRequest, context: Ctx) -> pb.InfoResponse:
        settings = self.gateway.settings
        provider = self.gateway.provider
        models = provider.models()
        notice = " ".join(f"{m.id}: {m.description}" for m in models if not m.semantic_across_modalities)
        return pb.InfoResponse(
            provider=provider.name,
            version=__version__,
            default_model=self.gateway.model().id,
            models=[convert.model_to_proto(m) for m in models],
            limits=pb.ServerLimits(
                max_items_per_request=settings.max_items_per_request,
                max_request_bytes=settings.max_request_bytes,
                queue_capacity=settings.queue_capacity,
                stream_window=settings.stream_window,
                stream_window_bytes=settings.stream_window_bytes,
                max_k=settings.max_k,
            ),
            notice=notice,
        )
