"""The write batcher: concurrent writes to one collection become one durable group commit.

The write-side twin of the search batcher. Each collection has a lane: callers append their
(already validated) operation and wait; one task per lane takes everything waiting (up to
`max_items` items), runs `collection.apply` on it in a worker thread — one vector-file fsync and
one SQLite transaction for the whole group — and answers every caller. While a commit runs, new
writes queue up and form the next group, so under load the group size follows the fsync latency
by itself; when the lane is idle a group waits at most `max_wait` for company.

After the acks, the lane's index upkeep (`index_pending`: the HNSW adds of the rows just committed)
runs in another worker thread, so it overlaps the next group's fsync and SQLite commit instead of
delaying every ack; committed rows are searchable meanwhile (the collection scans them). Those
threads run below the server's priority (`engine.background`, `--index-nice`): nobody waits for
them.

With `policy="always"` every operation is committed on its own (no grouping): each ack still
follows an fsync, only throughput differs. A caller that leaves before its group is cut is dropped
unsent; once cut, a group commits as a whole (the ack may then go unread, the write is kept).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from onespace.engine.background import BACKGROUND_NICE, background_executor
from onespace.engine.lanes import Lane, Lanes
from onespace.errors import DeadlineExceeded
from onespace.metrics import Metrics

if TYPE_CHECKING:
    from onespace.index.backend import CollectionHandle as Collection
    from onespace.index.writes import WriteOp

__all__ = ["GroupCommit", "WriteBatcher"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GroupCommit:
    """One durable commit, shared by every write in its group (one object per group)."""

    started: float  # time.monotonic()
    seconds: float
    items: int  # items of every write in the group


@dataclass(slots=True)
class _Waiter:
    op: WriteOp
    items: int
    deadline: float
    future: asyncio.Future[tuple[int, GroupCommit]]


class WriteBatcher:
    def __init__(
        self,
        metrics: Metrics,
        *,
        policy: str,
        max_wait_seconds: float,
        max_items: int,
        index_nice: int = BACKGROUND_NICE,
    ) -> None:
        """`index_nice`: how many nice levels below the server the index upkeep runs (0-19)."""
        if not 0 <= index_nice <= 19:
            raise ValueError(f"index_nice must be between 0 and 19, not {index_nice}")
        self._metrics = metrics
        self._grouped = policy != "always"
        self._max_wait = max_wait_seconds if self._grouped else 0.0
        self._max_items = max_items
        self._lanes: Lanes[_Waiter] = Lanes(self._serve_round)
        self._indexing: dict[int, asyncio.Task[None]] = {}  # per collection, at most one
        self._committed: set[int] = set()  # collections with commits their indexer has not seen
        self._indexer = background_executor("onespace-indexer", index_nice)
        self._closed = False
        self.commits = 0

    async def close(self) -> None:
        """Wait for index upkeep still running (the store's close would wait for it anyway); a
        commit after this leaves its rows to the store's close, which indexes the tail."""
        self._closed = True
        await asyncio.gather(*self._indexing.values(), return_exceptions=True)
        self._indexer.shutdown(wait=False)  # idle now: its threads end on their own

    async def write(self, collection: Collection, op: WriteOp, *, deadline: float) -> int:
        """Commit `op` durably (with whatever else is waiting); its result once on disk."""
        return (await self.commit(collection, op, deadline=deadline))[0]

    async def commit(
        self, collection: Collection, op: WriteOp, *, deadline: float
    ) -> tuple[int, GroupCommit]:
        """`write`, and the group commit that made it durable."""
        future: asyncio.Future[tuple[int, GroupCommit]] = asyncio.get_running_loop().create_future()
        self._lanes.submit(collection, _Waiter(op, op.items, deadline, future))
        return await future

    async def _serve_round(self, collection: Collection, lane: Lane[_Waiter]) -> None:
        if self._max_wait > 0:
            until = time.monotonic() + self._max_wait
            await lane.wait_for_more(until, lambda: sum(w.items for w in lane.waiting) >= self._max_items)
        group = self._cut(lane)
        if group:
            await self._commit(collection, group)

    def _cut(self, lane: Lane[_Waiter]) -> list[_Waiter]:
        group: list[_Waiter] = []
        items = 0
        now = time.monotonic()
        while lane.waiting:
            waiter = lane.waiting[0]
            if group and (not self._grouped or items + waiter.items > self._max_items):
                break
            lane.waiting.pop(0)
            if waiter.future.done():
                continue  # the caller left: nothing of it is written
            if waiter.deadline <= now:
                self._metrics.expired.labels("write").inc()
                waiter.future.set_exception(
                    DeadlineExceeded("the deadline passed before the write was committed")
                )
                continue
            group.append(waiter)
            items += waiter.items
        return group

    async def _commit(self, collection: Collection, group: list[_Waiter]) -> None:
        name = collection.config.name
        started = time.monotonic()
        self.commits += 1
        try:
            results = await asyncio.to_thread(collection.apply, [w.op for w in group], index=False)
        except BaseException as exc:
            for waiter in group:
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        commit = GroupCommit(started, time.monotonic() - started, sum(w.items for w in group))
        self._metrics.commit_duration.labels(name).observe(commit.seconds)
        self._metrics.commit_items.labels(name).observe(commit.items)
        for waiter, result in zip(group, results, strict=True):
            if not waiter.future.done():
                waiter.future.set_result((result, commit))
        self._metrics.index_unindexed.labels(name).set(collection.unindexed_rows())
        self._committed.add(id(collection))
        if id(collection) not in self._indexing and not self._closed:
            self._indexing[id(collection)] = asyncio.create_task(self._index(collection))

    async def _index(self, collection: Collection) -> None:
        """Index what the commits left, until a step finds nothing new (commits go on meanwhile),
        and again while commits came since the last round began.

        A step looks at the tail in a worker thread, so a commit can land after it found nothing
        and before this task ends; that commit sees the task running and starts none, but marks
        the collection, so the task takes another round. The task leaves `_indexing` in the loop
        turn of its last look at the mark: a later commit starts a new task. (Without the mark,
        rows committed in that moment waited for the next write, and with none, for ever.)"""
        key = id(collection)
        waiting = self._metrics.index_unindexed.labels(collection.config.name)
        loop = asyncio.get_running_loop()
        try:
            while key in self._committed:
                self._committed.discard(key)
                while await loop.run_in_executor(self._indexer, collection.index_pending):
                    waiting.set(collection.unindexed_rows())
        except Exception:  # the rows stay durable and searchable by scan; the next commit retries
            log.exception("collection %s: indexing committed rows failed", collection.config.name)
        finally:
            if self._indexing.get(key) is asyncio.current_task():
                del self._indexing[key]
