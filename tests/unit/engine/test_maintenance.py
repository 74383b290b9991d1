"""The background maintainer: a collection deleted while its round runs is skipped, not an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from onespace.engine.maintenance import Maintainer
from onespace.index import CollectionConfig, CollectionStore
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
