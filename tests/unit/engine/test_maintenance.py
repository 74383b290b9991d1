"""The background maintainer: when a checkpoint is due; a collection deleted while its round runs
is skipped, not an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onespace.engine.maintenance import Maintainer
from onespace.index import CollectionConfig, CollectionStore, Record
from onespace.index.backend import CollectionHandle
from onespace.metrics import Metrics


def test_a_collection_deleted_during_its_round_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CollectionStore(tmp_path)
    store.open()
    store.create(CollectionConfig(name="gone", model="m", dimension=8).validated())
    store.create(CollectionConfig(name="kept", model="m", dimension=8).validated())
    compact = store.compact
    compacted: list[str] = []

    def delete_then_compact(collection: CollectionHandle, *, force: bool = False) -> bool:
        if collection.name == "gone":
            store.delete("gone")  # an RPC deleted it between the round's stats and its compaction
        compacted.append(collection.name)
        return compact(collection, force=force)

    monkeypatch.setattr(store, "compact", delete_then_compact)
    maintainer = Maintainer(store, Metrics(), interval=60, max_age=300, changes=100)
    maintainer.run_once()  # raised NotFound from the deleted collection before
    assert sorted(compacted) == ["gone", "kept"]
    assert [c.name for c in store.list()] == ["kept"]
    store.close()


def test_a_checkpoint_is_due_max_age_after_the_first_change_it_does_not_hold(tmp_path: Path) -> None:
    """Not `max_age` after the last checkpoint: then a new collection, or one idle for longer
    than `max_age`, was checkpointed within a round of its first write, and a burst of writes
    went into two checkpoints (its first second, and the rest later) instead of one."""
    store = CollectionStore(tmp_path)
    store.open()
    collection = store.create(CollectionConfig(name="c", model="m", dimension=8).validated())
    maintainer = Maintainer(store, Metrics(), interval=60, max_age=300, changes=100)
    vector = np.ones(8, dtype=np.float32)

    def stored(item_id: str) -> None:
        collection.upsert([Record(item_id, vector)])

    assert store.stats(collection).unsaved_since == 0.0  # nothing to save yet
    stored("a")
    first = store.stats(collection).unsaved_since
    assert first > 0
    maintainer.run_once(now=first + 299)
    assert store.stats(collection).checkpoint_seq == 0  # a new collection: not yet
    stored("b")  # a later change does not move the deadline
    assert store.stats(collection).unsaved_since == first
    maintainer.run_once(now=first + 300)
    stats = store.stats(collection)
    assert (stats.checkpoint_seq, stats.changes_since_checkpoint, stats.unsaved_since) == (2, 0, 0.0)

    stored("c")  # the next change starts the wait again, long after the last checkpoint
    second = store.stats(collection).unsaved_since
    assert second >= first
    maintainer.run_once(now=second + 299)
    assert store.stats(collection).checkpoint_seq == 2
    maintainer.run_once(now=second + 300)
    assert store.stats(collection).checkpoint_seq == 3
    store.close()


def test_a_checkpoint_is_due_after_enough_changes_however_recent(tmp_path: Path) -> None:
    store = CollectionStore(tmp_path)
    store.open()
    collection = store.create(CollectionConfig(name="c", model="m", dimension=8).validated())
    maintainer = Maintainer(store, Metrics(), interval=60, max_age=300, changes=3)
    vector = np.ones(8, dtype=np.float32)
    collection.upsert([Record("a", vector), Record("b", vector)])
    maintainer.run_once(now=store.stats(collection).unsaved_since)
    assert store.stats(collection).checkpoint_seq == 0  # 2 changes of 3
    collection.upsert([Record("c", vector)])
    maintainer.run_once(now=store.stats(collection).unsaved_since)
    assert store.stats(collection).checkpoint_seq == 2
    store.close()
