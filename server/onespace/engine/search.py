"""The search batcher: concurrent searches on one collection become one batched index call.

usearch serialises calls on one index, so many threads each searching alone get no parallelism;
one `search_many` call with `threads=cores` uses every core (docs/usearch.md). Each
collection has at most one batch in the index at a time; searches that arrive meanwhile form the
next batch, which is cut when it is full or when its first search has waited `max_wait`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from onespace.engine.lanes import Lane, Lanes
from onespace.errors import DeadlineExceeded
from onespace.metrics import Metrics

if TYPE_CHECKING:  # the engine does not need the index at import time
    from onespace.index import Hit
    from onespace.index.backend import CollectionHandle as Collection
    from onespace.index.validate import CheckedQuery

__all__ = ["IndexCall", "SearchBatcher"]


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` must be the clock of the callers' deadlines (`time.monotonic`); tests pass
        another."""
        self._metrics = metrics
        self._clock = clock
        self._max_batch = max_batch
        self._max_wait = max_wait_seconds
        self._threads = threads
        self._lanes: Lanes[_Waiter] = Lanes(self._serve_round)
        self.index_calls = 0

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
        start = time.monotonic()
        self.index_calls += 1
        try:
            results = await asyncio.to_thread(collection.search_many, [w[0] for w in batch], self._threads)
        except BaseException as exc:
            for _, future, _, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        call = IndexCall(start, time.monotonic() - start, len(batch))
        self._metrics.index_search.labels(name).observe(call.seconds)
        self._metrics.search_batch_size.labels(name).observe(len(batch))
        for (_, future, _, _), hits in zip(batch, results, strict=True):
            if not future.done():
                future.set_result((hits, call))
