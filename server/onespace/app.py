"""Assembling the gateway from settings, and running it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from onespace.config import Settings
from onespace.content import MediaLimits
from onespace.gateway import Gateway
from onespace.heap import freeze_startup_heap
from onespace.index import CollectionStore
from onespace.index.backend import Backend
from onespace.metrics import Metrics
from onespace.providers.base import Provider
from onespace.rpc.server import RpcServer, rpc_methods
from onespace.tracing import Tracer, build_tracer

__all__ = ["App", "build_provider", "build_store", "serve"]

log = logging.getLogger(__name__)


def build_provider(settings: Settings) -> Provider:
    if settings.provider == "local":
        from onespace.providers.local import LocalProvider

        return LocalProvider(
            workers=settings.local_workers,
            processes=settings.local_executor == "process",
            limits=MediaLimits.of(settings),
        )
    if settings.provider == "bedrock":
        from onespace.providers.bedrock import BedrockProvider

        return BedrockProvider(settings)
    raise ValueError(f"unknown provider {settings.provider!r} (choose local or bedrock)")


def build_store(settings: Settings) -> Backend:
    if settings.store == "milvus":
        from onespace.milvus import MilvusBackend, read_token_file  # the optional `milvus` extra

        return MilvusBackend(
            settings.milvus_uri,
            token=read_token_file(settings.milvus_token_file),
            database=settings.milvus_database,
            consistency=settings.milvus_consistency,
            timeout=settings.milvus_timeout_seconds,
        )
    return CollectionStore(settings.data_dir, durable=settings.fsync != "off")


@dataclass
class App:
    """A running gateway: the gRPC server plus the Prometheus endpoint."""

    settings: Settings
    metrics: Metrics
    gateway: Gateway
    rpc: RpcServer
    metrics_server: WSGIServer | None = None
    metrics_thread: Thread | None = None

    @classmethod
    def build(cls, settings: Settings, provider: Provider | None = None, tracer: Tracer | None = None) -> App:
        """`tracer` replaces the one `settings.tracing` asks for (tests pass an in-memory one)."""
        metrics = Metrics()
        tracer = tracer or build_tracer(settings)
        provider = provider or build_provider(settings)
        gateway = Gateway(settings, provider, build_store(settings), metrics, tracer)
        rpc = RpcServer(gateway)
        metrics.prime(methods=rpc_methods(), models=[spec.id for spec in provider.models()])
        return cls(settings, metrics, gateway, rpc)

    @property
    def port(self) -> int:
        return self.rpc.port

    @property
    def metrics_port(self) -> int | None:
        return None if self.metrics_server is None else int(self.metrics_server.server_address[1])

    async def start(self) -> None:
        if self.settings.metrics_port >= 0:
            self.metrics_server, self.metrics_thread = start_http_server(
                self.settings.metrics_port, addr=self.settings.metrics_host, registry=self.metrics.registry
            )
        await self.rpc.start()

    def reload(self) -> None:
        """SIGHUP: re-read the token file and the TLS files (a broken one keeps the previous)."""
        log.info("SIGHUP: reloading credentials")
        if self.rpc.auth is not None:
            self.rpc.auth.reload()
        if self.rpc.certificates is not None:
            self.rpc.certificates.request_reload()

    async def stop(self) -> None:
        try:
            await self.rpc.stop()
        finally:
            if self.gateway.tracer is not None:  # export the spans still buffered
                await asyncio.to_thread(self.gateway.tracer.shutdown)
            if self.metrics_server is not None:
                self.metrics_server.shutdown()
                self.metrics_server.server_close()
                self.metrics_server = None


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully (health NOT_SERVING, drain, save, close)."""
    app = App.build(settings)
    await app.start()
    frozen = freeze_startup_heap()
    log.debug("start-up heap frozen: %d objects out of the collector's walks", frozen)
    metrics = f"metrics on :{app.metrics_port}/metrics" if app.metrics_port is not None else "metrics off"
    print(
        f"onespace serving gRPC on {settings.host}:{app.port} (provider {settings.provider}, "
        f"data {settings.data_dir}); {metrics}",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, app.reload)
    try:
        await stop.wait()
        log.info("signal received: draining")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await app.stop()
