"""A real gateway on 127.0.0.1:0 with a real channel, for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from onespace.app import App
from onespace.config import Settings
from onespace.engine.scheduler import EmbedOutcome
from onespace.providers.base import Provider
from onespace.tracing import Tracer
from onespace_client.v1 import (
    collections_pb2_grpc,
    data_pb2_grpc,
    embed_pb2_grpc,
    info_pb2_grpc,
    search_pb2_grpc,
)

__all__ = ["Groups", "Running", "index_all", "only_groups", "running_gateway", "test_settings", "until"]


def test_settings(data_dir: Path, **overrides: Any) -> Settings:
    base = Settings(
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        data_dir=data_dir,
        grace_seconds=2.0,
        local_workers=2,
        local_executor="thread",  # no process to start per gateway; test_local_processes covers them
    )
    return base.replace(**overrides)


@dataclass
class Running:
    app: App
    channel: grpc.aio.Channel
    target: str
    embed: embed_pb2_grpc.EmbedServiceStub
    collections: collections_pb2_grpc.CollectionServiceStub
    data: data_pb2_grpc.DataServiceStub
    search: search_pb2_grpc.SearchServiceStub
    info: info_pb2_grpc.InfoServiceStub


@contextlib.asynccontextmanager
async def running_gateway(
    data_dir: Path, backend: Provider | None = None, *, tracer: Tracer | None = None, **overrides: Any
) -> AsyncIterator[Running]:
    """`backend` is a Provider instance; `provider="bedrock"` (a setting) builds the real one."""
    app = App.build(test_settings(data_dir, **overrides), backend, tracer)
    await app.start()
    target = f"127.0.0.1:{app.port}"
    channel = grpc.aio.insecure_channel(
        target,
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )
    try:
        yield Running(
            app,
            channel,
            target,
            embed_pb2_grpc.EmbedServiceStub(channel),
            collections_pb2_grpc.CollectionServiceStub(channel),
            data_pb2_grpc.DataServiceStub(channel),
            search_pb2_grpc.SearchServiceStub(channel),
            info_pb2_grpc.InfoServiceStub(channel),
        )
    finally:
        await channel.close()
        await app.stop()


class Groups(list[int]):
    """The sizes of the scheduler's group waits; `waves` holds, for each list of outcomes a
    stream's group was handed, how many of them were embeddings (not errors)."""

    def __init__(self) -> None:
        super().__init__()
        self.waves: list[int] = []


def only_groups(gw: Running, monkeypatch: pytest.MonkeyPatch) -> Groups:
    """The sizes of the scheduler's group waits from now on (`embed_many` for a unary request,
    `embed_as_done` for a stream's group); `embed` (the one-by-one path) is removed, so an input
    that takes it fails the test."""
    scheduler = gw.app.gateway.scheduler
    groups = Groups()
    embed_many, embed_as_done = scheduler.embed_many, scheduler.embed_as_done

    async def counted(inputs: Any, **kw: Any) -> Any:
        groups.append(len(inputs))
        return await embed_many(inputs, **kw)

    async def counted_as_done(inputs: Any, **kw: Any) -> Any:
        groups.append(len(inputs))
        async with contextlib.aclosing(embed_as_done(inputs, **kw)) as waves:
            async for wave in waves:
                groups.waves.append(sum(isinstance(o, EmbedOutcome) for _, o in wave))
                yield wave

    monkeypatch.setattr(scheduler, "embed_many", counted)
    monkeypatch.setattr(scheduler, "embed_as_done", counted_as_done)
    monkeypatch.setattr(scheduler, "embed", None)
    return groups


async def until(condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Yield to the event loop until `condition` holds: a state the server reaches through loop
    turns and I/O, not after a time. `limit` only turns a bug that never gets there into a
    failure naming `what` instead of a hung test."""
    give_up = time.monotonic() + limit
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"not reached within {limit} s: {what}")
        await asyncio.sleep(0)


async def index_all(gw: Running, collection: str) -> None:
    """Wait until the background indexer has added every committed row of `collection` to its
    HNSW graph (it adds them in steps; searches scan what it has not taken yet exactly). A test
    that compares approximate searches made at different moments needs the final graph, and a
    removal leaves a usearch tombstone only for a row the graph holds."""
    handle = gw.app.gateway.store.get(collection)
    while await asyncio.to_thread(handle.index_pending):
        pass
