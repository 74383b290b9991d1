"""Rows committed but not yet in the HNSW index (the tail) are searchable, deletable and survive
restarts; `index_pending` hands them to the index in steps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from onespace.index import (
    CollectionConfig,
    CollectionStore,
    Filter,
    HnswParams,
    Metric,
    Query,
    Record,
    maintenance,
    search,
)
from onespace.index.collection import INDEX_STEP, Collection, _tail_rows
from onespace.index.config import DEFAULT_MAX_UNINDEXED
from onespace.index.records import Condition
from onespace.index.records import Test as Check
from onespace.index.scoring import rank_vectors
from onespace.index.writes import DeleteOp
from onespace.models import Modality
from tests.unit.index.helpers import mixture, reference_scores, reference_top

DIM = 32


def config() -> CollectionConfig:
    # A generous ef makes the index all but exact, so any difference from the reference is the tail's.
    return CollectionConfig(
        name="docs", model="m", dimension=DIM, metric=Metric.COSINE, hnsw=HnswParams(expansion_search=512)
    )


def write(c: Collection, data: np.ndarray, start: int = 0, *, index: bool) -> None:
    records = [
        Record(f"i{start + n}", row, Modality.TEXT, {"odd": str((start + n) % 2)})
        for n, row in enumerate(data)
    ]
    c.apply([c.prepare_upsert(records)], index=index)


def prefix_collection_with_tail(
    path: Path, index_dimension: int, rerank_factor: int, *, seed: int, indexed: int
) -> tuple[CollectionStore, Collection, np.ndarray]:
    """A collection on a prefix index of 3,000 MRL-like rows: the first `indexed` in HNSW, the
    rest its tail."""
    store = CollectionStore(path)
    store.open()
    c = store.create(replace(config(), index_dimension=index_dimension, rerank_factor=rerank_factor))
    data = mixture(3000, DIM, seed=seed, decay=0.5)
    write(c, data[:indexed], index=True)
    write(c, data[indexed:], indexed, index=False)
    return store, c, data


def drain(c: Collection) -> None:
    while c.index_pending():
        pass


def test_the_tail_is_searched_exactly_and_merged_with_the_index(tmp_path: Path) -> None:
    store = CollectionStore(tmp_path)
    store.open()
    c = store.create(config())
    data = mixture(3000, DIM, seed=1)
    write(c, data[:2000], index=True)
    write(c, data[2000:], 2000, index=False)
    assert c.unindexed_rows() == 1000 and len(c.index) == 2000
    calls = c.usearch_calls
    for q in mixture(20, DIM, seed=2):
        want = reference_top(data, q, Metric.COSINE, 5)
        assert [int(h.id[1:]) for h in c.search(Query(q, 5))] == want  # the tail's rows rank exactly
        odd = Filter(conditions=(Condition("odd", Check.IN, values=("1",)),))
        assert all(int(h.id[1:]) % 2 for h in c.search(Query(q, 5, filter=odd)))
    assert c.usearch_calls > calls  # the index was used, not just a scan
    c.apply([DeleteOp(("i2500", "i10"))], index=False)  # one in the tail, one in the index
    assert c.get(["i2500", "i10"]) == [None, None]
    assert c.index_pending() is True  # adds a step of the tail and applies the removal
    assert c.unindexed_rows() == 0 and len(c.index) == 2998 and c.index.tombstones == 1
    assert c.index_pending() is False
    q = data[2500]
    assert "i2500" not in [h.id for h in c.search(Query(q, 3))]
    store.close()


def test_index_pending_goes_in_steps_and_the_tail_has_a_bound(tmp_path: Path) -> None:
    store = CollectionStore(tmp_path)
    store.open()
    c = store.create(config())
    data = mixture(INDEX_STEP + 100, DIM, seed=3)
    write(c, data, index=False)
    assert c.index_pending() and c.unindexed_rows() == 100
    assert c.index_pending() and c.unindexed_rows() == 0
    bound = c.config.unindexed_limit
    more = mixture(bound + 10, DIM, seed=4)
    write(c, more[:bound], 10_000, index=False)
    assert c.unindexed_rows() == bound
    write(c, more[bound:], 100_000, index=False)  # at the bound: indexes before committing
    assert c.unindexed_rows() < bound
    store.close()


def test_a_collection_sets_its_own_tail_bound_and_keeps_it_across_a_restart(tmp_path: Path) -> None:
    """`max_unindexed_rows` moves the bound both ways: a bulk load lets more rows wait (acks at
    storage speed), a small one keeps searches' exact scans short; stats report the tail."""
    store = CollectionStore(tmp_path)
    store.open()
    bulk = store.create(replace(config(), name="bulk", max_unindexed_rows=DEFAULT_MAX_UNINDEXED + 4000))
    data = mixture(DEFAULT_MAX_UNINDEXED + 4000, DIM, seed=6)
    for start in range(0, len(data), 5000):  # past the default bound, nothing is indexed
        write(bulk, data[start : start + 5000], start, index=False)
    assert bulk.unindexed_rows() == len(data) and len(bulk.index) == 0
    assert maintenance.stats(bulk).unindexed_rows == len(data)
    write(bulk, mixture(1, DIM, seed=7), 90_000, index=False)  # at its bound: a step is indexed first
    assert len(bulk.index) == INDEX_STEP and bulk.unindexed_rows() == len(data) + 1 - INDEX_STEP
    assert [h.id for h in bulk.search(Query(data[-1], 1))] == [f"i{len(data) - 1}"]

    small = store.create(replace(config(), name="small", max_unindexed_rows=300))
    few = mixture(700, DIM, seed=8)
    write(small, few[:300], index=False)
    assert small.unindexed_rows() == 300 and len(small.index) == 0
    write(small, few[300:], 300, index=False)  # indexes the 300 waiting, then commits 400 more
    assert len(small.index) == 300 and small.unindexed_rows() == 400
    store.close()

    again = CollectionStore(tmp_path)
    again.open()
    assert again.get("bulk").config.max_unindexed_rows == DEFAULT_MAX_UNINDEXED + 4000
    assert again.get("small").config.unindexed_limit == 300
    assert again.get("small").unindexed_rows() == 0  # opening indexes the tail
    again.close()


def test_the_tail_survives_a_crash_and_a_clean_close(tmp_path: Path) -> None:
    store = CollectionStore(tmp_path)
    store.open()
    c = store.create(config())
    data = mixture(500, DIM, seed=5)
    write(c, data[:300], index=True)
    write(c, data[300:], 300, index=False)
    # A second store opens the same files without a close, as a restart after kill -9.
    crashed = CollectionStore(tmp_path)
    crashed.open()
    again = crashed.get("docs")
    assert len(again) == 500 and len(again.index) == 500 and again.unindexed_rows() == 0
    assert [h.id for h in again.search(Query(data[450], 1))] == ["i450"]
    crashed.close()
    maintenance.checkpoint(c)  # a clean checkpoint indexes the tail first
    assert c.unindexed_rows() == 0 and c.checkpoint is not None and c.checkpoint.count == 500
    store.close()


def test_the_tail_scored_once_per_batch_gives_the_scores_of_ranking_the_union(tmp_path: Path) -> None:
    """With a tail, a query ranked at the index dimension scores all of it (once per batch, read
    in place), one ranked above it joins its shortlist with the tail's best rows by index prefix
    (one pass for the batch); every hit and score must be what ranking that union alone gives,
    bit for bit, whichever queries share the batch."""
    store, c, data = prefix_collection_with_tail(tmp_path, 16, 2, seed=5, indexed=2000)
    c.apply([DeleteOp(("i2100", "i2555", "i2998"))], index=False)  # dead slots inside the tail
    data[5] = data[2400]  # an indexed row and a tail row that tie
    write(c, data[5:6], 5, index=False)
    queries = [*mixture(12, DIM, seed=6, decay=0.5), data[2400]]
    checked = [
        c.check_query(Query(q, k=[5, 10][i % 2], dimension=[None, 16, 24][i % 3]))
        for i, q in enumerate(queries)
    ]
    view, index, cfg = c.view, c.index, c.config
    tail = _tail_rows(view, c.indexed_below)
    assert len(tail) > 900 and not view.live[tail[0] : tail[-1] + 1].all()
    got = search.search_batch(cfg, view, index, checked, [None] * len(checked), 1, tail)
    plans = search._plans(cfg, view, index, checked, [None] * len(checked), rank_vectors(cfg, checked))
    for q, plan, ranked in zip(checked, plans, got, strict=True):
        assert plan.count, "every query takes the HNSW path"
        found = view.rows_for_keys(index.search(search._index_vectors(cfg, [q]), plan.count, 1)[0])
        joined = (
            tail
            if len(plan.rank_vector) == cfg.index_dimension
            else search._tail_shortlists(view, cfg, [plan], tail)[0]
        )
        alone = search._finish(view, cfg, plan, np.union1d(found[found >= 0], joined))
        np.testing.assert_array_equal(ranked.rows, alone.rows)
        np.testing.assert_array_equal(ranked.scores, alone.scores)
    assert got[-1].scores[0] == got[-1].scores[1]  # the tie, both rows
    store.close()


def test_a_prefix_index_searches_its_tail_at_the_index_dimension(tmp_path: Path) -> None:
    """Above the index dimension the tail is searched the way the index will be: its best rows by
    index prefix (as many as the index's shortlist) join the rerank at the query's dimension. The
    shortlist is the reference's best rows by prefix (ties within rounding aside), a tail row is
    found by its own vector, and recall against an exact scan is what it is once all is indexed."""
    store, c, data = prefix_collection_with_tail(tmp_path, 8, 4, seed=9, indexed=1000)
    view, cfg = c.view, c.config
    tail = _tail_rows(view, c.indexed_below)
    assert len(tail) == 2000 and cfg.unindexed_limit == 4 * DEFAULT_MAX_UNINDEXED  # an 8-d index
    queries = mixture(30, DIM, seed=10, decay=0.5)
    checked = [c.check_query(Query(q, 10)) for q in queries]
    plans = search._plans(cfg, view, c.index, checked, [None] * len(checked), rank_vectors(cfg, checked))
    for q, plan, rows in zip(queries, plans, search._tail_shortlists(view, cfg, plans, tail), strict=True):
        assert plan.count == 64 and len(rows) == 64 and np.all(np.diff(rows) > 0)
        reference = reference_scores(data[1000:], q, Metric.COSINE, 8)  # tail slots are rows 1000...
        cutoff = np.sort(reference)[-64]
        assert np.all(reference[rows - 1000] >= cutoff - 1e-3)

    def recall() -> float:
        hits = 0
        for q in queries:
            want = reference_top(data, q, Metric.COSINE, 10)
            hits += len(set(want) & {int(h.id[1:]) for h in c.search(Query(q, 10))})
        return hits / (10 * len(queries))

    with_tail = recall()
    for n in (1000, 1777, 2999):  # the tail's own rows, found first by their own vectors
        assert c.search(Query(data[n], 1))[0].id == f"i{n}"
    odd = Filter(conditions=(Condition("odd", Check.IN, values=("1",)),))
    for q in queries[:5]:  # a filter applies to the tail's rows as to the index's
        hits = c.search(Query(q, 10, filter=odd))
        assert len(hits) == 10 and all(int(h.id[1:]) % 2 for h in hits)
    assert c.search(Query(data[2001], 1, filter=odd))[0].id == "i2001"
    drain(c)
    assert c.unindexed_rows() == 0
    assert with_tail >= recall() - 0.02  # an 8-d prefix limits both alike (~0.9 here)
    store.close()


def test_the_default_tail_bound_follows_the_index_dimension() -> None:
    """A tail costs searches about in proportion to the index dimension plus 200 (a row's own
    cost), so the default bound is the tail that costs what 16,384 rows of 1024 do, in steps of
    1,024 within 1x-4x that many rows; a bound the collection sets is kept."""
    at = {
        d: CollectionConfig(name="c", model="m", dimension=3072, index_dimension=d).unindexed_limit
        for d in (64, 256, 384, 512, 1024, 3072)
    }
    assert at == {64: 65_536, 256: 43_008, 384: 33_792, 512: 27_648, 1024: 16_384, 3072: 16_384}
    assert CollectionConfig(name="c", model="m", dimension=1024).validated().unindexed_limit == 16_384
    assert replace(config(), index_dimension=8, max_unindexed_rows=500).unindexed_limit == 500
