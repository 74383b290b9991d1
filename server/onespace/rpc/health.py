"""gRPC health checking whose Watch streams end at shutdown.

grpc's asyncio HealthServicer keeps every Watch open until the server cancels it, so one open
Watch (a load balancer, a sidecar) makes a graceful stop wait for the whole grace period. Here
`close()` moves every service to NOT_SERVING, sends that to each watcher, and ends the Watch
calls with OK, before the server starts waiting for RPCs in flight.

Watch is our own loop: each change replaces a one-shot event, and a watcher takes the current
event before it reads the status, so no change is missed and no lock is held while it writes
(a slow watcher never delays `set`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from grpc_health.v1 import health, health_pb2

__all__ = ["ClosingHealthServicer"]

_Status = health_pb2.HealthCheckResponse


class ClosingHealthServicer(health.aio.HealthServicer):  # type: ignore[misc]  # untyped base
    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()
        self._closed = False

    async def _set(self, service: str, status: Any) -> None:
        await super()._set(service, status)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        last = None
        while True:
            changed = self._changed
            status = self._server_status.get(request.service, _Status.SERVICE_UNKNOWN)
            if status != last:
                await context.write(_Status(status=status))
                last = status
            if self._closed:
                return
            await changed.wait()

    async def close(self) -> None:
        """NOT_SERVING for every service from now on, and every Watch ended."""
        self._closed = True
        await self.enter_graceful_shutdown()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()  # wake watchers whose status did not change (already NOT_SERVING)
