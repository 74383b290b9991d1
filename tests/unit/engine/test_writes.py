"""The write batcher: concurrent writes become few durable group commits, in arrival order; callers
that leave or whose deadline passed are not written; a failed commit fails every caller in it."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import numpy as np
import pytest

from onespace.engine import WriteBatcher
from onespace.engine.background import BACKGROUND_NICE
from onespace.errors import DeadlineExceeded, NotFound
from onespace.index import CollectionConfig, Record, maintenance
from onespace.index.writes import DeleteOp
from onespace.metrics import Metrics
from tests.unit.index.helpers import new_collection

DIM = 8


def vec(i: int) -> np.ndarray:
    return np.random.default_rng(i).normal(size=DIM).astype(np.float32)


def fresh() -> object:
    return new_collection(CollectionConfig(name="w", model="m", dimension=DIM))


def far() -> float:
    return time.monotonic() + 60


@pytest.mark.parametrize("policy", ["batch", "off"])
async def test_concurrent_writes_share_commits_and_all_land(policy: str) -> None:
    c = fresh()
    writes = WriteBatcher(Metrics(), policy=policy, max_wait_seconds=0.001, max_items=10_000)
    ops = [c.prepare_upsert([Record(f"i{i}", vec(i))]) for i in range(300)]  # type: ignore[attr-defined]
    results = await asyncio.gather(*(writes.write(c, op, deadline=far()) for op in ops))  # type: ignore[arg-type]
    assert results == [1] * 300
    assert len(c) == 300  # type: ignore[arg-type]
    assert writes.commits < 30  # 300 writes, a handful of fsyncs
    assert c.seq == writes.commits  # type: ignore[attr-defined]


async def test_always_commits_each_write_on_its_own() -> None:
    c = fresh()
    writes = WriteBatcher(Metrics(), policy="always", max_wait_seconds=0.01, max_items=10_000)
    ops = [c.prepare_upsert([Record(f"i{i}", vec(i))]) for i in range(20)]  # type: ignore[attr-defined]
    await asyncio.gather(*(writes.write(c, op, deadline=far()) for op in ops))  # type: ignore[arg-type]
    assert writes.commits == 20 and len(c) == 20  # type: ignore[arg-type]


async def test_order_within_a_group_is_arrival_order() -> None:
    c = fresh()
    writes = WriteBatcher(Metrics(), policy="batch", max_wait_seconds=0.05, max_items=10_000)
    first = writes.write(c, c.prepare_upsert([Record("a", vec(1))]), deadline=far())  # type: ignore
    gone = writes.write(c, DeleteOp(("a",)), deadline=far())  # type: ignore[arg-type]
    again = writes.write(c, c.prepare_upsert([Record("a", vec(2))]), deadline=far())  # type: ignore
    assert await asyncio.gather(first, gone, again) == [1, 1, 1]
    assert writes.commits == 1
    np.testing.assert_array_equal(c.vector("a"), vec(2))  # type: ignore[attr-defined]


async def test_expired_and_departed_callers_are_not_written() -> None:
    c = fresh()
    writes = WriteBatcher(Metrics(), policy="batch", max_wait_seconds=0.05, max_items=10_000)
    late = asyncio.ensure_future(
        writes.write(c, c.prepare_upsert([Record("late", vec(1))]), deadline=time.monotonic() - 1)  # type: ignore
    )
    left = asyncio.ensure_future(writes.write(c, c.prepare_upsert([Record("left", vec(2))]), deadline=far()))  # type: ignore
    kept = asyncio.ensure_future(writes.write(c, c.prepare_upsert([Record("kept", vec(3))]), deadline=far()))  # type: ignore
    await asyncio.sleep(0)  # all three are queued; the group is still gathering
    left.cancel()
    assert await kept == 1
    with pytest.raises(DeadlineExceeded):
        await late
    assert c.get(["late", "left", "kept"])[2] is not None  # type: ignore[attr-defined]
    assert c.get(["late", "left"]) == [None, None]  # type: ignore[attr-defined]


async def test_a_failed_commit_fails_every_caller_in_it() -> None:
    c = fresh()
    writes = WriteBatcher(Metrics(), policy="batch", max_wait_seconds=0.01, max_items=10_000)
    ops = [c.prepare_upsert([Record(f"i{i}", vec(i))]) for i in range(5)]  # type: ignore[attr-defined]
    maintenance.close(c)  # type: ignore[arg-type]
    results = await asyncio.gather(
        *(writes.write(c, op, deadline=far()) for op in ops),
        return_exceptions=True,  # type: ignore[arg-type]
    )
    assert all(isinstance(r, NotFound) for r in results)  # the collection was deleted


async def test_the_rows_waiting_for_the_index_are_published_as_a_gauge() -> None:
    """`onespace_index_unindexed_rows`: what a commit leaves for the indexer, then 0 once indexed."""
    c = fresh()
    metrics = Metrics()
    writes = WriteBatcher(metrics, policy="batch", max_wait_seconds=0.001, max_items=10_000)
    op = c.prepare_upsert([Record(f"i{i}", vec(i)) for i in range(3000)])  # type: ignore[attr-defined]

    def waiting() -> float | None:
        return metrics.registry.get_sample_value("onespace_index_unindexed_rows", {"collection": "w"})

    assert await writes.write(c, op, deadline=far()) == 3000  # type: ignore[arg-type]
    assert waiting() == 3000  # published with the commit, before the indexer's first step
    await writes.close()  # index upkeep done
    assert waiting() == 0 and c.unindexed_rows() == 0  # type: ignore[attr-defined]


async def test_rows_committed_while_the_indexer_finds_nothing_are_still_indexed() -> None:
    """The indexer's last step looks at the tail in a worker thread and finds it empty; a commit
    lands before the indexer's task has ended, sees it still running and starts none. Those rows
    must not wait for the next write (with none, forever: a benchmark hung on it)."""
    c = fresh()
    writes = WriteBatcher(Metrics(), policy="always", max_wait_seconds=0.0, max_items=10_000)
    real = c.index_pending  # type: ignore[attr-defined]
    found_nothing, resume = threading.Event(), threading.Event()

    def index_pending() -> bool:
        did = bool(real())
        if not did and not resume.is_set():
            found_nothing.set()
            assert resume.wait(30)  # the step has looked; its answer is not back yet
        return did

    c.index_pending = index_pending  # type: ignore[attr-defined]
    await writes.write(c, c.prepare_upsert([Record("a", vec(1))]), deadline=far())  # type: ignore
    assert await asyncio.to_thread(found_nothing.wait, 30)
    await writes.write(c, c.prepare_upsert([Record("b", vec(2))]), deadline=far())  # type: ignore
    assert c.unindexed_rows() == 1  # type: ignore[attr-defined]
    resume.set()
    await writes.close()  # index upkeep done
    assert c.unindexed_rows() == 0 and len(c.index) == 2  # type: ignore[attr-defined]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
@pytest.mark.parametrize("index_nice", [None, 0, 5])
async def test_index_upkeep_runs_index_nice_levels_below_the_server(index_nice: int | None) -> None:
    """Nobody waits for the HNSW adds behind the acks: by default they yield the cores to what
    callers wait for (`BACKGROUND_NICE`); `--index-nice 0` keeps them equal, for searches run
    beside a heavy ingest."""
    c = fresh()
    real = c.index_pending  # type: ignore[attr-defined]
    priorities: list[int] = []

    def index_pending() -> bool:
        priorities.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return bool(real())

    c.index_pending = index_pending  # type: ignore[attr-defined]
    chosen = {} if index_nice is None else {"index_nice": index_nice}
    writes = WriteBatcher(Metrics(), policy="batch", max_wait_seconds=0.001, max_items=10_000, **chosen)
    op = c.prepare_upsert([Record(f"i{i}", vec(i)) for i in range(100)])  # type: ignore[attr-defined]
    assert await writes.write(c, op, deadline=far()) == 100  # type: ignore[arg-type]
    await writes.close()
    server = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    lowered = BACKGROUND_NICE if index_nice is None else index_nice
    assert priorities and set(priorities) == {min(19, server + lowered)}
    assert c.unindexed_rows() == 0 and len(c.index) == 100  # type: ignore[attr-defined]


async def test_a_commit_after_close_leaves_its_rows_to_the_store() -> None:
    """After close no index upkeep starts (its pool is gone): the rows wait in the tail, searchable,
    for the store's close or the next start to index them."""
    c = fresh()
    writes = WriteBatcher(Metrics(), policy="batch", max_wait_seconds=0.001, max_items=10_000)
    await writes.close()
    op = c.prepare_upsert([Record("late", vec(1))])  # type: ignore[attr-defined]
    assert await writes.write(c, op, deadline=far()) == 1  # type: ignore[arg-type]
    assert c.unindexed_rows() == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("nice", [-1, 20])
def test_index_nice_outside_0_to_19_is_refused(nice: int) -> None:
    with pytest.raises(ValueError, match=f"index_nice must be between 0 and 19, not {nice}"):
        WriteBatcher(Metrics(), policy="batch", max_wait_seconds=0.001, max_items=10, index_nice=nice)
