"""The emulator's mutable state, one per application: config, seeded RNG, per-model token
buckets, the concurrency gate, forced errors, emulated S3 and the counters.

Admission order for a call (each step may answer with an error):
forced error → RPM quota (ThrottlingException) → concurrency cap (ThrottlingException, or wait
with overflow=queue) → random faults → validation → latency → (ModelTimeout fault) → answer.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from onespace.emulator.config import EmulatorConfig, FaultRates
from onespace.emulator.errors import EmulatedError
from onespace.emulator.invocation import S3Store
from onespace.emulator.stats import Stats

__all__ = ["MAGIC_ERROR", "EmulatorState", "ForcedError", "TokenBucket"]

# A request whose body contains `onespace-emulator-error:<Code>` (e.g. as its text) gets that error.
MAGIC_ERROR = re.compile(rb"onespace-emulator-error:([A-Za-z]+)")


class TokenBucket:
    """`rate` tokens a second up to `capacity`; a call takes one or is throttled."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity = rate, capacity
        self.tokens, self.stamp = capacity, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class ForcedError:
    code: str
    message: str | None
    count: int
    model: str | None = None


class EmulatorState:
    def __init__(self, config: EmulatorConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.config = config
        self.rng = random.Random(config.seed)
        self.stats = Stats()
        self.s3 = S3Store(config.s3_dir)
        self.forced: deque[ForcedError] = deque()
        self._buckets: dict[str, TokenBucket] = {}
        self._gate = asyncio.Condition()

    def reconfigure(self, config: EmulatorConfig) -> None:
        """Apply a new config: quotas restart full, a new seed restarts the RNG."""
        if config.seed != self.config.seed:
            self.rng = random.Random(config.seed)
        self.config = config
        self._buckets.clear()

    def reset(self) -> None:
        """Forget counters, buckets, forced errors and S3 objects; keep the config, reseed the RNG."""
        in_flight = self.stats.in_flight
        self.stats = Stats()
        self.stats.in_flight = self.stats.max_in_flight = in_flight
        self.rng = random.Random(self.config.seed)
        self._buckets.clear()
        self.forced.clear()
        self.s3.clear()

    def force(self, code: str, message: str | None = None, count: int = 1, model: str | None = None) -> None:
        EmulatedError(code)  # validates the code
        self.forced.append(ForcedError(code, message, count, model))

    def check_forced(self, model: str, body: bytes) -> None:
        for forced in self.forced:
            if forced.model in (None, model):
                forced.count -= 1
                if forced.count <= 0:
                    self.forced.remove(forced)
                raise EmulatedError(forced.code, forced.message)
        match = MAGIC_ERROR.search(body)
        if match:
            code = match.group(1).decode()
            raise EmulatedError(code, f"Forced by the request body ({code}).")

    def check_quota(self, model: str) -> None:
        rpm = self.config.rpm_for(model)
        if rpm <= 0:
            return
        now = self.clock()
        bucket = self._buckets.get(model)
        if bucket is None:
            bucket = self._buckets[model] = TokenBucket(rpm / 60.0, self.config.burst or rpm, now)
        if not bucket.take(now):
            raise EmulatedError(
                "ThrottlingException", f"Too many requests for {model}: the quota is {rpm} RPM."
            )

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of `max_concurrency` slots for the duration of the call."""
        cap = self.config.max_concurrency
        if cap and self.stats.in_flight >= cap:
            if self.config.overflow == "throttle":
                raise EmulatedError(
                    "ThrottlingException", f"Too many concurrent requests: the emulator allows {cap}."
                )
            self.stats.queued += 1
            async with self._gate:
                await self._gate.wait_for(
                    lambda: (
                        not self.config.max_concurrency or self.stats.in_flight < self.config.max_concurrency
                    )
                )
        self.stats.enter()
        try:
            yield
        finally:
            self.stats.leave()
            async with self._gate:
                self._gate.notify_all()

    def draw_fault(self) -> str | None:
        """One uniform draw against the cumulative fault rates: the error code, or None."""
        faults = self.config.faults
        u = self.rng.random()
        for name, code in FaultRates.CODES.items():
            u -= getattr(faults, name)
            if u < 0:
                return code
        return None

    def latency_seconds(self, modality: str, items: int) -> float:
        lat = self.config.latency.get(modality)
        if lat is None:
            return 0.0
        jitter = self.rng.uniform(0.0, lat.jitter_ms) if lat.jitter_ms else 0.0
        return (lat.fixed_ms + jitter + self.config.per_item_ms * max(0, items - 1)) / 1000.0
