"""Deadlines as the caller sent them, carried into the search and write stages."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from onespace.engine.search import SearchBatcher
from onespace.errors import DeadlineExceeded
from onespace.metrics import Metrics
from onespace.rpc.guard import deadline_of


@dataclass
class _Context:
    remaining: float | None

    def time_remaining(self) -> float | None:
        return self.remaining


def test_a_deadline_longer_than_the_default_is_honoured() -> None:
    now = time.monotonic()
    assert deadline_of(_Context(120.0), default_seconds=60.0) - now == pytest.approx(120.0, abs=1.0)  # type: ignore[arg-type]
    assert deadline_of(_Context(None), default_seconds=60.0) - now == pytest.approx(60.0, abs=1.0)  # type: ignore[arg-type]
    capped = deadline_of(_Context(120.0), default_seconds=60.0, max_seconds=30.0)  # type: ignore[arg-type]
    assert capped - now == pytest.approx(30.0, abs=1.0)
    assert deadline_of(_Context(5.0), default_seconds=60.0, max_seconds=30.0) - now == pytest.approx(
        5.0, abs=1.0
    )  # type: ignore[arg-type]


class _Collection:
    def __init__(self) -> None:
        self.config = type("Config", (), {"name": "c"})()
        self.searched: list[list[Any]] = []

    def search_many(self, queries: list[Any], threads: int = 0) -> list[list[Any]]:
        self.searched.append(list(queries))
        return [[q] for q in queries]


async def test_an_expired_search_is_dropped_before_the_index_and_counted() -> None:
    metrics = Metrics()
    batcher = SearchBatcher(metrics, max_batch=8, max_wait_seconds=0.0, threads=1)
    collection = _Collection()
    expired = batcher.submit(collection, "late", time.monotonic() - 1)  # type: ignore[arg-type]
    alive = batcher.submit(collection, "ok", time.monotonic() + 60)  # type: ignore[arg-type]
    hits, _ = await alive
    assert hits == ["ok"]
    with pytest.raises(DeadlineExceeded, match="before the index search"):
        await expired
    assert collection.searched == [["ok"]]
    assert metrics.registry.get_sample_value("onespace_expired_total", {"stage": "search"}) == 1


async def test_a_search_without_a_deadline_still_runs() -> None:
    batcher = SearchBatcher(Metrics(), max_batch=8, max_wait_seconds=0.0, threads=1)
    hits, _ = await asyncio.wait_for(batcher.search(_Collection(), "q"), 5)  # type: ignore[arg-type]
    assert hits == ["q"]


async def test_searches_that_waited_during_the_batch_before_are_cut_without_another_wait() -> None:
    """`max_wait` counts from a search's arrival, not from when the lane is free again: a search
    that arrived while the batch before ran, and has waited `max_wait` by its end, goes at once.
    (Counted from the round, it would wait a minute here: the clock is the test's.)"""
    now = [0.0]
    batcher = SearchBatcher(Metrics(), max_batch=2, max_wait_seconds=60.0, threads=1, clock=lambda: now[0])
    running, release = threading.Event(), threading.Event()

    class Held(_Collection):
        def search_many(self, queries: list[Any], threads: int = 0) -> list[list[Any]]:
            if queries[0] == "first":
                running.set()
                assert release.wait(10)
            return super().search_many(queries, threads)

    collection = Held()
    first = [batcher.submit(collection, q, 600.0) for q in ("first", "full")]  # type: ignore[arg-type]
    assert await asyncio.to_thread(running.wait, 10)
    waited = batcher.submit(collection, "waited", 600.0)  # type: ignore[arg-type]
    now[0] = 61.0  # it has waited max_wait by the time the first batch ends
    release.set()
    await asyncio.gather(*first)
    hits, call = await asyncio.wait_for(waited, 10)
    assert hits == ["waited"] and call.size == 1
    assert collection.searched == [["first", "full"], ["waited"]]
