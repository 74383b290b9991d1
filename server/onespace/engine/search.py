"""The search batcher: concurrent searches on one collection become one batched index call.

usearch serialises calls on one index, so many threads each searching alone get no parallelism;
one `search_many` call with `threads=cores` uses every core (docs/usearch.md). Each
collection has at most one batch in the index at a time; searches that arrive meanwhile form the
next batch, which is cut when it is full or when its first search has waited `max_wait`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from onespace.metrics import Metrics

if TYPE_CHECKING:  # the engine does not need the index at import time
    from onespace.index import Hit, Query
    from onespace.index.backend import CollectionHandle as Collection

__all__ = ["SearchBatcher"]


_Waiter = tuple["Query", "asyncio.Future[tuple[list[Hit], float]]"]


@dataclass(slots=True)
class _Lane:
    """The searches waiting on one collection, and the task serving them."""

    waiting: list[_Waiter] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class SearchBatcher:
    def __init__(self, metrics: Metrics, *, max_batch: int, max_wait_seconds: float, threads: int) -> None:
        self._metrics = metrics
        self._max_batch = max_batch
        self._max_wait = max_wait_seconds
        self._threads = threads
        self._lanes: dict[int, _Lane] = {}
        self.index_calls = 0

    async def search(self, collection: Collection, query: Query) -> tuple[list[Hit], float]:
        """Hits for `query`, and the seconds its batch spent inside the index."""
        lane = self._lanes.get(id(collection))
        if lane is None:
            lane = self._lanes[id(collection)] = _Lane()
        future: asyncio.Future[tuple[list[Hit], float]] = asyncio.get_running_loop().create_future()
        lane.waiting.append((query, future))
        lane.arrived.set()
        if lane.task is None:
            lane.task = asyncio.create_task(self._serve(collection, lane))
        return await future

    async def _serve(self, collection: Collection, lane: _Lane) -> None:
        try:
            while lane.waiting:
                first = time.monotonic()
                while len(lane.waiting) < self._max_batch:
                    remaining = first + self._max_wait - time.monotonic()
                    if remaining <= 0:
                        break
                    lane.arrived.clear()
                    try:
                        await asyncio.wait_for(lane.arrived.wait(), remaining)
                    except TimeoutError:
                        break
                batch = lane.waiting[: self._max_batch]
                del lane.waiting[: self._max_batch]
                live = [(q, f) for q, f in batch if not f.done()]
                if not live:
                    continue
                await self._run(collection, live)
        finally:
            lane.task = None
            if lane.waiting:  # arrived after the loop's last check
                lane.task = asyncio.create_task(self._serve(collection, lane))
            else:
                self._lanes.pop(id(collection), None)

    async def _run(self, collection: Collection, batch: list[_Waiter]) -> None:
        name = collection.config.name
        start = time.monotonic()
        self.index_calls += 1
        try:
            results = await asyncio.to_thread(collection.search_many, [q for q, _ in batch], self._threads)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        elapsed = time.monotonic() - start
        self._metrics.index_search.labels(name).observe(elapsed)
        self._metrics.search_batch_size.labels(name).observe(len(batch))
        for (_, future), hits in zip(batch, results, strict=True):
            if not future.done():
                future.set_result((hits, elapsed))
