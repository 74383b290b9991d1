"""An AIMD limit on concurrent provider calls: grows by about one per window of successes, halves
on throttling, stays within [floor, ceiling].

A burst of throttles from calls that all started under the same limit halves it once, not once per
call: each permit remembers the epoch it was issued in, and only a throttle from the current epoch
cuts the limit (and opens a new epoch). That keeps a throttling storm from collapsing the limit to
the floor in one burst, and from turning into a retry storm.

Owned by the event loop (no locks): permits are handed to waiters in FIFO order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AdaptiveLimiter", "Permit"]


@dataclass(slots=True, eq=False)
class Permit:
    epoch: int
    released: bool = False


class AdaptiveLimiter:
    def __init__(
        self, initial: int, floor: int, ceiling: int, on_change: Callable[[int], None] | None = None
    ) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError(f"need 1 <= floor ({floor}) <= ceiling ({ceiling})")
        self.floor = floor
        self.ceiling = ceiling
        self._limit = float(min(max(initial, floor), ceiling))
        self._in_flight = 0
        self._epoch = 0
        self._waiters: deque[asyncio.Future[Permit]] = deque()
        self._on_change = on_change
        self.decreases = 0
        self.peak_in_flight = 0
        self._changed()

    @property
    def limit(self) -> int:
        return int(self._limit)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _take(self) -> Permit:
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        return Permit(self._epoch)

    async def acquire(self) -> Permit:
        if self._in_flight < self.limit and not self._waiters:
            return self._take()
        waiter: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed over just as we were cancelled
            else:
                waiter.cancel()
            raise

    def throttled(self, permit: Permit) -> None:
        """A call holding `permit` was throttled (possibly retried): cut the limit once per epoch."""
        if permit.epoch == self._epoch:
            self._limit = max(float(self.floor), self._limit / 2)
            self._epoch += 1
            self.decreases += 1
            self._changed()

    def release(self, permit: Permit, *, throttled: bool = False, succeeded: bool = False) -> None:
        """Return a permit. `throttled` cuts the limit, `succeeded` grows it, neither leaves it."""
        if permit.released:
            return
        permit.released = True
        self._in_flight -= 1
        if throttled:
            self.throttled(permit)
        elif succeeded and self._limit < self.ceiling:
            before = self.limit
            self._limit = min(float(self.ceiling), self._limit + 1.0 / self._limit)
            if self.limit != before:
                self._changed()
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiters and self._in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._take())

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.limit)
