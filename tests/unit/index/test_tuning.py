"""Tuning a collection: search-time settings and the unindexed bound change durably, apply to the
next search without a rebuild, survive a restart and a rebuild of the graph, and a refused change
leaves the config in memory and on disk as it was."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from onespace.errors import InvalidArgument, NotFound
from onespace.index import (
    CollectionConfig,
    CollectionStore,
    HnswParams,
    IndexDtype,
    Query,
    Record,
    StoredDtype,
    Tuning,
    maintenance,
)
from onespace.index.hnsw import HnswIndex
from onespace.index.persistence import CONFIG_FILE
from tests.unit.index.helpers import mixture

DIM = 32


def config(**changes: object) -> CollectionConfig:
    values: dict[str, object] = {"index_dimension": 16, "stored_dtype": StoredDtype.F32, **changes}
    return CollectionConfig(name="docs", model="m", dimension=DIM, **values)  # type: ignore[arg-type]


def opened(path: Path) -> CollectionStore:
    store = CollectionStore(path)
    store.open()
    return store


def on_disk(path: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((path / "collections" / "docs" / CONFIG_FILE).read_text())
    return loaded


def settings(store: CollectionStore) -> tuple[int, int, int, int]:
    """(config's ef, the usearch index's ef, rerank_factor, max_unindexed_rows) as in force."""
    c = store.get("docs")
    return (
        c.config.hnsw.expansion_search,
        c.index._index.expansion_search,
        c.config.rerank_factor,
        c.config.max_unindexed_rows,
    )


def test_unset_keeps_zero_restores_the_default_and_the_rest_is_untouched() -> None:
    base = config(hnsw=HnswParams(connectivity=8, expansion_search=100), rerank_factor=3).validated()
    tuned = Tuning(expansion_search=20).applied_to(base)
    assert (tuned.hnsw, tuned.rerank_factor) == (HnswParams(8, 128, 20), 3)
    tuned = Tuning(rerank_factor=7, max_unindexed_rows=5000).applied_to(tuned)
    assert (tuned.hnsw.expansion_search, tuned.rerank_factor, tuned.max_unindexed_rows) == (20, 7, 5000)
    assert tuned.unindexed_limit == 5000
    reset = Tuning(expansion_search=0, rerank_factor=0, max_unindexed_rows=0).applied_to(tuned)
    assert (reset.hnsw.expansion_search, reset.rerank_factor, reset.max_unindexed_rows) == (64, 4, 0)
    assert reset == config(hnsw=HnswParams(connectivity=8)).validated()
    assert Tuning().applied_to(base) == base


@pytest.mark.parametrize(
    ("tuning", "field", "reason"),
    [
        (Tuning(expansion_search=5000), "expansion_search", "larger than the maximum 4096"),
        (Tuning(expansion_search=-1), "expansion_search", "smaller than the minimum 1"),
        (Tuning(rerank_factor=101), "rerank_factor", "larger than the maximum 100"),
        (Tuning(max_unindexed_rows=(1 << 20) + 1), "max_unindexed_rows", "larger than the maximum"),
        (Tuning(max_unindexed_rows=-5), "max_unindexed_rows", "smaller than the minimum 0"),
        (Tuning(rerank_factor="2"), "rerank_factor", "is not an integer"),  # type: ignore[arg-type]
    ],
)
def test_bad_values_are_refused_naming_the_field(tuning: Tuning, field: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        tuning.applied_to(config().validated())
    assert refused.value.field == field and reason in refused.value.reason


def test_a_change_is_durable_and_used_by_the_next_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened(tmp_path)
    c = store.create(config())
    data = mixture(600, DIM, seed=1)
    c.upsert([Record(f"i{i}", v) for i, v in enumerate(data)])
    counts: list[int] = []
    search_matrix = HnswIndex.search_matrix

    def seen(
        self: HnswIndex, queries: np.ndarray, count: int, threads: int, expansion_search: int | None = None
    ) -> object:
        counts.append(count)
        return search_matrix(self, queries, count, threads, expansion_search)

    monkeypatch.setattr(HnswIndex, "search_matrix", seen)
    assert c.search(Query(data[3], k=10))[0].id == "i3"
    assert counts == [64]  # k 10 x rerank_factor 4, rounded up to a power of two

    tuned = store.tune(c, Tuning(expansion_search=24, rerank_factor=2, max_unindexed_rows=2048))
    assert tuned == c.config
    assert settings(store) == (24, 24, 2, 2048)
    assert c.config.unindexed_limit == 2048
    assert c.search(Query(data[3], k=10))[0].id == "i3"
    assert counts == [64, 32]
    written = on_disk(tmp_path)
    assert written["hnsw"] == {"connectivity": 16, "expansion_add": 128, "expansion_search": 24}
    assert (written["rerank_factor"], written["max_unindexed_rows"]) == (2, 2048)

    store.close()  # from the checkpoint written at close: usearch's file keeps the old ef
    again = opened(tmp_path)
    assert settings(again) == (24, 24, 2, 2048)
    assert again.get("docs").search(Query(data[5], k=3))[0].id == "i5"
    again.close()


def test_a_refused_change_changes_nothing(tmp_path: Path) -> None:
    store = opened(tmp_path)
    c = store.create(config())
    store.tune(c, Tuning(expansion_search=40))
    before, written = c.config, on_disk(tmp_path)
    with pytest.raises(InvalidArgument):
        store.tune(c, Tuning(expansion_search=30, rerank_factor=0, max_unindexed_rows=-1))
    assert c.config == before and on_disk(tmp_path) == written
    assert settings(store) == (40, 40, 4, 0)


def test_a_lossless_index_keeps_its_shortlist_whatever_the_rerank_factor(tmp_path: Path) -> None:
    store = opened(tmp_path)
    c = store.create(config(index_dimension=DIM, dtype=IndexDtype.F32))
    assert c.config.shortlist_factor == 1
    store.tune(c, Tuning(rerank_factor=8))
    assert (c.config.rerank_factor, c.config.shortlist_factor) == (8, 1)


def test_a_graph_rebuilt_while_tuned_takes_the_new_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compaction builds a fresh graph off the locks from the config of that moment; a tuning that
    lands meanwhile must not be lost when the fresh graph is swapped in."""
    store = opened(tmp_path)
    c = store.create(config())
    data = mixture(400, DIM, seed=2)
    c.upsert([Record(f"i{i}", v) for i, v in enumerate(data)])
    while c.index_pending():
        pass
    c.delete([f"i{i}" for i in range(0, 400, 2)])
    build = maintenance._build_index

    def tuned_meanwhile(collection: object, view: object) -> HnswIndex:
        fresh = build(collection, view)  # type: ignore[arg-type]
        store.tune(c, Tuning(expansion_search=33))
        return fresh

    monkeypatch.setattr(maintenance, "_build_index", tuned_meanwhile)
    assert store.compact(c, force=True)
    assert settings(store) == (33, 33, 4, 0)
    assert c.search(Query(data[1], k=1))[0].id == "i1"
    store.close()


def test_a_deleted_collection_cannot_be_tuned(tmp_path: Path) -> None:
    store = opened(tmp_path)
    c = store.create(config())
    store.delete("docs")
    with pytest.raises(NotFound):
        store.tune(c, Tuning(expansion_search=10))


def test_tuning_while_searches_and_writes_run(tmp_path: Path) -> None:
    """Searches and writes on other threads go on while the settings change under them: no
    error, every search gives its k hits with the item itself first, no write is lost, and the
    last tuning is the one in force."""
    store = opened(tmp_path)
    c = store.create(config())
    data = mixture(1200, DIM, seed=3)
    c.upsert([Record(f"i{i}", v) for i, v in enumerate(data[:1000])])
    stop = threading.Event()
    failures: list[BaseException] = []
    searched = threading.Event()

    probes = list(range(0, 1000, 97))

    def search() -> None:
        try:
            while not stop.is_set():
                answers = c.search_many([Query(data[i], k=5) for i in probes])
                for i, hits in zip(probes, answers, strict=True):
                    assert len(hits) == 5 and hits[0].id == f"i{i}"
                searched.set()
        except BaseException as exc:  # handed to the test's thread
            failures.append(exc)
            searched.set()

    def write() -> None:
        try:
            for start in range(1000, 1200, 20):
                c.upsert([Record(f"i{start + i}", v) for i, v in enumerate(data[start : start + 20])])
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=search), threading.Thread(target=write)]
    for t in threads:
        t.start()
    assert searched.wait(30)
    for n in range(40):
        store.tune(c, Tuning(expansion_search=[64, 200][n % 2], rerank_factor=[2, 8][n % 2]))
    threads[1].join(30)
    stop.set()
    threads[0].join(30)
    assert not failures, failures
    assert len(c) == 1200 and settings(store) == (200, 200, 8, 0)
    assert c.search(Query(data[1150], k=1))[0].id == "i1150"
    store.close()
