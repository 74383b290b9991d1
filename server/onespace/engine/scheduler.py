"""The embed scheduler: every embedding the gateway makes goes through here.

    embed(input) ─▶ cache? ─▶ identical item in flight? join it ─▶ admission ─▶ group queue
                                                                                  │
    one dispatcher task: wait for work ─▶ acquire a limiter permit ─▶ cut a batch ─▶ call task
                         (drops abandoned and expired items, counts them)        │
                                                        results or one error to every caller

One task owns the queues (TEI's queue.rs); the buffers are bounded by `queue_capacity`; unary
callers are refused at once when it is full, stream callers wait (and their stream stops being
read, so HTTP/2 flow control pushes back on the client). A failed call fails every caller in it;
no future is left pending, including at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

from prometheus_client import Histogram

from onespace.config import Settings
from onespace.engine.cache import EmbeddingCache
from onespace.engine.limiter import AdaptiveLimiter, Permit
from onespace.engine.pending import GroupKey, Pending
from onespace.errors import DeadlineExceeded, Internal, OnespaceError, ResourceExhausted, Unavailable
from onespace.metrics import Metrics
from onespace.providers.base import EmbedInput, Provider, ProviderResult

__all__ = ["Admission", "EmbedOutcome", "EmbedScheduler"]

log = logging.getLogger(__name__)
_current_permit: contextvars.ContextVar[Permit | None] = contextvars.ContextVar("permit", default=None)


class Admission(enum.Enum):
    FAIL_FAST = "fail_fast"  # unary RPCs: RESOURCE_EXHAUSTED at once when the queue is full
    WAIT = "wait"  # streams: wait for room until the deadline


@dataclass(frozen=True, slots=True)
class EmbedOutcome:
    result: ProviderResult
    cached: bool
    queue_seconds: float
    provider_seconds: float


class EmbedScheduler:
    def __init__(self, provider: Provider, settings: Settings, metrics: Metrics) -> None:
        self._provider = provider
        self._metrics = metrics
        self._capacity = settings.queue_capacity
        self._max_wait = settings.max_batch_wait_ms / 1000
        self._pushback = settings.retry_pushback_ms / 1000
        self._cache = EmbeddingCache(settings.cache_bytes)
        self.limiter = AdaptiveLimiter(
            settings.concurrency_initial,
            settings.concurrency_min,
            settings.concurrency_max,
            on_change=metrics.concurrency_limit.set,
        )
        self._groups: dict[GroupKey, deque[Pending]] = {}
        self._in_flight: dict[Hashable, Pending] = {}
        self._queued = 0
        self._room = asyncio.Event()
        self._work = asyncio.Event()
        self._calls: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._closed = False
        self._histograms: dict[tuple[int, tuple[str, ...]], Histogram] = {}  # labelled children
        self.provider_calls = 0
        provider.events = self

    # --- observability -------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Items admitted and waiting for a provider call."""
        return self._queued

    @property
    def cache(self) -> EmbeddingCache:
        return self._cache

    def _histogram(self, metric: Histogram, *labels: str) -> Histogram:
        """`metric.labels(*labels)`, looked up once (labels() takes a lock and builds keys per call)."""
        key = (id(metric), labels)
        child = self._histograms.get(key)
        if child is None:
            child = self._histograms[key] = metric.labels(*labels)
        return child

    # --- ProviderEvents ------------------------------------------------------------------------
    def throttled(self, model: str) -> None:
        self._metrics.provider_throttles.labels(model).inc()
        permit = _current_permit.get()
        if permit is not None:
            self.limiter.throttled(permit)

    def retried(self, model: str, reason: str) -> None:
        self._metrics.provider_retries.labels(model, reason).inc()

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch(), name="embed-dispatcher")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Refuse new work, fail what is queued, let provider calls under way finish."""
        self._closed = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        for queue in self._groups.values():
            while queue:
                self._fail(queue.popleft(), Unavailable("the server is shutting down"), "shutdown")
        self._groups.clear()
        if self._calls:
            _, late = await asyncio.wait(self._calls, timeout=grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # --- the caller's side ---------------------------------------------------------------------
    async def embed(self, item: EmbedInput, *, deadline: float, admission: Admission) -> EmbedOutcome:
        """Embed one checked input; raises an OnespaceError (never leaves the caller hanging)."""
        if self._closed:
            raise Unavailable("the server is shutting down")
        key = (item.content.digest(), item.model, item.dimension, item.purpose.value)
        start = time.monotonic()
        if self._cache.capacity_bytes > 0:
            hit = self._cache.get(key)
            self._metrics.cache_requests.labels("hit" if hit else "miss").inc()
            if hit is not None:
                return EmbedOutcome(hit, True, 0.0, 0.0)
        pending = self._join(key, deadline)
        if pending is None:
            await self._admit(admission, deadline)
            pending = self._join(key, deadline)  # someone may have queued it while we waited
        if pending is None:
            pending = self._enqueue(key, item, deadline)
        return await self._wait(pending, deadline, start)

    def _join(self, key: Hashable, deadline: float) -> Pending | None:
        pending = self._in_flight.get(key)
        if pending is None or pending.future.done():
            return None
        pending.waiters += 1
        pending.deadline = max(pending.deadline, deadline)
        self._metrics.dedup_joins.inc()
        return pending

    async def _admit(self, admission: Admission, deadline: float) -> None:
        while self._queued >= self._capacity:
            if admission is Admission.FAIL_FAST:
                self._metrics.rejected.labels("queue_full").inc()
                raise ResourceExhausted(
                    f"embedding queue is full ({self._queued} items waiting, capacity {self._capacity}); "
                    "retry later",
                    retry_after_seconds=self._pushback,
                )
            self._room.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._metrics.rejected.labels("deadline").inc()
                raise DeadlineExceeded("deadline exceeded while waiting for room in the embedding queue")
            try:
                await asyncio.wait_for(self._room.wait(), remaining)
            except TimeoutError:
                continue
            if self._closed:
                raise Unavailable("the server is shutting down")

    def _enqueue(self, key: Hashable, item: EmbedInput, deadline: float) -> Pending:
        future: asyncio.Future[ProviderResult] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)
        pending = Pending(key, item, future, deadline, time.monotonic())
        self._in_flight[key] = pending
        self._groups.setdefault(pending.group, deque()).append(pending)
        self._queued += 1
        self._metrics.queue_depth.set(self._queued)
        self._work.set()
        return pending

    async def _wait(self, pending: Pending, deadline: float, start: float) -> EmbedOutcome:
        try:
            result = await asyncio.wait_for(asyncio.shield(pending.future), deadline - time.monotonic())
        except TimeoutError:
            self._leave(pending, "deadline")
            raise DeadlineExceeded("deadline exceeded while waiting for the embedding provider") from None
        except asyncio.CancelledError:
            self._leave(pending, "cancelled")
            raise
        sent = pending.sent_at if pending.sent_at is not None else start
        return EmbedOutcome(result, False, max(0.0, sent - start), pending.provider_seconds)

    def _leave(self, pending: Pending, reason: str) -> None:
        """A caller stopped waiting; an item nobody waits for any more is dropped unsent."""
        pending.waiters -= 1
        if pending.waiters > 0 or pending.sent_at is not None or pending.abandoned:
            return
        pending.abandoned = True
        self._queued -= 1
        self._metrics.queue_depth.set(self._queued)
        self._metrics.items_dropped.labels(reason).inc()
        self._forget(pending)
        pending.future.cancel()
        self._room.set()

    def _forget(self, pending: Pending) -> None:
        if self._in_flight.get(pending.key) is pending:
            del self._in_flight[pending.key]

    def _fail(self, pending: Pending, error: OnespaceError, reason: str) -> None:
        if not pending.abandoned and pending.sent_at is None:
            self._queued -= 1
            self._metrics.queue_depth.set(self._queued)
            self._metrics.items_dropped.labels(reason).inc()
        pending.abandoned = True
        self._forget(pending)
        if not pending.future.done():
            pending.future.set_exception(error)
        self._room.set()

    # --- the dispatcher's side -----------------------------------------------------------------
    async def _dispatch(self) -> None:
        while True:
            await self._work.wait()
            permit = await self.limiter.acquire()
            try:
                batch = await self._cut_batch()
            except BaseException:
                self.limiter.release(permit)
                raise
            if not batch:
                self.limiter.release(permit)
                self._work.clear()
                if any(self._groups.values()):
                    self._work.set()
                continue
            task = asyncio.create_task(self._call(batch, permit))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _cut_batch(self) -> list[Pending]:
        """The next batch: the group whose head waited longest, packed up to the provider's limit."""
        while True:
            group = self._oldest_group()
            if group is None:
                return []
            queue = self._groups[group]
            head = queue[0]
            limit = self._provider.max_batch(head.input.model, head.input.content.modality)
            age = time.monotonic() - head.enqueued_at
            if limit > 1 and len(queue) < limit and age < self._max_wait:
                self._work.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._work.wait(), self._max_wait - age)
                if len(queue) < limit and time.monotonic() - head.enqueued_at < self._max_wait:
                    continue
            batch: list[Pending] = []
            now = time.monotonic()
            while queue and len(batch) < limit:
                pending = queue.popleft()
                if pending.abandoned:
                    continue
                if pending.deadline <= now:
                    self._fail(
                        pending, DeadlineExceeded("deadline exceeded before the provider call"), "deadline"
                    )
                    continue
                batch.append(pending)
            if not queue:
                del self._groups[group]
            if batch:
                return batch

    def _oldest_group(self) -> GroupKey | None:
        oldest: tuple[float, GroupKey] | None = None
        for group, queue in list(self._groups.items()):
            while queue and queue[0].abandoned:
                queue.popleft()
            if not queue:
                del self._groups[group]
                continue
            if oldest is None or queue[0].enqueued_at < oldest[0]:
                oldest = (queue[0].enqueued_at, group)
        return None if oldest is None else oldest[1]

    async def _call(self, batch: list[Pending], permit: Permit) -> None:
        now = time.monotonic()
        model = batch[0].input.model
        modality = batch[0].input.content.modality.value
        queue_wait = self._histogram(self._metrics.queue_wait, model)
        for pending in batch:
            pending.sent_at = now
            queue_wait.observe(now - pending.enqueued_at)
        self._queued -= len(batch)
        self._metrics.queue_depth.set(self._queued)
        self._histogram(self._metrics.provider_batch_size, model).observe(len(batch))
        self._metrics.provider_in_flight.inc()
        self._room.set()
        self.provider_calls += 1
        token = _current_permit.set(permit)
        outcome = "ok"
        try:
            results = await self._provider.embed(
                [p.input for p in batch], deadline=max(p.deadline for p in batch)
            )
            if len(results) != len(batch):
                raise Internal(f"provider returned {len(results)} results for {len(batch)} inputs")
        except OnespaceError as exc:
            outcome = type(exc).__name__
            self.limiter.release(permit, throttled=isinstance(exc, ResourceExhausted))
            self._finish(batch, now, error=exc)
        except Exception as exc:
            outcome = "Internal"
            log.exception("provider %s failed", self._provider.name)
            self.limiter.release(permit)
            self._finish(batch, now, error=Internal(f"provider failure: {type(exc).__name__}: {exc}"))
        else:
            self.limiter.release(permit, succeeded=True)
            self._finish(batch, now, results=results)
        finally:
            _current_permit.reset(token)
            self._metrics.provider_in_flight.dec()
            duration = self._histogram(self._metrics.provider_duration, model, modality, outcome)
            duration.observe(time.monotonic() - now)

    def _finish(
        self,
        batch: list[Pending],
        started: float,
        results: list[ProviderResult] | None = None,
        error: OnespaceError | None = None,
    ) -> None:
        elapsed = time.monotonic() - started
        for i, pending in enumerate(batch):
            pending.provider_seconds = elapsed
            self._forget(pending)
            if pending.future.done():
                continue
            if results is not None:
                pending.future.set_result(results[i])
                if self._cache.capacity_bytes > 0:
                    self._cache.put(pending.key, results[i])
            else:
                assert error is not None
                pending.future.set_exception(error)
        self._metrics.cache_bytes.set(self._cache.nbytes)


def _consume(future: asyncio.Future[ProviderResult]) -> None:
    """Mark a future's exception as retrieved: nobody may be left waiting on an abandoned item."""
    if not future.cancelled():
        future.exception()
