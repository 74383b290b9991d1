"""The search batcher: concurrent searches on one collection become one batched index call.

usearch serialises calls on one index, so many threads each searching alone get no parallelism;
one `search_many` call with `threads=cores` uses every core (docs/usearch.md). Each
collection has at most one batch in the index at a time; searches that arrive meanwhile form the
next batch, which is cut when it is full or when its first search has waited `max_wait`.

Where a batch runs: a short one on the event loop itself, a long one on a thread. Handing a batch
to a thread and its hits back costs more than a short search: two GIL hand-offs, and a search
thread whose Python steps (planning, rerank, hits) wait for the GIL between its usearch and numpy
calls while the event loop serves RPCs. With 64 callers of single-query Search on 2 cores, the
batches on the loop served 10-30% more searches a second (docs/architecture.md). A batch runs on
the loop when the collection says its search is memory work (`search_in_memory`: no filter reading
SQLite, no network) and the collection's recent cost per query times the batch's size is within
`inline_seconds` (default 5 ms: the interpreter's switch interval, as long as a search thread's
Python may already hold the GIL away from the loop). A collection's first batch runs on a thread
and is timed; a batch slower than the estimate raises it at once, faster ones lower it gently. Rows
not yet in the HNSW index are scanned exactly by every query, so a tail that has grown by more than
`TAIL_SLACK` rows since the estimate was made sends the next batch to a thread, where it is timed
with that tail. A batch on the loop is timed by the clock; one on a thread by `thread_stopwatch`:
that thread's CPU time, which leaves out its waits for the GIL (its wall time under load would keep
every batch on a thread) and, since the calling thread takes its share of usearch's work, came
within 1-5% of the wall time of the same batch alone (100k x 1024, batches of 1-64, two usearch
threads) - unless the search waited for the disk (a page fault or a read), which a search on the
loop would wait for too: then its wall time.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from onespace.engine.lanes import Lane, Lanes
from onespace.engine.recall import RecallSampler
from onespace.engine.stopwatch import Stopwatch, thread_stopwatch
from onespace.errors import DeadlineExceeded
from onespace.metrics import Metrics

if TYPE_CHECKING:  # the engine does not need the index at import time
    from onespace.index import Hit
    from onespace.index.backend import CollectionHandle as Collection
    from onespace.index.validate import CheckedQuery

__all__ = ["IndexCall", "SearchBatcher"]

# How far one faster batch moves a collection's cost estimate toward its own cost (a slower batch
# replaces the estimate): a burst of cheap batches cannot hide that a slow one was seen.
_EASE = 0.25
# Unindexed rows a tail may grow by, since a collection's cost was measured, before the next batch
# is timed on a thread again: every query scans the tail exactly, and 1,024 more 1024-d rows cost
# a query ~0.1-0.3 ms.
TAIL_SLACK = 1024


@dataclass(frozen=True, slots=True)
class IndexCall:
    """One batched index search, shared by every query in it (one object per batch)."""

    started: float  # time.monotonic()
    seconds: float
    size: int  # queries in the batch


_Result = tuple["list[Hit]", IndexCall]
_Waiter = tuple["CheckedQuery", "asyncio.Future[_Result]", float, float]  # query, future, deadline, arrival


class SearchBatcher:
    def __init__(
        self,
        metrics: Metrics,
        *,
        max_batch: int,
        max_wait_seconds: float,
        threads: int,
        inline_seconds: float = 0.0,
        recall: RecallSampler | None = None,
        clock: Callable[[], float] = time.monotonic,
        thread_timer: Stopwatch = thread_stopwatch,
    ) -> None:
        """`inline_seconds`: the longest expected index search run on the event loop (0: none).
        `recall`: offered every answered batch (engine.recall). `clock` must be the clock of the
        callers' deadlines (`time.monotonic`) and times the searches on the loop; `thread_timer`
        those on a thread. Tests pass others."""
        if not inline_seconds >= 0:
            raise ValueError(f"search_inline_ms must be 0 or more, not {inline_seconds * 1000}")
        self._metrics = metrics
        self._clock = clock
        self._thread_timer = thread_timer
        self._max_batch = max_batch
        self._max_wait = max_wait_seconds
        self._threads = threads
        self._inline = inline_seconds
        self._recall = recall
        # Seconds per query of each collection's recent index searches, and its unindexed rows when
        # last measured (gone with the collection).
        self._cost: weakref.WeakKeyDictionary[Collection, tuple[float, int]] = weakref.WeakKeyDictionary()
        self._lanes: Lanes[_Waiter] = Lanes(self._serve_round)
        self.index_calls = 0
        self.inline_calls = 0

    async def search(
        self, collection: Collection, query: CheckedQuery, deadline: float = math.inf
    ) -> _Result:
        """Hits for `query`, and the index call of its batch."""
        return await self.submit(collection, query, deadline)

    def submit(
        self, collection: Collection, query: CheckedQuery, deadline: float = math.inf
    ) -> asyncio.Future[_Result]:
        """Queue `query` for the collection's next batch; the future resolves like `search`.
        Many queries submitted in one event-loop tick share a batch, with no task per query. A
        query whose deadline (monotonic) has passed when its batch is cut is dropped unsearched."""
        future: asyncio.Future[_Result] = asyncio.get_running_loop().create_future()
        self._lanes.submit(collection, (query, future, deadline, self._clock()))
        return future

    async def _serve_round(self, collection: Collection, lane: Lane[_Waiter]) -> None:
        """Cut a batch when it is full or its first search has waited `max_wait` (searches that
        arrived during the batch before have, mostly), and run it."""
        await lane.wait_for_more(
            lane.waiting[0][3] + self._max_wait, lambda: len(lane.waiting) >= self._max_batch, self._clock
        )
        batch = lane.waiting[: self._max_batch]
        del lane.waiting[: self._max_batch]
        now = self._clock()
        live = []
        for waiter in batch:
            future = waiter[1]
            if future.done():
                continue  # the caller left
            if waiter[2] <= now:
                self._metrics.expired.labels("search").inc()
                future.set_exception(DeadlineExceeded("the deadline passed before the index search"))
                continue
            live.append(waiter)
        if live:
            await self._run(collection, live)

    async def _run(self, collection: Collection, batch: list[_Waiter]) -> None:
        name = collection.config.name
        queries = [w[0] for w in batch]
        if collection not in self._cost:  # both series from the first batch: a rate needs two samples
            for runs_on in ("event_loop", "thread"):
                self._metrics.search_index_calls.labels(name, runs_on)
        start = time.monotonic()
        self.index_calls += 1
        try:  # whatever fails here fails every caller of the batch, never leaves one waiting
            tail = collection.unindexed_rows() if self._inline else 0
            if self._runs_inline(collection, queries, tail):
                self.inline_calls += 1
                self._metrics.search_index_calls.labels(name, "event_loop").inc()
                results, seconds = self._timed(collection, queries, self._loop_timer)
            else:
                self._metrics.search_index_calls.labels(name, "thread").inc()
                timer = self._thread_timer
                results, seconds = await asyncio.to_thread(self._timed, collection, queries, timer)
        except BaseException as exc:
            for _, future, _, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._learn(collection, seconds / len(batch), tail)
        call = IndexCall(start, time.monotonic() - start, len(batch))
        self._metrics.index_search.labels(name).observe(call.seconds)
        self._metrics.search_batch_size.labels(name).observe(len(batch))
        for (_, future, _, _), hits in zip(batch, results, strict=True):
            if not future.done():
                future.set_result((hits, call))
        if self._recall is not None:
            self._recall.offer(collection, queries, results)

    def _runs_inline(self, collection: Collection, queries: Sequence[CheckedQuery], tail: int) -> bool:
        """Whether this batch runs on the event loop (see the module's docstring)."""
        if not self._inline:
            return False
        known = self._cost.get(collection)
        if known is None or known[0] * len(queries) > self._inline or tail > known[1] + TAIL_SLACK:
            return False
        return collection.search_in_memory(queries)

    def _loop_timer(self) -> Callable[[], float]:
        start = self._clock()
        return lambda: self._clock() - start

    def _timed(
        self, collection: Collection, queries: list[CheckedQuery], timer: Stopwatch
    ) -> tuple[list[list[Hit]], float]:
        """The hits, and the seconds the search took by `timer` (started where it runs)."""
        elapsed = timer()
        results = collection.search_many(queries, self._threads)
        return results, elapsed()

    def _learn(self, collection: Collection, per_query: float, tail: int) -> None:
        known = self._cost.get(collection)
        if known is None or per_query >= known[0]:
            self._cost[collection] = per_query, tail
        else:
            self._cost[collection] = known[0] + (per_query - known[0]) * _EASE, tail
