"""`onespace serve` as a real process: starts on the embedded defaults, serves, and on SIGTERM goes
NOT_SERVING, drains, saves and exits 0; a restart on the same data dir finds everything."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onespace_client.v1 import (
    collections_pb2,
    collections_pb2_grpc,
    common_pb2,
    data_pb2,
    data_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)
from tests.reliability.serve import Server


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


async def test_sigterm_drains_saves_and_exits_zero(data_dir: Path) -> None:
    server = Server(data_dir)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            await collections_pb2_grpc.CollectionServiceStub(channel).CreateCollection(
                collections_pb2.CreateCollectionRequest(config=collections_pb2.CollectionConfig(name="docs"))
            )
            await data_pb2_grpc.DataServiceStub(channel).Upsert(
                data_pb2.UpsertRequest(
                    collection="docs",
                    items=[
                        data_pb2.Item(
                            id=f"d{i}",
                            content=common_pb2.Content(text=f"document number {i} about topic {i % 3}"),
                        )
                        for i in range(20)
                    ],
                )
            )
    finally:
        code = await asyncio.to_thread(server.terminate)
    assert code == 0, "".join(server.lines)

    server = Server(data_dir)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            reply = await search_pb2_grpc.SearchServiceStub(channel).Search(
                search_pb2.SearchRequest(
                    collection="docs", content=common_pb2.Content(text="document number 7 about topic 1"), k=1
                )
            )
            assert reply.hits[0].id == "d7"
    finally:
        assert await asyncio.to_thread(server.terminate) == 0
