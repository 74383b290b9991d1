"""Spacing provider calls out in time: at most `rate` attempts per second, evenly.

A limit on calls in flight can only express whole multiples of one call's latency: at ~45 ms a
call, 6 in flight carry ~133 calls/s and 7 ~155/s, so an upstream quota of 150/s sits between two
limits, and the limiter alternates between one that wastes capacity and one that drains the quota's
bucket and is throttled (engine/limiter.py decides when to pace and how fast). A pace expresses the
rate in between.

The schedule is GCRA (the generic cell rate algorithm): one theoretical time for the next call,
moved on by 1/rate per call; a call earlier than that waits for its slot. The slot is taken
before the wait, so concurrent callers get successive slots in the order they asked; nothing
bursts after an idle spell beyond `burst` calls at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["Pacer"]


class Pacer:
    def __init__(self, *, burst: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1:
            raise ValueError(f"need burst >= 1, not {burst}")
        self._burst = burst
        self._clock = clock
        self._rate: float | None = None
        self._next = 0.0  # the theoretical time of the next call's slot
        self.delayed = 0  # calls that had to wait for their slot (read and reset by the limiter)
        self.taken = 0  # slots taken while pacing (read and reset by the limiter)

    @property
    def rate(self) -> float | None:
        """Attempts per second; None = not pacing."""
        return self._rate

    @rate.setter
    def rate(self, value: float | None) -> None:
        if value is not None and not value > 0.0:
            raise ValueError(f"a pace must be positive, not {value}")
        self._rate = value

    def reserve(self) -> float:
        """Take the next slot; returns how long to wait for it (0.0: go now)."""
        if self._rate is None:
            return 0.0
        now = self._clock()
        self.taken += 1
        interval = 1.0 / self._rate
        slot = max(self._next, now - (self._burst - 1) * interval)
        self._next = slot + interval
        wait = slot - now
        if wait > 0.0:
            self.delayed += 1
            return wait
        return 0.0

    async def wait(self) -> None:
        """Wait for the next slot (at once when not pacing)."""
        delay = self.reserve()
        if delay > 0.0:
            await asyncio.sleep(delay)
