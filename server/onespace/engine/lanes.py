"""Per-owner queues served by one task each: the shape both batchers share.

A lane holds the callers waiting on one owner (a collection). The first caller starts the lane's
task; the task runs `serve_round(owner, lane)` (cut one batch and run it) while anyone waits, then
ends and the lane is forgotten. A caller that arrives as the task ends starts a new one, so no
caller is ever left without a server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Lane", "Lanes"]

W = TypeVar("W")


@dataclass(slots=True)
class Lane(Generic[W]):
    waiting: list[W] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for_more(
        self, until: float, full: Callable[[], bool], clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Let more callers join until `full()` or the time `until` on `clock` (the loop's timers
        count real seconds)."""
        while not full():
            remaining = until - clock()
            if remaining <= 0:
                return
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                return


class Lanes(Generic[W]):
    def __init__(self, serve_round: Callable[[Any, Lane[W]], Awaitable[None]]) -> None:
        self._serve_round = serve_round
        self._lanes: dict[int, Lane[W]] = {}

    def submit(self, owner: object, waiter: W) -> None:
        lane = self._lanes.get(id(owner))
        if lane is None:
            lane = self._lanes[id(owner)] = Lane()
        lane.waiting.append(waiter)
        lane.arrived.set()
        if lane.task is None:
            lane.task = asyncio.create_task(self._serve(owner, lane))

    async def _serve(self, owner: object, lane: Lane[W]) -> None:
        try:
            while lane.waiting:
                await self._serve_round(owner, lane)
        finally:
            lane.task = None
            if lane.waiting:  # arrived after the loop's last check
                lane.task = asyncio.create_task(self._serve(owner, lane))
            else:
                self._lanes.pop(id(owner), None)
