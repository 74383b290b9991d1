"""Recall on live traffic: now and then one search the batcher has just answered is run again as
an exact scan of every item that could match, and the share of the exact top k its hits reached
goes to `onespace_search_recall{collection}`.

Why: what `expansion_search` and `rerank_factor` buy depends on the data and on the queries
(docs/tuning.md measures it on a sample of queries kept for the purpose). A collection tuned for
speed, or one whose data has drifted since it was tuned, shows here what its callers actually get.

A served hit counts as found when its score reaches the exact k-th best score, so an item that
ties with one of the exact top k (a duplicate stored under another id) is as good an answer. The
scan uses the search's own rank vector and scoring kernel, so an item scores the same in both.
Writes between the search and its scan move the reference a little (an item added since can only
lower a sample; one deleted since may raise it); the metric is an estimate over many samples.

Cost: a scan reads every stored vector that could match, at the query's rank dimension (100k x
1024 f16: ~200 MB, 8-9 ms of one core). The sampler spends at most `budget` of one core: after a
scan that took s seconds of its thread's CPU (engine/stopwatch.py: its wall time if it waited for
the disk), no sample is taken for s / budget seconds. One scan at a time, on a thread of its own
at the server's priority: the budget already bounds its CPU, and a thread below the server's
priority that is handed the GIL for a scan's Python steps can keep the event loop waiting while
the OS runs other threads first. The batcher hands over each answered batch, and a batch costs the
sampler a clock read unless a sample is due. Side by side (tests/benchmarks/
test_recall_sampling.py, 20k x 1024, three runs): at 0.01, 0.96-1.01 of the Search throughput
with sampling off; at 0.05, 0.88-0.90: more than the budget's own share, as each scan streams the
stored vectors through the caches the searches use.

The last `RECENT` sampled queries of each collection (with a recall: they matched something) are
kept, as asked (vector, k, rank dimension, modality filter): TuneCollection tunes on them when its
caller sends no queries, so a collection can be tuned on the traffic it actually serves. A
uniform draw of one query per sample, so a sample of what callers ask, not of who asks most often
in a burst; in memory only (512 x 4 KB a 1024-d collection at most), forgotten with the collection.

Off by default (`--recall-sample-budget 0`): the scans page every stored vector into memory,
which a collection that serves from its index alone (a full-length index) would otherwise leave
on disk.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from onespace.engine.stopwatch import Stopwatch, thread_stopwatch
from onespace.errors import OnespaceError
from onespace.metrics import Metrics

if TYPE_CHECKING:
    from onespace.index import Hit
    from onespace.index.backend import CollectionHandle
    from onespace.index.validate import CheckedQuery

__all__ = ["RECENT", "RecallSampler", "recall"]

log = logging.getLogger(__name__)

RECENT = 512  # sampled queries kept per collection, the latest
_TIE = 1e-6  # relative slack for a score equal to the k-th best (the same kernel, so exact bits)


def recall(scores: Sequence[float], exact: npt.NDArray[np.float32]) -> float | None:
    """The share of the exact top k (`exact`, best first) that hits with `scores` reached; None
    when nothing matched (there was nothing to find)."""
    if not len(exact):
        return None
    kth = float(exact[-1])
    bar = kth - _TIE * max(1.0, abs(kth))
    found = sum(1 for score in scores if score >= bar)
    return min(found, len(exact)) / len(exact)


class RecallSampler:
    def __init__(
        self,
        metrics: Metrics,
        *,
        budget: float,
        clock: Callable[[], float] = time.monotonic,
        thread_timer: Stopwatch = thread_stopwatch,
        executor: ThreadPoolExecutor | None = None,
        seed: int | None = None,
    ) -> None:
        """`budget`: the share of one core the exact scans may take (0: never sample). `clock`
        spaces the samples and `thread_timer` times each scan on its thread; tests pass their
        own, and an executor."""
        if not 0.0 <= budget <= 1.0:
            raise ValueError(f"recall_sample_budget must be within 0..1, not {budget}")
        self._metrics = metrics
        self._budget = budget
        self._clock = clock
        self._thread_timer = thread_timer
        self._executor = executor
        self._random = random.Random(seed)
        self._next = 0.0  # the clock time before which no sample is taken
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._recent: dict[str, deque[CheckedQuery]] = {}
        self.samples = 0  # scans that gave a recall (for tests and the benchmark)

    @property
    def enabled(self) -> bool:
        return self._budget > 0.0

    def offer(
        self, collection: CollectionHandle, queries: Sequence[CheckedQuery], results: Sequence[list[Hit]]
    ) -> None:
        """A batch the batcher has answered; one of its queries is scanned if a sample is due
        (event loop only; returns at once)."""
        if not self._budget or self._closed or self._task is not None or self._clock() < self._next:
            return
        i = self._random.randrange(len(queries))
        query = queries[i]
        if not collection.search_in_memory([query]):
            return  # a filter read from disk: the scan would be a lookup of its own
        scores = [hit.score for hit in results[i]]
        self._task = asyncio.create_task(self._sample(collection, query, scores))

    async def _sample(self, collection: CollectionHandle, query: CheckedQuery, scores: list[float]) -> None:
        spent = [0.0]  # the scan's seconds by `thread_timer`, set on its thread even if it fails
        try:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="onespace-recall")
            loop = asyncio.get_running_loop()
            exact = await loop.run_in_executor(self._executor, self._scan, collection, query, spent)
        except OnespaceError as exc:  # deleted or closed meanwhile: nothing to measure
            log.debug("recall sample of %s skipped: %s", collection.name, exc)
            exact = None
        except Exception:  # never let a sample break serving; say why
            log.exception("recall sample of %s failed", collection.name)
            exact = None
        finally:
            self._next = self._clock() + spent[0] / self._budget
            self._task = None
        found = recall(scores, exact) if exact is not None else None
        if found is not None:
            self.samples += 1
            self._metrics.search_recall.labels(collection.name).observe(found)
            self._recent.setdefault(collection.name, deque(maxlen=RECENT)).append(query)

    def recent(self, collection: str) -> list[CheckedQuery]:
        """The latest sampled queries of `collection` (stored name), oldest first."""
        return list(self._recent.get(collection, ()))

    def forget(self, collection: str) -> None:
        """Drop `collection`'s sampled queries (it was deleted)."""
        self._recent.pop(collection, None)

    def _scan(
        self, collection: CollectionHandle, query: CheckedQuery, spent: list[float]
    ) -> npt.NDArray[np.float32] | None:
        elapsed = self._thread_timer()
        try:
            return collection.exact_scores(query)
        finally:
            spent[0] = elapsed()

    async def settled(self) -> None:
        """Return once no scan is in progress (its recall, if any, observed)."""
        task = self._task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        """Take no more samples, wait for a scan in progress, then release the thread."""
        self._closed = True
        await self.settled()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
