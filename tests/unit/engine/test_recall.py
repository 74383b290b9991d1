"""The recall sampler: which answered searches it scans, how it spaces the scans to its budget of
one core, and what it observes (the clock is the test's; scans run on a real thread)."""

from __future__ import annotations

import asyncio
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from onespace.engine.recall import RECENT, RecallSampler, recall
from onespace.errors import NotFound
from onespace.metrics import Metrics

SCAN = 0.01  # seconds each fake scan advances the test's clock


class _Collection:
    """Scans return `exact` and take `SCAN` seconds of the test's clock; `gate` holds a scan."""

    def __init__(self, now: list[float], exact: list[float] | None = None) -> None:
        self.name = "c"
        self.now = now
        self.exact = None if exact is None else np.asarray(exact, dtype=np.float32)
        self.scans = 0
        self.in_memory = True
        self.fail: Exception | None = None
        self.gate: threading.Event | None = None

    def search_in_memory(self, queries: list[Any]) -> bool:
        return self.in_memory

    def exact_scores(self, query: Any) -> np.ndarray | None:
        if self.gate is not None:
            self.gate.wait(5)
        self.scans += 1
        self.now[0] += SCAN
        if self.fail is not None:
            raise self.fail
        return self.exact


def _hits(*scores: float) -> list[Any]:
    return [SimpleNamespace(score=s) for s in scores]


def _observed(metrics: Metrics, name: str = "c") -> tuple[float, float]:
    """(count, sum) of the collection's recall observations."""
    count = metrics.registry.get_sample_value("onespace_search_recall_count", {"collection": name})
    total = metrics.registry.get_sample_value("onespace_search_recall_sum", {"collection": name})
    return count or 0.0, total or 0.0


def _sampler(now: list[float], metrics: Metrics, budget: float = 0.1) -> RecallSampler:
    """Scans are timed by the test's clock too: a scan costs the SCAN seconds it advances it."""

    def stopwatch() -> Any:
        start = now[0]
        return lambda: now[0] - start

    return RecallSampler(
        metrics,
        budget=budget,
        clock=lambda: now[0],
        thread_timer=stopwatch,
        executor=ThreadPoolExecutor(1),
        seed=1,
    )


def test_recall_counts_hits_that_reach_the_exact_kth_score_ties_included() -> None:
    exact = np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32)
    assert recall([0.9, 0.8, 0.7, 0.6], exact) == 1.0
    assert recall([0.9, 0.8, 0.55, 0.5], exact) == 0.5
    assert recall([0.9, 0.8, 0.6, 0.6], exact) == 1.0  # a duplicate of the 4th is as good
    assert recall([0.9, 0.6000001, 0.3, 0.2], exact) == 0.5  # within the tie slack of the 4th
    assert recall([0.95, 0.9, 0.9, 0.9, 0.9], exact) == 1.0  # never above 1
    assert recall([0.9], np.array([0.9], dtype=np.float32)) == 1.0  # fewer matches than k
    assert recall([], np.array([0.5], dtype=np.float32)) == 0.0
    assert recall([0.5], np.zeros(0, dtype=np.float32)) is None  # nothing matched: no sample


async def test_a_due_sample_is_scanned_and_observed() -> None:
    now, metrics = [100.0], Metrics()
    sampler = _sampler(now, metrics)
    c = _Collection(now, exact=[0.9, 0.8, 0.7, 0.6])
    sampler.offer(c, ["q"], [_hits(0.9, 0.8, 0.55, 0.5)])
    await sampler.settled()
    assert c.scans == 1 and sampler.samples == 1
    assert _observed(metrics) == (1.0, 0.5)
    await sampler.close()


async def test_scans_are_spaced_to_the_budget() -> None:
    """A scan of SCAN seconds at a budget of 0.1 of a core: no sample for SCAN / 0.1 after it."""
    now, metrics = [100.0], Metrics()
    sampler = _sampler(now, metrics, budget=0.1)
    c = _Collection(now, exact=[1.0])
    sampler.offer(c, ["q"], [_hits(1.0)])
    await sampler.settled()
    assert c.scans == 1
    ended = now[0]
    now[0] = ended + SCAN / 0.1 - 0.001
    sampler.offer(c, ["q"], [_hits(1.0)])
    await sampler.settled()
    assert c.scans == 1
    now[0] = ended + SCAN / 0.1 + 1e-6
    sampler.offer(c, ["q"], [_hits(1.0)])
    await sampler.settled()
    assert c.scans == 2
    await sampler.close()


async def test_one_scan_at_a_time() -> None:
    now, metrics = [100.0], Metrics()
    sampler = _sampler(now, metrics, budget=1.0)
    c = _Collection(now, exact=[1.0])
    c.gate = threading.Event()
    sampler.offer(c, ["q"], [_hits(1.0)])
    for _ in range(5):
        sampler.offer(c, ["q"], [_hits(1.0)])  # busy: ignored
    c.gate.set()
    await sampler.settled()
    assert c.scans == 1 and _observed(metrics)[0] == 1.0
    await sampler.close()


async def test_searches_with_filters_read_from_disk_are_not_sampled() -> None:
    now, metrics = [100.0], Metrics()
    sampler = _sampler(now, metrics)
    c = _Collection(now, exact=[1.0])
    c.in_memory = False
    sampler.offer(c, ["q"], [_hits(1.0)])
    await sampler.settled()
    assert c.scans == 0
    c.in_memory = True  # and the next one is due at once: nothing was spent
    sampler.offer(c, ["q"], [_hits(1.0)])
    await sampler.settled()
    assert c.scans == 1
    await sampler.close()


async def test_the_query_sampled_from_a_batch_is_compared_with_its_own_hits() -> None:
    now, metrics = [100.0], Metrics()
    sampler = _sampler(now, metrics, budget=1.0)

    class ByQuery(_Collection):
        def exact_scores(self, query: Any) -> np.ndarray:
            self.scans += 1
            self.asked = query
            return np.asarray([float(query)], dtype=np.float32)

    c = ByQuery(now)
    queries = [0.1 * i for i in range(1, 9)]
    for _ in range(6):
        sampler.offer(c, queries, [_hits(q) for q in queries])  # each hit is its own query's exact best
        await sampler.settled()
    assert c.scans == 6
    assert _observed(metrics) == (6.0, 6.0)


async def test_a_failed_or_unanswerable_scan_observes_nothing_and_serving_goes_on() -> None:
    now, metrics = [100.0], Metrics()
    sampler = _sampler(now, metrics, budget=1.0)
    c = _Collection(now, exact=None)  # a backend that cannot scan
    sampler.offer(c, ["q"], [_hits(1.0)])
    await sampler.settled()
    c.exact = np.asarray([1.0], dtype=np.float32)
    c.fail = NotFound("collection 'c' not found (it was deleted)")
    now[0] += 1
    sampler.offer(c, ["q"], [_hits(1.0)])
    await sampler.settled()
    c.fail = RuntimeError("a bug")
    now[0] += 1
    sampler.offer(c, ["q"], [_hits(1.0)])
    await sampler.settled()
    assert c.scans == 3 and sampler.samples == 0 and _observed(metrics) == (0.0, 0.0)
    c.fail = None
    now[0] += 1
    sampler.offer(c, ["q"], [_hits(1.0)])
    await sampler.settled()
    assert sampler.samples == 1
    await sampler.close()


async def test_close_waits_for_the_scan_and_takes_no_more() -> None:
    now, metrics = [100.0], Metrics()
    sampler = _sampler(now, metrics, budget=1.0)
    c = _Collection(now, exact=[1.0])
    c.gate = threading.Event()
    sampler.offer(c, ["q"], [_hits(1.0)])
    closing = asyncio.ensure_future(sampler.close())
    await asyncio.sleep(0)
    assert not closing.done()
    c.gate.set()
    await closing
    assert sampler.samples == 1
    now[0] += 100
    sampler.offer(c, ["q"], [_hits(1.0)])
    assert c.scans == 1


@pytest.mark.parametrize("budget", [-0.1, 1.5, math.nan])
def test_a_budget_outside_0_to_1_is_refused(budget: float) -> None:
    with pytest.raises(ValueError, match="recall_sample_budget"):
        RecallSampler(Metrics(), budget=budget)


def test_a_zero_budget_is_off() -> None:
    assert not RecallSampler(Metrics(), budget=0.0).enabled
    assert RecallSampler(Metrics(), budget=0.01).enabled


async def test_the_latest_sampled_queries_with_a_recall_are_kept_per_collection() -> None:
    """TuneCollection without queries tunes on these: only queries whose scan gave a recall, the
    latest RECENT of them, oldest first, forgotten with their collection."""
    now, metrics = [100.0], Metrics()
    sampler = _sampler(now, metrics, budget=1.0)
    c = _Collection(now, exact=[1.0])
    empty = _Collection(now, exact=[])  # nothing matched: no recall, not kept
    empty.name = "e"
    for i in range(RECENT + 3):
        for collection, query in ((c, f"q{i}"), (empty, f"x{i}")):
            sampler.offer(collection, [query], [_hits(1.0)])
            await sampler.settled()
            now[0] += 1
    assert c.scans == empty.scans == RECENT + 3
    assert sampler.recent("c") == [f"q{i}" for i in range(3, RECENT + 3)]
    assert sampler.recent("e") == [] and sampler.recent("nope") == []
    sampler.forget("c")
    assert sampler.recent("c") == []
    await sampler.close()
