"""The embed scheduler: every embedding the gateway makes goes through here.

    embed(input) ─▶ cache? ─▶ identical item in flight? join it ─▶ admission ─▶ group queue
                                                                                  │
    one dispatcher task: wait for work ─▶ acquire a limiter permit ─▶ cut a batch ─▶ call task
                         (drops abandoned and expired items, counts them)        │
                                                        results or one error to every caller

One task owns the queues (TEI's queue.rs); the buffers are bounded by `queue_capacity`; unary
callers are refused at once when it is full, stream callers wait (and their stream stops being
read, so HTTP/2 flow control pushes back on the client).

- **Queue depth.** An item counts in `queued` while its state is QUEUED and leaves the count
  once, synchronously, when it moves on: cut into a batch (SENT), or dropped unsent (DROPPED:
  its last caller left, its deadline passed, shutdown). One state field per item, so no order
  of leave, cancel, deadline and completion can take it out twice.
- **Which batch next.** A group (model, dimension, purpose, modality) is ready when it can fill
  a call (`Provider.max_batch`, 1 for media), or when its oldest item has waited
  `max_batch_wait_ms`; of the ready groups, the one whose oldest item waited longest goes
  first. While no group is ready the dispatcher waits for the first to become so, woken by
  every new item, so a text batch filling up never holds back an image queued beside it.
- **Interactive first.** An item a unary caller waits for (admitted `FAIL_FAST`) is cut before
  the stream items of its group, and a group holding one goes before groups without; a unary
  caller joining a queued stream item moves it up. The provider is told (`interactive=`) so its
  own queue does the same. A bulk load keeps a window of items queued (256 by default): behind
  it, one-text `Embed` calls beside a stream of texts waited 74-92 ms at the median, not 22-24.
- **No stream is stalled.** After `interactive_burst` (8) interactive items in a row have been
  cut, the next cuts go in arrival order (the group whose oldest item waited longest, that item
  first) until a stream item has gone. Where a call carries many inputs (the local provider),
  stream items fill the calls behind the interactive ones and this never binds; where it
  carries one (Nova on Bedrock, media), unary load that keeps every permit busy would otherwise
  hold a stream's items until their deadlines: with it, a stream waiting behind such load gets
  about one call in nine (exactly that when its items are older than the unary ones queued).
- **Failures.** A failed call fails every caller in it (throttling included: the limiter
  reacts, and the provider has already retried). Except: when a call carrying several inputs
  fails with InvalidArgument (the provider refused an input), the batch is split in halves
  and each half sent again, recursively, so only the callers of the refused input get the
  error (only InvalidArgument: FailedPrecondition and the rest describe the provider, not an
  input). The halves go one call at a time under the call's own permit (the limiter's count of
  calls in flight stays true); items whose deadline passed fail with DEADLINE_EXCEEDED instead
  of going again, and each extra call counts in `onespace_provider_retries_total{reason="split"}`
  and `split_calls`.
- No future is left pending, including at shutdown (calls still running after the grace period
  are cancelled and their callers told UNAVAILABLE). Timed waits use `asyncio.timeout`, not
  `asyncio.wait_for`: on Python 3.11 wait_for drops a cancellation that arrives in the loop turn
  its awaitable completes, which once left `stop()` waiting forever on the dispatcher.
- **Retries and permits.** The provider retries a throttled call under the call's permit, after
  the backoff it asks the scheduler for (`ProviderEvents.backoff`). If more permits are out than
  the limit (it was cut while they were held), the call gives its permit back, backs off
  without it and then queues first for the next one, so its retry goes out when a call has
  finished, not into a full upstream again (engine/limiter.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
import time
from collections.abc import AsyncGenerator, Callable, Hashable, Sequence
from dataclasses import dataclass

from prometheus_client import Histogram

from onespace.config import Settings
from onespace.engine.cache import EmbeddingCache
from onespace.engine.limiter import AdaptiveLimiter, Permit
from onespace.engine.pending import GroupKey, GroupQueue, Pending, State
from onespace.errors import (
    Cancelled,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    OnespaceError,
    ResourceExhausted,
    Unavailable,
)
from onespace.metrics import Metrics, code_label
from onespace.providers.base import EmbedInput, Provider, ProviderResult

__all__ = ["Admission", "EmbedOutcome", "EmbedScheduler", "GivenUp"]

log = logging.getLogger(__name__)
_current_call: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("call", default=None)


class Admission(enum.Enum):
    FAIL_FAST = "fail_fast"  # unary RPCs: RESOURCE_EXHAUSTED at once when the queue is full
    WAIT = "wait"  # streams: wait for room until the deadline


class GivenUp(Cancelled):
    """An input of an all-or-nothing group that another input's failure ended before it was done."""

    def __init__(self) -> None:
        super().__init__("given up: another input of the request failed")


@dataclass(frozen=True, slots=True)
class EmbedOutcome:
    """A result and how it was made (timings on the scheduler's clock, for metrics and traces)."""

    result: ProviderResult
    cached: bool
    queue_seconds: float
    provider_seconds: float
    arrived_at: float = 0.0  # when the caller asked for it
    sent_at: float = 0.0  # when its provider call started
    batch_size: int = 0  # inputs in the provider call that answered it
    joined: bool = False  # it joined an identical input already queued or in flight


@dataclass(slots=True)
class _Call:
    """One call task's permit (None while it queues for another after giving it back), and what its
    attempts (its split halves included) said about the upstream's capacity."""

    permit: Permit | None
    succeeded: bool = False
    throttled: bool = False


class EmbedScheduler:
    def __init__(
        self,
        provider: Provider,
        settings: Settings,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` must be the clock of the callers' deadlines and of the running loop's timers
        (`time.monotonic`); tests pass a virtual one."""
        self._provider = provider
        self._metrics = metrics
        self._clock = clock
        self._capacity = settings.queue_capacity
        self._max_wait = settings.max_batch_wait_ms / 1000
        self._burst = settings.interactive_burst
        self._interactive_run = 0  # interactive items cut since the last stream item
        self._pushback = settings.retry_pushback_ms / 1000
        self._cache = EmbeddingCache(settings.cache_bytes)
        self.limiter = AdaptiveLimiter(
            settings.concurrency_initial,
            settings.concurrency_min,
            settings.concurrency_max,
            on_change=metrics.concurrency_limit.set,
            on_pace=metrics.provider_pace.set,
        )
        # each group's items, interactive ones first, in arrival order (GroupQueue)
        self._groups: dict[GroupKey, GroupQueue] = {}
        self._in_flight: dict[Hashable, Pending] = {}
        self._queued = 0  # items in state QUEUED, exactly
        self._room = asyncio.Event()
        self._work = asyncio.Event()
        self._calls: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._closed = False
        self._histograms: dict[tuple[int, tuple[str, ...]], Histogram] = {}  # labelled children
        self.provider_calls = 0  # every call made, split halves included
        self.split_calls = 0  # of which: halves of a batch the provider refused as invalid
        provider.events = self

    # --- observability -------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Items admitted and waiting for a provider call (not yet cut into a batch, not dropped)."""
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
        call = _current_call.get()
        if call is not None and call.permit is not None:
            self.limiter.throttled(call.permit)

    def retried(self, model: str, reason: str) -> None:
        self._metrics.provider_retries.labels(model, reason).inc()

    async def backoff(self, model: str, reason: str, delay: float) -> None:
        call = _current_call.get()
        if call is not None and call.permit is not None and self.limiter.over_limit:
            await self._requeue(call, delay)
        else:
            await asyncio.sleep(delay)
            if call is not None and call.permit is not None and self.limiter.over_limit:  # cut meanwhile
                await self._requeue(call, 0.0)
        await self.limiter.paced()  # the retry takes its slot like any attempt

    async def _requeue(self, call: _Call, pause: float) -> None:
        """Give the permit of a call over the limit back, pause, then queue first for the next one."""
        assert call.permit is not None
        self.limiter.release(call.permit)  # its throttles were counted as they came
        call.permit = None
        if pause:
            await asyncio.sleep(pause)
        call.permit = await self.limiter.acquire(first=True)

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch(), name="embed-dispatcher")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Refuse new work, fail what is queued, let provider calls under way finish."""
        self._closed = True
        self._room.set()  # callers waiting for room wake up and see the scheduler closed
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        for queue in self._groups.values():
            while (pending := queue.popleft()) is not None:
                self._fail(pending, Unavailable("the server is shutting down"), "shutdown")
        self._groups.clear()
        self._publish()
        if self._calls:
            _, late = await asyncio.wait(self._calls, timeout=grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # --- the caller's side ---------------------------------------------------------------------
    async def embed(self, item: EmbedInput, *, deadline: float, admission: Admission) -> EmbedOutcome:
        """Embed one checked input; raises an OnespaceError (never leaves the caller hanging)."""
        start = self._clock()
        started = await self._start(item, deadline, admission)
        if isinstance(started, EmbedOutcome):
            return started
        pending, joined = started
        return await self._wait(pending, deadline, start, joined)

    async def embed_many(
        self, items: Sequence[EmbedInput], *, deadline: float, admission: Admission
    ) -> list[EmbedOutcome | OnespaceError]:
        """A unary request's inputs: embed checked inputs as `embed` does each (cache, joins,
        admission, one deadline), with one wait for them all instead of a task, a shield and a
        timeout per input, all or nothing. The wait ends at the first input that fails, and the
        inputs not done by then are given up as a cancelled caller's are (queued ones nobody else
        waits for are dropped unsent); their slots hold `GivenUp`, so the caller reports the
        failure that ended it. Otherwise each input gets its outcome; only cancellation is
        raised. (A stream's group wants every outcome, as it comes: `embed_as_done`.)"""
        start = self._clock()
        out: list[EmbedOutcome | OnespaceError | tuple[Pending, bool]] = []
        try:
            for item in items:
                try:
                    out.append(await self._start(item, deadline, admission))
                except OnespaceError as exc:
                    out.append(exc)
                    return self._given_up(out, len(items), start)
            waiting = {s[0].future for s in out if isinstance(s, tuple)}
            if waiting:
                remaining = max(0.0, deadline - self._clock())
                await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            for started in out:
                if isinstance(started, tuple) and not started[0].future.done():
                    self._leave(started[0], "cancelled")
            raise
        if any(f.done() and not f.cancelled() and f.exception() for f in waiting):
            return self._given_up(out, len(items), start)
        return [s if not isinstance(s, tuple) else self._outcome(s[0], start, s[1]) for s in out]

    async def embed_as_done(
        self, items: Sequence[EmbedInput], *, deadline: float, admission: Admission
    ) -> AsyncGenerator[list[tuple[int, EmbedOutcome | OnespaceError]], None]:
        """A stream's group: `embed_many`'s one wait for many inputs, but each input's outcome or
        error (by its position in `items`) is handed back as soon as it is known, in lists of
        those known together (cached and refused ones first), so no input waits for a slower
        one: under random throttling, a group of 16 almost always holds a call that is backing
        off. Only cancellation is raised. Inputs still unfinished when the consumer is
        cancelled or stops iterating are left as a cancelled caller leaves them."""
        start = self._clock()
        known: list[tuple[int, EmbedOutcome | OnespaceError]] = []
        waiting: dict[asyncio.Future[ProviderResult], list[tuple[int, Pending, bool]]] = {}
        try:
            for i, item in enumerate(items):
                try:
                    started = await self._start(item, deadline, admission)
                except OnespaceError as exc:
                    known.append((i, exc))
                    continue
                if isinstance(started, EmbedOutcome):
                    known.append((i, started))
                else:  # an input repeated in the group joins the same pending item
                    waiting.setdefault(started[0].future, []).append((i, *started))
            if known:
                yield known
            while waiting:
                remaining = deadline - self._clock()
                done: set[asyncio.Future[ProviderResult]] = set()
                if remaining > 0:
                    done, _ = await asyncio.wait(
                        waiting.keys(), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                # past the deadline, every input left gets DeadlineExceeded (`_outcome`)
                wave = [entry for future in done or list(waiting) for entry in waiting.pop(future)]
                yield [(i, self._outcome(pending, start, joined)) for i, pending, joined in wave]
        finally:
            for entries in waiting.values():
                for _, pending, _ in entries:
                    if not pending.future.done():
                        self._leave(pending, "cancelled")

    def _given_up(
        self, out: list[EmbedOutcome | OnespaceError | tuple[Pending, bool]], count: int, start: float
    ) -> list[EmbedOutcome | OnespaceError]:
        """An all-or-nothing group failed: what is done keeps its outcome, the rest is left as a
        cancelled caller leaves it, and each such slot (started or not) holds `GivenUp`."""
        done: list[EmbedOutcome | OnespaceError] = []
        for started in out:
            if not isinstance(started, tuple):
                done.append(started)
            elif started[0].future.done():
                done.append(self._outcome(started[0], start, started[1]))
            else:
                self._leave(started[0], "cancelled")
                done.append(GivenUp())
        return done + [GivenUp() for _ in range(count - len(out))]

    def _outcome(self, pending: Pending, start: float, joined: bool) -> EmbedOutcome | OnespaceError:
        """What a group's wait left for one input: its outcome, its error, or the deadline."""
        future = pending.future
        if not future.done():
            self._leave(pending, "deadline")
            return DeadlineExceeded("deadline exceeded while waiting for the embedding provider")
        if future.cancelled():  # dropped unsent (shutdown)
            return Unavailable("the server is shutting down")
        error = future.exception()
        if error is not None:  # the call's error; anything else is a bug, reported as such
            return error if isinstance(error, OnespaceError) else Internal(f"embedding failed: {error!r}")
        return self._made(pending, future.result(), start, joined)

    async def _start(
        self, item: EmbedInput, deadline: float, admission: Admission
    ) -> EmbedOutcome | tuple[Pending, bool]:
        """A cached outcome, or the queued (or in-flight) item to wait for and whether it was
        joined; waits for room in the queue under `admission`."""
        if self._closed:
            raise Unavailable("the server is shutting down")
        key = (item.content.digest(), item.model, item.dimension, item.purpose.value)
        if self._cache.capacity_bytes > 0:
            hit = self._cache.get(key)
            self._metrics.cache_requests.labels("hit" if hit else "miss").inc()
            if hit is not None:
                return EmbedOutcome(hit, True, 0.0, 0.0)
        interactive = admission is Admission.FAIL_FAST  # a unary caller waits for this one input
        pending = self._join(key, deadline, interactive)
        if pending is None:
            await self._admit(admission, deadline)
            pending = self._join(key, deadline, interactive)  # queued by someone while we waited?
        if pending is not None:
            return pending, True
        return self._enqueue(key, item, deadline, interactive), False

    def _join(self, key: Hashable, deadline: float, interactive: bool) -> Pending | None:
        pending = self._in_flight.get(key)
        if pending is None or pending.future.done():
            return None
        pending.waiters += 1
        pending.deadline = max(pending.deadline, deadline)
        if interactive and pending.state is State.QUEUED:
            self._groups[pending.group].promote(pending)
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
            remaining = deadline - self._clock()
            if remaining <= 0:
                self._metrics.rejected.labels("deadline").inc()
                raise DeadlineExceeded("deadline exceeded while waiting for room in the embedding queue")
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._room.wait()
            if self._closed:
                raise Unavailable("the server is shutting down")

    def _enqueue(self, key: Hashable, item: EmbedInput, deadline: float, interactive: bool) -> Pending:
        future: asyncio.Future[ProviderResult] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)
        pending = Pending(key, item, future, deadline, self._clock(), interactive=interactive)
        self._in_flight[key] = pending
        queue = self._groups.get(pending.group)
        if queue is None:
            queue = self._groups[pending.group] = GroupQueue()
        queue.append(pending)
        self._queued += 1
        self._metrics.queue_depth.set(self._queued)
        self._work.set()
        return pending

    async def _wait(self, pending: Pending, deadline: float, start: float, joined: bool) -> EmbedOutcome:
        try:
            async with asyncio.timeout(deadline - self._clock()):
                result = await asyncio.shield(pending.future)
        except TimeoutError:
            self._leave(pending, "deadline")
            raise DeadlineExceeded("deadline exceeded while waiting for the embedding provider") from None
        except asyncio.CancelledError:
            self._leave(pending, "cancelled")
            raise
        return self._made(pending, result, start, joined)

    @staticmethod
    def _made(pending: Pending, result: ProviderResult, start: float, joined: bool) -> EmbedOutcome:
        return EmbedOutcome(
            result,
            False,
            max(0.0, pending.sent_at - start),
            pending.provider_seconds,
            start,
            pending.sent_at,
            pending.batch_size,
            joined,
        )

    def _leave(self, pending: Pending, reason: str) -> None:
        """A caller stopped waiting; a queued item nobody waits for any more is dropped unsent (an
        item already sent runs on: its result still feeds the cache and later joiners)."""
        pending.waiters -= 1
        if pending.waiters > 0 or not self._dequeue(pending, State.DROPPED):
            return
        self._metrics.items_dropped.labels(reason).inc()
        self._forget(pending)
        pending.future.cancel()
        self._publish()

    def _dequeue(self, pending: Pending, state: State) -> bool:
        """The one place an item leaves the queue depth: only from QUEUED, so only once."""
        if pending.state is not State.QUEUED:
            return False
        pending.state = state
        self._queued -= 1
        return True

    def _publish(self) -> None:
        """The queue depth changed: show it, and wake callers waiting for room."""
        self._metrics.queue_depth.set(self._queued)
        self._room.set()

    def _forget(self, pending: Pending) -> None:
        if self._in_flight.get(pending.key) is pending:
            del self._in_flight[pending.key]

    def _fail(self, pending: Pending, error: OnespaceError, reason: str) -> None:
        """Drop an item unsent with `error` for its callers (the caller publishes the new depth)."""
        if self._dequeue(pending, State.DROPPED):
            self._metrics.items_dropped.labels(reason).inc()
        self._forget(pending)
        if not pending.future.done():
            pending.future.set_exception(error)

    # --- the dispatcher's side -----------------------------------------------------------------
    async def _dispatch(self) -> None:
        while True:
            if self._queued == 0:
                self._work.clear()
                await self._work.wait()
                continue
            permit = await self.limiter.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self.limiter.release(permit)
                raise
            if not batch:  # everything queued left while we waited
                self.limiter.release(permit)
                continue
            task = asyncio.create_task(self._call(batch, permit))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _next_batch(self) -> list[Pending]:
        """The next batch, cut from the ready group first in line (`_ready_group`); while no group
        is ready, wait for new items or for the first partial batch to have waited enough."""
        while self._queued > 0:
            self._work.clear()
            group, ready_in = self._ready_group()
            if group is not None:
                batch = self._cut(group)
                if batch:
                    return batch
                continue  # every item cut had expired
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ready_in):
                    await self._work.wait()
        return []

    def _limit(self, pending: Pending) -> int:
        return max(1, self._provider.max_batch(pending.input.model, pending.input.content.modality))

    def _ready_group(self) -> tuple[GroupKey | None, float | None]:
        """The ready group first in line; if none is ready, how long until one is.

        Ready: the group fills a call, or its oldest item has waited `max_wait`. First in line: a
        group holding interactive items, the one whose first interactive item waited longest;
        else the one whose oldest item did; on arrival order's turn (`_in_arrival_order`), the
        one whose oldest item did. (A queue's length may count items that left and are not yet
        skipped, so a batch may be cut early, never late.)
        """
        now = self._clock()
        fair = self._in_arrival_order
        first: tuple[bool, float, GroupKey] | None = None
        soonest: float | None = None
        for group, queue in list(self._groups.items()):
            interactive, head = queue.heads()
            if head is None:
                del self._groups[group]
                continue
            age = now - head.enqueued_at
            if len(queue) >= self._limit(head) or age >= self._max_wait:
                first_item = head if fair else (interactive or head)
                rank = (not fair and interactive is None, first_item.enqueued_at, group)
                if first is None or rank[:2] < first[:2]:
                    first = rank
            elif soonest is None or self._max_wait - age < soonest:
                soonest = self._max_wait - age
        return (None, soonest) if first is None else (first[2], None)

    @property
    def _in_arrival_order(self) -> bool:
        """Whether the next cut goes in arrival order: `interactive_burst` interactive items went
        in a row (see "No stream is stalled")."""
        return self._interactive_run >= self._burst

    def _cut(self, group: GroupKey) -> list[Pending]:
        """Take up to the provider's limit of items off `group`, interactive ones first (the
        oldest first on arrival order's turn); they leave the queue depth now."""
        queue = self._groups[group]
        head = queue.heads()[1]
        assert head is not None  # `_ready_group` found it just now
        limit = self._limit(head)
        now = self._clock()
        queue_wait = self._histogram(self._metrics.queue_wait, head.input.model)
        batch: list[Pending] = []
        fair = self._in_arrival_order
        while len(batch) < limit and (pending := queue.pop_oldest() if fair else queue.popleft()) is not None:
            if pending.deadline <= now:
                self._fail(
                    pending, DeadlineExceeded("deadline exceeded before the provider call"), "deadline"
                )
                continue
            self._dequeue(pending, State.SENT)
            pending.sent_at = now
            queue_wait.observe(now - pending.enqueued_at)
            batch.append(pending)
            fair = False
            self._interactive_run = self._interactive_run + 1 if pending.interactive else 0
        if not queue:
            del self._groups[group]
        self._publish()
        return batch

    async def _call(self, batch: list[Pending], permit: Permit) -> None:
        """One batch under one permit, split on refusal (see the module docstring); every caller
        in it is answered, also when the call is cancelled at shutdown."""
        started = self._clock()
        call = _Call(permit)
        token = _current_call.set(call)
        try:
            await self._send(batch, call, started, split=False)
        except asyncio.CancelledError:
            self._finish(batch, started, error=Unavailable("the server is shutting down"))
            raise
        finally:
            _current_call.reset(token)
            if call.permit is not None:
                self.limiter.release(call.permit, throttled=call.throttled, succeeded=call.succeeded)

    async def _send(self, batch: list[Pending], call: _Call, started: float, *, split: bool) -> None:
        if split:
            batch = self._still_wanted(batch)
            if not batch:
                return
        error = await self._attempt(batch, call, started, split=split)
        if error is None:
            return
        if isinstance(error, InvalidArgument) and len(batch) > 1:
            half = len(batch) // 2
            await self._send(batch[:half], call, started, split=True)
            await self._send(batch[half:], call, started, split=True)
            return
        self._finish(batch, started, error=error)

    def _still_wanted(self, batch: list[Pending]) -> list[Pending]:
        """The items of a split half worth another call: answered ones are skipped, expired ones failed."""
        now = self._clock()
        wanted = []
        for pending in batch:
            if pending.future.done():
                continue
            if pending.deadline <= now:
                self._finish(
                    [pending],
                    now,
                    error=DeadlineExceeded(
                        "deadline exceeded while its batch was split to find the input the provider refused"
                    ),
                )
                continue
            wanted.append(pending)
        return wanted

    async def _attempt(
        self, batch: list[Pending], call: _Call, started: float, *, split: bool
    ) -> OnespaceError | None:
        """One provider call; answers the batch on success, returns the error otherwise."""
        await self.limiter.paced()
        model = batch[0].input.model
        modality = batch[0].input.content.modality.value
        now = self._clock()
        self.provider_calls += 1
        if split:
            self.split_calls += 1
            self._metrics.provider_retries.labels(model, "split").inc()
        self._histogram(self._metrics.provider_batch_size, model).observe(len(batch))
        self._metrics.provider_in_flight.inc()
        error: OnespaceError | None = None
        outcome = "CANCELLED"
        try:
            results = await self._provider.embed(
                [p.input for p in batch],
                deadline=max(p.deadline for p in batch),
                interactive=any(p.interactive for p in batch),
            )
            if len(results) != len(batch):
                raise Internal(f"provider returned {len(results)} results for {len(batch)} inputs")
        except OnespaceError as exc:
            error, outcome = exc, code_label(type(exc).__name__)
            call.throttled = call.throttled or isinstance(exc, ResourceExhausted)
        except Exception as exc:
            log.exception("provider %s failed", self._provider.name)
            error, outcome = Internal(f"provider failure: {type(exc).__name__}: {exc}"), "INTERNAL"
        else:
            outcome = "OK"
            call.succeeded = True
            self._finish(batch, started, results=results)
        finally:
            self._metrics.provider_in_flight.dec()
            duration = self._histogram(self._metrics.provider_duration, model, modality, outcome)
            duration.observe(self._clock() - now)
        return error

    def _finish(
        self,
        batch: list[Pending],
        started: float,
        results: list[ProviderResult] | None = None,
        error: OnespaceError | None = None,
    ) -> None:
        elapsed = self._clock() - started
        for i, pending in enumerate(batch):
            self._forget(pending)
            if pending.future.done():
                continue
            pending.provider_seconds = elapsed
            pending.batch_size = len(batch)
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
