"""A graceful stop ends what would otherwise hold it for the whole grace period."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onespace.app import App
from tests.harness import test_settings as settings_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_health_watch_gets_not_serving_and_ends_at_stop(tmp_path: Path) -> None:
    app = App.build(settings_for(tmp_path, grace_seconds=120.0))
    await app.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watches = [
            health.Watch(health_pb2.HealthCheckRequest(service=s)) for s in ("", "onespace.v1.SearchService")
        ]
        for watch in watches:
            assert (await watch.read()).status == SERVING
        stopping = asyncio.ensure_future(app.stop())
        for watch in watches:
            statuses = []
            while (message := await watch.read()) != grpc.aio.EOF:
                statuses.append(message.status)
            assert statuses and set(statuses) == {NOT_SERVING}
            assert await watch.code() == grpc.StatusCode.OK
        # with a Watch open, the stop used to wait the whole grace period (20 s here)
        await asyncio.wait_for(stopping, 10)
