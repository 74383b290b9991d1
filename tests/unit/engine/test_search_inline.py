"""Where the search batcher runs a batch: short memory-only searches on the event loop, the rest
on a thread, by each collection's measured cost per query (the clock is the test's)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from onespace.engine.search import TAIL_SLACK, SearchBatcher
from onespace.engine.stopwatch import thread_stopwatch
from onespace.errors import InvalidArgument, NotFound
from onespace.metrics import Metrics

BUDGET = 0.005  # seconds


class _Collection:
    """Answers each query with itself; each search advances the test's clock by `cost` a query
    and records the thread it ran on."""

    def __init__(self, now: list[float], name: str = "c", *, in_memory: bool = True) -> None:
        self.config = type("Config", (), {"name": name})()
        self.now = now
        self.cost = 0.0001
        self.in_memory = in_memory
        self.ran_on: list[int] = []
        self.fail: Exception | None = None
        self.tail = 0

    def unindexed_rows(self) -> int:
        return self.tail

    def search_in_memory(self, queries: list[Any]) -> bool:
        return self.in_memory

    def search_many(self, queries: list[Any], threads: int = 0) -> list[list[Any]]:
        self.ran_on.append(threading.get_ident())
        self.now[0] += self.cost * len(queries)
        if self.fail is not None:
            raise self.fail
        return [[q] for q in queries]


def _batcher(now: list[float], inline: float = BUDGET, metrics: Metrics | None = None) -> SearchBatcher:
    return SearchBatcher(
        metrics or Metrics(),
        max_batch=64,
        max_wait_seconds=0.0,
        threads=1,
        inline_seconds=inline,
        clock=lambda: now[0],
        thread_timer=lambda: _since(now[0], now),
    )


def _since(start: float, now: list[float]) -> Callable[[], float]:
    return lambda: now[0] - start


async def _batch(batcher: SearchBatcher, collection: _Collection, size: int) -> None:
    """One batch of `size` searches (submitted in one tick, so they share one index call)."""
    futures = [batcher.submit(collection, f"q{i}") for i in range(size)]  # type: ignore[arg-type]
    results = await asyncio.gather(*futures)
    assert [hits for hits, _ in results] == [[f"q{i}"] for i in range(size)]
    assert {call.size for _, call in results} == {size}


def _where(collection: _Collection) -> list[str]:
    loop = threading.get_ident()
    return ["loop" if ident == loop else "thread" for ident in collection.ran_on]


async def test_a_collections_first_batch_runs_on_a_thread_and_short_ones_after_it_on_the_loop() -> None:
    now = [0.0]
    metrics = Metrics()
    batcher = _batcher(now, metrics=metrics)
    collection = _Collection(now)
    sample = metrics.registry.get_sample_value
    await _batch(batcher, collection, 8)
    # Both series exist from the first batch (a rate over a counter needs two samples of it).
    assert sample("onespace_search_index_calls_total", {"collection": "c", "runs_on": "event_loop"}) == 0
    for _ in range(2):
        await _batch(batcher, collection, 8)  # 8 x 0.1 ms: within 5 ms
    assert _where(collection) == ["thread", "loop", "loop"]
    assert batcher.inline_calls == 2 and batcher.index_calls == 3
    assert sample("onespace_search_index_calls_total", {"collection": "c", "runs_on": "thread"}) == 1
    assert sample("onespace_search_index_calls_total", {"collection": "c", "runs_on": "event_loop"}) == 2


async def test_a_batch_expected_to_take_longer_than_the_budget_runs_on_a_thread() -> None:
    now = [0.0]
    batcher = _batcher(now)
    collection = _Collection(now)
    collection.cost = 0.001  # 1 ms a query
    await _batch(batcher, collection, 2)  # measured: 1 ms a query
    await _batch(batcher, collection, 5)  # 5 ms expected: at the budget, on the loop
    await _batch(batcher, collection, 6)  # 6 ms expected: a thread
    assert _where(collection) == ["thread", "loop", "thread"]


async def test_a_slow_batch_raises_the_estimate_at_once_and_cheap_ones_lower_it_gently() -> None:
    now = [0.0]
    batcher = _batcher(now)
    collection = _Collection(now)
    await _batch(batcher, collection, 1)
    await _batch(batcher, collection, 1)
    collection.cost = 0.010  # e.g. a tail of unindexed rows to scan, or page faults
    await _batch(batcher, collection, 1)  # on the loop (expected 0.1 ms), took 10 ms
    collection.cost = 0.0001
    for _ in range(4):
        await _batch(batcher, collection, 1)
    # The estimate after the slow batch is 10 ms, then 7.5, 5.7 and 4.3 (a quarter of the way to
    # 0.1 each time): three batches on a thread, then the loop again.
    assert _where(collection) == ["thread", "loop", "loop", "thread", "thread", "thread", "loop"]


async def test_a_grown_unindexed_tail_is_timed_on_a_thread_before_the_loop_takes_it() -> None:
    """Every query scans the rows the index has not taken yet: a tail grown by more than
    TAIL_SLACK rows since the last measurement may have made the searches far slower."""
    now = [0.0]
    batcher = _batcher(now)
    collection = _Collection(now)
    await _batch(batcher, collection, 4)  # measured, with no tail
    collection.tail = TAIL_SLACK  # grown by the slack: still the loop
    await _batch(batcher, collection, 4)
    collection.tail = 2 * TAIL_SLACK + 1  # grown by more: a thread, timed with this tail
    await _batch(batcher, collection, 4)
    await _batch(batcher, collection, 4)  # measured with it: the loop again
    collection.tail = 0  # indexed meanwhile
    await _batch(batcher, collection, 4)
    assert _where(collection) == ["thread", "loop", "thread", "loop", "loop"]


async def test_searches_that_are_not_memory_work_never_run_on_the_loop() -> None:
    now = [0.0]
    batcher = _batcher(now)
    remote = _Collection(now, in_memory=False)  # e.g. Milvus, or a filter that reads SQLite
    for _ in range(3):
        await _batch(batcher, remote, 4)
    assert _where(remote) == ["thread"] * 3 and batcher.inline_calls == 0


async def test_a_budget_of_zero_keeps_every_batch_on_a_thread() -> None:
    now = [0.0]
    batcher = _batcher(now, inline=0.0)
    collection = _Collection(now)
    for _ in range(3):
        await _batch(batcher, collection, 4)
    assert _where(collection) == ["thread"] * 3


async def test_estimates_are_per_collection() -> None:
    now = [0.0]
    batcher = _batcher(now)
    known, new = _Collection(now, "known"), _Collection(now, "new")
    await _batch(batcher, known, 4)
    await _batch(batcher, known, 4)
    await _batch(batcher, new, 4)
    assert _where(known) == ["thread", "loop"] and _where(new) == ["thread"]


async def test_an_error_in_a_search_on_the_loop_reaches_every_caller_and_the_next_batch_runs() -> None:
    now = [0.0]
    batcher = _batcher(now)
    collection = _Collection(now)
    await _batch(batcher, collection, 2)
    collection.fail = InvalidArgument("vector", "not finite")
    futures = [batcher.submit(collection, q) for q in ("a", "b")]  # type: ignore[arg-type]
    for future in futures:
        with pytest.raises(InvalidArgument, match="vector: not finite"):
            await future
    collection.fail = None
    await _batch(batcher, collection, 2)
    assert _where(collection) == ["thread", "loop", "loop"]


async def test_a_collection_gone_before_its_batch_fails_every_caller_of_it() -> None:
    """Asking a deleted collection for its tail may raise: the batch's callers get the error
    instead of waiting for their deadlines, and the next batch is served."""
    now = [0.0]
    batcher = _batcher(now)
    collection = _Collection(now)
    await _batch(batcher, collection, 2)

    def gone() -> int:
        raise NotFound("collection 'c' was deleted")

    collection.unindexed_rows = gone  # type: ignore[method-assign]
    futures = [batcher.submit(collection, q) for q in ("a", "b")]  # type: ignore[arg-type]
    for future in futures:
        with pytest.raises(NotFound, match="deleted"):
            await asyncio.wait_for(future, 10)
    del collection.unindexed_rows
    await _batch(batcher, collection, 2)


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="search_inline_ms must be 0 or more"):
        SearchBatcher(Metrics(), max_batch=8, max_wait_seconds=0.0, threads=1, inline_seconds=-0.001)


def test_a_thread_is_timed_by_its_cpu_unless_it_waited_for_the_disk() -> None:
    """A search thread's waits for the GIL are not its cost (on the loop it would not wait for
    the GIL), so its CPU time counts; a page fault or a disk read it waited for would stall the
    loop too, so then its wall time counts."""
    usage = [(1.0, 7)]  # CPU seconds, disk waits
    elapsed = thread_stopwatch(lambda: usage[0])
    usage[0] = (61.0, 7)
    assert elapsed() == pytest.approx(60.0)
    usage[0] = (61.0, 8)  # waited for the disk: the wall time since the start (not a minute)
    assert 0 <= elapsed() < 30

    real = thread_stopwatch()
    threading.Event().wait(0.02)  # waiting, not working: hardly any CPU time
    assert real() < 0.015
