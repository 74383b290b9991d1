"""Concurrent writers, searchers, checkpoints and compactions on one collection: no errors, a
consistent end state that survives a reopen."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from onespace.index import CollectionConfig, CollectionStore, Query, Record, StoredDtype, maintenance
from tests.unit.index.helpers import mixture


def test_concurrent_upsert_search_delete_and_save(tmp_path: Path) -> None:
    store = CollectionStore(tmp_path)
    store.open()
    c = store.create(
        CollectionConfig(name="t", model="m", dimension=32, index_dimension=16, stored_dtype=StoredDtype.F32)
    )
    data = mixture(1600, 32, seed=3)
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        return threading.Thread(target=run)

    def writer(start: int) -> None:
        for lo in range(start, 1600, 400):
            c.upsert([Record(f"w{i}", data[i]) for i in range(lo, lo + 200)])
            c.delete([f"w{i}" for i in range(lo, lo + 200, 4)])

    def searcher() -> None:
        for q in data[:60]:
            hits = c.search_many([Query(q, k=5), Query(q, k=5, dimension=8)])
            assert all(len(h) <= 5 for h in hits)

    def saver() -> None:
        for _ in range(5):
            store.checkpoint_all()
            maintenance.compact(c, force=True)

    threads = [guarded(lambda: writer(0)), guarded(lambda: writer(200)), guarded(searcher), guarded(saver)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(c) == 1200
    store.close()
    reopened = CollectionStore(tmp_path)
    reopened.open()
    again = reopened.get("t")
    assert len(again) == 1200
    q = data[1]
    assert again.search(Query(q, k=5))[0].id == "w1"
    assert again.get(["w0", "w1"])[0] is None
    np.testing.assert_array_equal(again.vector("w1"), data[1])
