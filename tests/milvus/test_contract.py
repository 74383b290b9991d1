"""The backend contract, run against both backends: what the gateway relies on from a store.

Every test gets a fresh backend of each kind (`conftest.opener`); Milvus is milvus-lite in
process. Results are compared with an independent float64 reference (`tests.unit.index.helpers`)
and, where the search is exact, between the two backends bit for bit.
"""

# ruff: noqa: E402  (the imports follow the check that the `milvus` extra is installed)
from __future__ import annotations

from tests.milvus.conftest import skip_without_milvus

skip_without_milvus()

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from onespace.engine.tuner import check_queries, tune_search
from onespace.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from onespace.index import (
    CollectionConfig,
    Condition,
    Filter,
    HnswParams,
    IndexDtype,
    Metric,
    Query,
    Record,
    StoredDtype,
    Tuning,
)
from onespace.index import Test as Op
from onespace.index.backend import Backend, CollectionHandle
from onespace.index.writes import DeleteOp
from onespace.models import Modality
from tests.milvus.conftest import KINDS, Opener, make_backend
from tests.unit.index.helpers import mixture, reference_scores, reference_top

DIM = 32


def config(name: str = "docs", **changes: object) -> CollectionConfig:
    values: dict[str, object] = {
        "index_dimension": 16,
        "stored_dtype": StoredDtype.F32,
        "hnsw": HnswParams(expansion_search=256),
        **changes,
    }
    return CollectionConfig(name=name, model="m", dimension=DIM, **values)  # type: ignore[arg-type]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def fill(c: CollectionHandle, data: np.ndarray, prefix: str = "i") -> None:
    modalities = (None, Modality.TEXT, Modality.IMAGE)
    c.apply(
        [
            c.prepare_upsert(
                [
                    Record(f"{prefix}{i}", v, modalities[i % 3], {"n": str(i % 10), "even": str(i % 2 == 0)})
                    for i, v in enumerate(data)
                ]
            )
        ]
    )


def upsert(c: CollectionHandle, records: list[Record]) -> int:
    return c.apply([c.prepare_upsert(records)])[0]


def delete(c: CollectionHandle, ids: list[str]) -> int:
    return c.apply([DeleteOp(tuple(ids))])[0]


def test_upsert_get_delete(backend: Backend) -> None:
    c = backend.create(config())
    data = mixture(3, DIM, seed=1)
    assert upsert(c, [Record("a", data[0], Modality.TEXT, {"k": "v", "x": "1"}), Record("b", data[1])]) == 2
    assert len(c) == 2 and c.modalities() == {Modality.TEXT}
    a, missing, b = c.get(["a", "nope", "b"], include_vectors=True)
    assert missing is None and a is not None and b is not None
    assert (a.id, a.modality, a.metadata) == ("a", Modality.TEXT, {"k": "v", "x": "1"})
    assert (b.id, b.modality, b.metadata) == ("b", None, {})
    np.testing.assert_array_equal(a.vector, data[0])  # f32 stored: exact
    assert c.get(["a"])[0].vector is None  # type: ignore[union-attr]
    np.testing.assert_array_equal(c.vector("b"), data[1])
    with pytest.raises(NotFound, match="'nope'"):
        c.vector("nope")
    assert delete(c, ["a", "nope", "a"]) == 1
    assert c.get(["a", "b"])[0] is None and len(c) == 1 and c.modalities() == frozenset()
    assert delete(c, ["a"]) == 0


def test_f16_collections_store_rounded_values(backend: Backend) -> None:
    c = backend.create(config(stored_dtype=StoredDtype.F16))
    v = mixture(1, DIM, seed=2)[0] * 3
    upsert(c, [Record("a", v)])
    np.testing.assert_array_equal(c.vector("a"), v.astype(np.float16).astype(np.float32))


def test_replace_keeps_one_item_with_the_new_values(backend: Backend) -> None:
    c = backend.create(config())
    old, new = mixture(2, DIM, seed=3)
    upsert(c, [Record("a", old, Modality.TEXT, {"colour": "red", "size": "3"})])
    upsert(c, [Record("a", new, Modality.IMAGE, {"colour": "blue"})])
    item = c.get(["a"], include_vectors=True)[0]
    assert item is not None and len(c) == 1 and c.modalities() == {Modality.IMAGE}
    assert (item.modality, item.metadata) == (Modality.IMAGE, {"colour": "blue"})
    np.testing.assert_array_equal(item.vector, new)
    (hit,) = c.search_many([Query(new, k=5)])[0]
    assert hit.id == "a" and hit.score == pytest.approx(1.0, abs=1e-5)
    old_values = Filter(conditions=(Condition("size", Op.RANGE, low=3, high=3),))
    assert c.search_many([Query(new, k=5, filter=Filter(metadata={"colour": "red"}))])[0] == []
    assert c.search_many([Query(new, k=5, filter=old_values)])[0] == []


def test_a_group_of_operations_folds_in_order(backend: Backend) -> None:
    """What the write batcher sends: later operations see earlier ones of the same group."""
    c = backend.create(config())
    v = mixture(4, DIM, seed=4)
    upsert(c, [Record("x", v[0])])
    ops = [
        c.prepare_upsert([Record("a", v[1]), Record("b", v[2]), Record("a", v[3])]),  # a repeated: last wins
        DeleteOp(("a", "x", "zz")),
        c.prepare_upsert([Record("a", v[0], Modality.AUDIO)]),
        DeleteOp(("b", "b")),
    ]
    assert c.apply(ops) == [3, 2, 1, 1]
    a, b, x = c.get(["a", "b", "x"], include_vectors=True)
    assert b is None and x is None and a is not None and a.modality is Modality.AUDIO
    np.testing.assert_array_equal(a.vector, v[0])
    assert len(c) == 1 and c.modalities() == {Modality.AUDIO}


def test_bad_records_and_queries_are_refused_before_any_write(backend: Backend) -> None:
    c = backend.create(config())
    good = mixture(1, DIM, seed=5)[0]
    with pytest.raises(InvalidArgument) as refused:
        c.prepare_upsert([Record("a", good), Record("b", good[:5])])
    assert refused.value.field == "items[1].vector"
    with pytest.raises(InvalidArgument) as refused:
        c.check_query(Query(good, k=3, dimension=DIM + 1))
    assert refused.value.field == "dimension"
    assert len(c) == 0


SEARCH_FILTERS = {
    "none": Filter(),
    "modality": Filter(modalities=frozenset({Modality.TEXT})),
    "metadata": Filter(metadata={"n": "3"}),
    "in": Filter(conditions=(Condition("n", Op.IN, ("1", "2")),)),
    "not_in": Filter(conditions=(Condition("n", Op.NOT_IN, ("1", "2", "3")),)),
    "range": Filter(conditions=(Condition("n", Op.RANGE, low=2, high=5, high_inclusive=False),)),
    "combined": Filter(
        modalities=frozenset({Modality.IMAGE, Modality.TEXT}),
        metadata={"even": "True"},
        conditions=(Condition("n", Op.RANGE, low=4),),
    ),
}


def passes(i: int, flt: Filter) -> bool:
    modality = (None, Modality.TEXT, Modality.IMAGE)[i % 3]
    if flt.modalities and modality not in flt.modalities:
        return False
    meta = {"n": str(i % 10), "even": str(i % 2 == 0)}
    for c in flt.all_conditions:
        value = meta.get(c.key)
        if c.test is Op.IN and value not in c.values:
            return False
        if c.test is Op.NOT_IN and value in c.values:
            return False
        if c.test is Op.RANGE:
            x = float(value) if value is not None else np.nan
            if not (
                (x >= c.low if c.low_inclusive else x > c.low)
                and (x <= c.high if c.high_inclusive else x < c.high)
            ):
                return False
    return True


@pytest.mark.parametrize("dimension", [DIM, 16, 8])
def test_search_with_filters_and_query_dimensions(backend: Backend, dimension: int) -> None:
    """Every filter at the stored, the index and a shorter rank dimension equals the exact answer."""
    data = mixture(400, DIM, seed=6, decay=0.5)
    c = backend.create(config())
    fill(c, data)
    queries = mixture(6, DIM, seed=7, decay=0.5)
    plans = [(name, flt, q) for name, flt in SEARCH_FILTERS.items() for q in queries]
    results = c.search_many([Query(q, k=10, dimension=dimension, filter=flt) for _, flt, q in plans])
    for (name, flt, q), hits in zip(plans, results, strict=True):
        rows = np.flatnonzero([passes(i, flt) for i in range(len(data))])
        scores = reference_scores(data[rows], q, Metric.COSINE, dimension)
        expected = [f"i{rows[j]}" for j in np.argsort(-scores, kind="stable")[:10]]
        assert [h.id for h in hits] == expected, name
        np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:10], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", list(Metric))
def test_matryoshka_rerank_orders_as_exact_search_on_full_vectors(backend: Backend, metric: Metric) -> None:
    """A short index prefix (8 of 32), then a rerank on the full vectors: the hits come back in the
    exact full-vector order with exact scores, and they are the exact top-k. (Unit vectors, as
    embeddings are: an unnormalised inner product does not rank like its renormalised prefix.)"""
    data = unit(mixture(1000, DIM, seed=8, decay=1.0))
    c = backend.create(config(index_dimension=8, metric=metric, rerank_factor=8, dtype=IndexDtype.F32))
    fill(c, data)
    queries = unit(mixture(20, DIM, seed=9, decay=1.0))
    found = c.search_many([Query(q, k=10) for q in queries])
    overlap = []
    for q, hits in zip(queries, found, strict=True):
        ids = [int(h.id[1:]) for h in hits]
        reference = reference_scores(data[ids], q, metric)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        np.testing.assert_allclose([h.score for h in hits], reference, rtol=1e-4, atol=1e-4)
        overlap.append(len(set(ids) & set(reference_top(data, q, metric, 10))) / 10)
    assert np.mean(overlap) >= 0.95


def test_exact_searches_are_identical_on_both_backends(tmp_path: Path) -> None:
    """Below the index dimension both backends scan exactly with the same scoring code: the same
    hits with bit-identical scores, f16 rows included."""
    data = mixture(300, DIM, seed=10)
    queries = mixture(5, DIM, seed=11)
    answers = {}
    for kind in KINDS:
        backend = make_backend(kind, tmp_path / kind)
        backend.open()
        try:
            c = backend.create(config(stored_dtype=StoredDtype.F16, metric=Metric.L2))
            fill(c, data)
            hits = c.search_many(
                [Query(q, k=7, dimension=12, filter=Filter(metadata={"even": "True"})) for q in queries]
            )
            answers[kind] = [[(h.id, h.score) for h in row] for row in hits]
        finally:
            backend.close()
    assert answers["milvus"] == answers["embedded"]
    assert all(len(row) == 7 for row in answers["milvus"])


def test_short_results_only_when_fewer_items_match(backend: Backend) -> None:
    c = backend.create(config())
    fill(c, mixture(50, DIM, seed=12))
    q = mixture(1, DIM, seed=13)[0]
    assert len(c.search_many([Query(q, k=100)])[0]) == 50
    rare = Filter(metadata={"n": "7"}, modalities=frozenset({Modality.TEXT}))
    assert sorted(h.id for h in c.search_many([Query(q, k=10, filter=rare)])[0]) == ["i37", "i7"]
    assert c.search_many([Query(q, k=10, filter=Filter(metadata={"n": "none"}))])[0] == []


def test_only_the_embedded_store_searches_in_memory(backend: Backend, kind: str) -> None:
    """The search batcher runs a short batch on the event loop only where the backend says its
    search is memory work: never a Milvus call over the network."""
    c = backend.create(config())
    fill(c, mixture(20, DIM, seed=14))
    queries = [c.check_query(Query(mixture(1, DIM, seed=15)[0], k=5))]
    assert c.search_in_memory(queries) is (kind == "embedded")


def test_only_the_embedded_store_scans_exactly_for_recall_samples(backend: Backend, kind: str) -> None:
    """The recall sampler compares a search with `exact_scores`: the embedded store's exact scan
    gives the scores its search returns (an exhaustive one here); Milvus declines (None)."""
    c = backend.create(config())
    fill(c, mixture(20, DIM, seed=16))
    query = c.check_query(Query(mixture(1, DIM, seed=17)[0], k=5))
    exact = c.exact_scores(query)
    if kind == "embedded":
        assert exact is not None
        assert exact.tolist() == [h.score for h in c.search_many([query])[0]]
    else:
        assert exact is None


def test_restart_keeps_items_and_config(opener: Opener) -> None:
    backend = opener()
    wanted = config(
        "t1~photos.v2",
        metric=Metric.INNER_PRODUCT,
        index_dimension=12,
        rerank_factor=6,
        hnsw=HnswParams(connectivity=12, expansion_add=64, expansion_search=300),
    ).validated()
    c = backend.create(wanted)
    backend.create(config("other"))
    data = mixture(300, DIM, seed=14)
    fill(c, data)
    delete(c, ["i0", "i1"])
    queries = [Query(q, k=5) for q in mixture(5, DIM, seed=15)]
    before = [[(h.id, h.score) for h in row] for row in c.search_many(queries)]
    backend.close()

    again = opener()
    assert [x.name for x in again.list()] == ["other", "t1~photos.v2"]
    reopened = again.get("t1~photos.v2")
    assert reopened.config == wanted and len(reopened) == 298
    assert reopened.modalities() == {Modality.TEXT, Modality.IMAGE}
    item = reopened.get(["i5"], include_vectors=True)[0]
    assert item is not None and item.metadata == {"n": "5", "even": "False"}
    np.testing.assert_array_equal(item.vector, data[5])
    assert reopened.get(["i0"]) == [None]
    assert [[(h.id, h.score) for h in row] for row in reopened.search_many(queries)] == before


def test_tuning_applies_at_once_and_survives_a_restart(opener: Opener, kind: str) -> None:
    """`Backend.tune`: search-time settings change for the next search and the change is durable
    (the same answers after a restart); a refused change (a bad value; on Milvus, a tail bound)
    leaves the config as it was."""
    backend = opener()
    c = backend.create(config(rerank_factor=2))
    data = mixture(300, DIM, seed=17)
    fill(c, data)
    queries = [Query(q, k=5) for q in data[:5]]
    tuned = backend.tune(c, Tuning(expansion_search=128, rerank_factor=8))
    assert tuned == c.config == config(rerank_factor=8, hnsw=HnswParams(expansion_search=128)).validated()
    before = [[h.id for h in row] for row in c.search_many(queries)]
    assert [row[0] for row in before] == [f"i{i}" for i in range(5)]
    with pytest.raises(InvalidArgument) as refused:
        backend.tune(c, Tuning(expansion_search=64, rerank_factor=1000))
    assert refused.value.field == "rerank_factor" and c.config == tuned
    if kind == "milvus":
        with pytest.raises(InvalidArgument, match="milvus backend") as refused:
            backend.tune(c, Tuning(expansion_search=64, max_unindexed_rows=100_000))
        assert refused.value.field == "max_unindexed_rows" and c.config == tuned
    backend.close()

    again = opener()
    assert again.get("docs").config == tuned
    assert [[h.id for h in row] for row in again.get("docs").search_many(queries)] == before


def test_create_twice_and_delete(opener: Opener) -> None:
    backend = opener()
    c = backend.create(config())
    upsert(c, [Record("a", mixture(1, DIM, seed=16)[0])])
    with pytest.raises(AlreadyExists):
        backend.create(config())
    backend.delete("docs")
    with pytest.raises(NotFound):
        backend.get("docs")
    with pytest.raises(NotFound):
        backend.delete("docs")
    with pytest.raises(NotFound):  # a request that still holds the old handle
        upsert(c, [Record("b", mixture(1, DIM, seed=17)[0])])
    with pytest.raises(NotFound):  # the maintainer, which may hold it too
        backend.stats(c)
    assert backend.list() == []
    fresh = backend.create(replace(config(), rerank_factor=2))
    assert len(fresh) == 0 and fresh.get(["a"]) == [None]
    backend.close()
    assert [(x.name, x.config.rerank_factor) for x in opener().list()] == [("docs", 2)]


def test_health_check(backend: Backend) -> None:
    assert backend.check() is None


def test_only_the_embedded_store_searches_with_settings_of_its_own_and_can_be_tuned(
    backend: Backend, kind: str
) -> None:
    """A search with per-call settings (a tuning trial) and `tune_search` need the embedded
    store; Milvus refuses both with FAILED_PRECONDITION, its stored settings untouched."""
    c = backend.create(config())
    fill(c, mixture(40, DIM, seed=18))
    queries = list(mixture(3, DIM, seed=19))
    settings = Tuning(expansion_search=16, rerank_factor=1)
    before = c.config
    if kind == "embedded":
        assert len(c.search_many([Query(queries[0], k=5)], 0, settings)[0]) == 5
        assert tune_search(c, check_queries(c, queries, 5), target=0.5, threads=1).reached
    else:
        with pytest.raises(FailedPrecondition, match="Milvus"):
            c.search_many([Query(queries[0], k=5)], 0, settings)
        with pytest.raises(FailedPrecondition, match="Milvus"):
            tune_search(c, check_queries(c, queries, 5), target=0.5, threads=1)
    assert c.config == before
