"""`ClosingHealthServicer.close()`: every Watch is told NOT_SERVING before it ends, even one
still writing its previous status when the server starts to stop."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2

from onespace.rpc.health import ClosingHealthServicer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ("", "onespace.v1.EmbedService", "onespace.v1.SearchService")


class Sink:
    """A Watch call's context: what was written to it; a write waits for `flowing` (a slow peer)."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.writing = asyncio.Event()
        self.flowing = asyncio.Event()

    async def write(self, message: health_pb2.HealthCheckResponse) -> None:
        self.statuses.append(message.status)
        self.writing.set()
        await self.flowing.wait()


async def test_close_tells_every_watcher_not_serving_before_ending_it() -> None:
    servicer = ClosingHealthServicer()
    for name in SERVICES:
        await servicer.set(name, SERVING)
    sinks = {name: Sink() for name in SERVICES}
    watches = [
        asyncio.create_task(servicer.Watch(health_pb2.HealthCheckRequest(service=name), sink))
        for name, sink in sinks.items()
    ]
    for sink in sinks.values():
        await sink.writing.wait()  # each watcher is inside its write of SERVING
    await servicer.close()  # the server starts to stop meanwhile
    for sink in sinks.values():
        sink.flowing.set()
    await asyncio.gather(*watches)  # every Watch ends
    for name, sink in sinks.items():
        assert sink.statuses == [SERVING, NOT_SERVING], (name, sink.statuses)
