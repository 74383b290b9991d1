"""The background maintainer: index checkpoints and compactions, one at a time, off the loop.

Every `interval` it looks at each collection: a checkpoint is due after `changes` changed items,
or `max_age` seconds after the first change it does not hold yet (so a burst of writes into an
idle or new collection goes into one checkpoint after the burst, not into one of its first
second and another later); a compaction when dead rows or removed index entries pass their
thresholds (`index.maintenance`). Work runs in a worker thread; the write lock is held only for
usearch's save and a compaction's short catch-up, so searches and writes go on.
"""

from __future__ import annotations

import asyncio
import logging
import time

from onespace.engine.periodic import Periodic
from onespace.errors import NotFound
from onespace.index.backend import Backend, CollectionHandle
from onespace.index.collection import CollectionStats
from onespace.metrics import Metrics

__all__ = ["Maintainer"]

log = logging.getLogger(__name__)


class Maintainer:
    def __init__(
        self, store: Backend, metrics: Metrics, *, interval: float, max_age: float, changes: int
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._max_age = max_age
        self._changes = changes
        self._rounds = Periodic("background maintenance", interval, lambda: asyncio.to_thread(self.run_once))

    def start(self) -> None:
        self._rounds.start()

    async def stop(self) -> None:
        await self._rounds.stop()

    def run_once(self, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for collection in self._store.list():
            try:
                self._maintain(collection, now)
            except NotFound:  # deleted since list(), or during its round: nothing left to maintain
                continue

    def _maintain(self, collection: CollectionHandle, now: float) -> None:
        stats = self._store.stats(collection)
        pending = stats.changes_since_checkpoint
        if pending >= self._changes or (pending and now - stats.unsaved_since >= self._max_age):
            self.checkpoint(collection)
        if self._store.compact(collection):
            self._metrics.compactions.labels(collection.name).inc()
            self.checkpoint(collection)
        self.observe(collection)

    def checkpoint(self, collection: CollectionHandle) -> None:
        started = time.monotonic()
        if self._store.checkpoint(collection):
            self._metrics.checkpoint_duration.labels(collection.name).observe(time.monotonic() - started)

    def observe(self, collection: CollectionHandle) -> CollectionStats:
        """Publish the collection's gauges; returns the stats they came from."""
        stats = self._store.stats(collection)
        name = collection.name
        self._metrics.index_items.labels(name).set(stats.items)
        self._metrics.index_unindexed.labels(name).set(stats.unindexed_rows)
        self._metrics.checkpoint_timestamp.labels(name).set(stats.checkpoint_time)
        for kind, value in (
            ("disk", stats.disk_bytes),
            ("index", stats.index_bytes),
            ("vectors", stats.vector_bytes),
        ):
            self._metrics.collection_bytes.labels(name, kind).set(value)
        return stats
