"""The grpc.aio server: every servicer, health checking, reflection, and a graceful stop.

Stop order (grpc's graceful-shutdown example): health goes NOT_SERVING so balancers stop sending
(and Health.Watch streams end, so they do not hold the stop for the grace period),
streams stop reading new items (their in-flight items are answered, then UNAVAILABLE), the server
stops accepting RPCs and lets those in flight finish within the grace period, then the gateway
drains the engine, checkpoints the indexes and closes the provider. Every acked write is already
on disk before this starts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from onespace.gateway import Gateway
from onespace.rpc import access, exposure, tls
from onespace.rpc.auth import AuthInterceptor
from onespace.rpc.collections import CollectionServicer
from onespace.rpc.data import DataServicer
from onespace.rpc.embed import EmbedServicer
from onespace.rpc.guard import RpcAdmission
from onespace.rpc.handlers import add_servicers
from onespace.rpc.health import ClosingHealthServicer, HealthMonitor
from onespace.rpc.info import InfoServicer
from onespace.rpc.search import SearchServicer
from onespace.rpc.tracing import TracingInterceptor
from onespace_client.v1 import collections_pb2, data_pb2, embed_pb2, info_pb2, search_pb2

__all__ = ["SERVICE_NAMES", "RpcServer", "rpc_methods"]

log = logging.getLogger(__name__)

SERVICE_NAMES = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (embed_pb2, "EmbedService"),
        (collections_pb2, "CollectionService"),
        (data_pb2, "DataService"),
        (search_pb2, "SearchService"),
        (info_pb2, "InfoService"),
    )
)


def rpc_methods() -> list[str]:
    """Every onespace RPC's method name (the `method` label of the RPC metrics)."""
    pool = embed_pb2.DESCRIPTOR.pool
    return [m.name for service in SERVICE_NAMES for m in pool.FindServiceByName(service).methods]


class RpcServer:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        settings = gateway.settings
        size = settings.max_request_bytes
        exposure.check(settings)
        self.auth = (
            AuthInterceptor(
                Path(settings.auth_tokens),
                gateway.metrics,
                tenant_rate=settings.tenant_rate,
                tenant_burst=settings.tenant_burst,
                tenant_max_in_flight=settings.tenant_max_in_flight,
                pushback_seconds=settings.retry_pushback_ms / 1000,
            )
            if settings.auth_tokens
            else None
        )
        # tracing outermost, then the access log: both see refusals by auth, and the request id
        # is on their logs
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if gateway.tracer is not None:
            interceptors.append(TracingInterceptor(gateway.tracer))
        if access.wanted(settings.access_log_sample):
            interceptors.append(access.AccessLogInterceptor(settings.access_log_sample))
        if self.auth is not None:
            interceptors.append(self.auth)
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                ("grpc.so_reuseport", 0),
                # grpc-core queues calls until a handler asks for the next one, and past its default
                # soft limit of 1000 it cancels new calls at random (a bare CANCELLED the gateway
                # never sees). Let the backlog reach onespace, whose admission answers overload
                # with RESOURCE_EXHAUSTED and a retry hint (`guard.RpcAdmission`).
                ("grpc.server.max_pending_requests", settings.max_pending_rpcs),
                ("grpc.server.max_pending_requests_hard_limit", settings.max_pending_rpcs),
            ],
        )
        self.admission = admission = RpcAdmission(
            settings.max_in_flight_rpcs, settings.retry_pushback_ms / 1000
        )
        self.health = ClosingHealthServicer()
        self.health_monitor = HealthMonitor(
            self.health, gateway.health, settings.health_interval_seconds, gateway.metrics.health_status
        )
        servicers = [
            cls(gateway, admission)
            for cls in (EmbedServicer, CollectionServicer, DataServicer, SearchServicer, InfoServicer)
        ]
        # health too: it needs no token, so garbage sent to it must not become a logged traceback
        add_servicers(self._server, [*servicers, self.health], gateway.metrics)
        if settings.reflection:
            reflection.enable_server_reflection(
                (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
            )
        self.port, self.certificates = tls.add_port(self._server, settings)  # certificates: None = plaintext

    async def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def start(self) -> None:
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()
        await self.gateway.start()
        await self.health_monitor.refresh()
        self.health_monitor.start()
        log.info("serving on %s:%d", self.gateway.settings.host, self.port)

    async def stop(self) -> None:
        await self.health_monitor.stop()
        await self.health.close()  # NOT_SERVING everywhere, Watch streams ended
        self.gateway.draining.set()  # streams stop reading at once and end with UNAVAILABLE
        await self._server.stop(self.gateway.settings.grace_seconds)
        await self.gateway.stop()
        log.info("stopped")

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()
