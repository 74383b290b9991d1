"""gRPC health checking that tells the truth, and whose Watch streams end at shutdown.

`HealthMonitor` checks the provider (credentials resolve; the last call was not refused for
them) and the data directory (a small durable write) every `health_interval_seconds`, and sets
each service from what it needs: EmbedService the provider; Search, Data and Collection
services the store; Info nothing. The overall status ("") needs both, so a gateway whose every
Embed would fail is NOT_SERVING even though vector searches still work; a line at WARNING says
why whenever a status changes.

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
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from grpc_health.v1 import health, health_pb2
from prometheus_client import Gauge

from onespace.engine.periodic import Periodic
from onespace.gateway import Health

__all__ = ["DEPENDS_ON", "ClosingHealthServicer", "HealthMonitor"]

log = logging.getLogger(__name__)

# What each service needs in order to serve (fields of `gateway.Health`).
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "": ("provider", "store"),
    "onespace.v1.EmbedService": ("provider",),
    "onespace.v1.SearchService": ("store",),
    "onespace.v1.DataService": ("store",),
    "onespace.v1.CollectionService": ("store",),
    "onespace.v1.InfoService": (),
}

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
                continue  # the write yields: look again before ending or waiting (close() may have run)
            if self._closed:
                return
            await changed.wait()

    async def close(self) -> None:
        """NOT_SERVING for every service from now on, and every Watch ended."""
        self._closed = True
        await self.enter_graceful_shutdown()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()  # wake watchers whose status did not change (already NOT_SERVING)


class HealthMonitor:
    def __init__(
        self,
        servicer: ClosingHealthServicer,
        probe: Callable[[], Awaitable[Health]],
        interval: float,
        published: Gauge | None = None,
    ) -> None:
        self._servicer = servicer
        self._published = published  # onespace_health_status{service}
        self._probe = probe
        self._rounds = Periodic("health check", interval, self.refresh)
        self._reasons: dict[str, str | None] = {}

    async def refresh(self) -> None:
        """Check now and publish every service's status."""
        found = await self._probe()
        for service, needs in DEPENDS_ON.items():
            problems = [f"{part}: {why}" for part in needs if (why := getattr(found, part)) is not None]
            reason = "; ".join(problems) or None
            if service not in self._reasons or self._reasons[service] != reason:
                if reason is not None:
                    log.warning("health: %s NOT_SERVING (%s)", service or "server", reason)
                elif service in self._reasons:
                    log.warning("health: %s SERVING again", service or "server")
            self._reasons[service] = reason
            status = _Status.NOT_SERVING if reason is not None else _Status.SERVING
            await self._servicer.set(service, status)
            if self._published is not None:
                self._published.labels(service).set(1 if reason is None else 0)

    def start(self) -> None:
        self._rounds.start()

    async def stop(self) -> None:
        await self._rounds.stop()
