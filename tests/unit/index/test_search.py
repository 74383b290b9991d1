from __future__ import annotations

import numpy as np
import pytest

from onespace.errors import InvalidArgument
from onespace.index import (
    CheckedQuery,
    Collection,
    CollectionConfig,
    Condition,
    Filter,
    IndexDtype,
    Metric,
    Query,
    Record,
    StoredDtype,
    search,
)
from onespace.index import Test as Op
from onespace.index.scoring import rank_vectors
from onespace.models import Modality
from tests.unit.index.helpers import mixture, new_collection, reference_scores, reference_top

MODALITIES = [Modality.TEXT, Modality.IMAGE, Modality.AUDIO, Modality.VIDEO]


def build(
    vectors: np.ndarray,
    metric: Metric = Metric.COSINE,
    index_dimension: int = 0,
    dtype: IndexDtype = IndexDtype.F32,
) -> Collection:
    c = new_collection(
        CollectionConfig(
            name="s",
            model="m",
            dimension=vectors.shape[1],
            index_dimension=index_dimension,
            metric=metric,
            dtype=dtype,
        )
    )
    c.upsert(
        [
            Record(str(i), v, MODALITIES[i % 4], {"parity": str(i % 2), "bucket": str(i % 100)})
            for i, v in enumerate(vectors)
        ]
    )
    return c


@pytest.mark.parametrize("metric", list(Metric))
@pytest.mark.parametrize("index_dimension", [0, 32])
def test_hnsw_results_agree_with_brute_force(metric: Metric, index_dimension: int) -> None:
    data = mixture(2000, 64, seed=1, decay=0.5)
    queries = mixture(40, 64, seed=2, decay=0.5)
    if index_dimension:
        # The index holds renormalised prefixes, so a Matryoshka shortlist only tracks ip/l2 rankings
        # when vector norms are alike, as with real embeddings; raw vectors are covered by index_dimension 0.
        data /= np.linalg.norm(data, axis=1, keepdims=True)
    c = build(data, metric, index_dimension)
    found = 0
    for q in queries:
        hits = c.search(Query(q, k=10))
        truth = reference_top(data, q, metric, 10)
        found += len({h.id for h in hits} & {str(i) for i in truth})
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        expected = reference_scores(data[[int(h.id) for h in hits]], q, metric)
        np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    assert c.usearch_calls == len(queries)  # every query went through the index
    assert found / (10 * len(queries)) >= 0.97


@pytest.mark.parametrize("metric", list(Metric))
def test_small_collection_is_scanned_exactly(metric: Metric) -> None:
    data = mixture(60, 32, seed=3)
    c = build(data, metric)
    for q in mixture(10, 32, seed=4):
        hits = c.search(Query(q, k=7))
        assert [int(h.id) for h in hits] == reference_top(data, q, metric, 7)
    assert c.usearch_calls == 0


def test_cosine_score_of_identical_vector_is_one() -> None:
    data = mixture(500, 32, seed=5)
    c = build(data)
    hit = c.search(Query(data[17] * 3.0, k=1))[0]
    assert hit.id == "17"
    assert hit.score == pytest.approx(1.0, abs=1e-5)


def test_matryoshka_index_recall_against_exact_full_dimension() -> None:
    data = mixture(3000, 256, seed=6, centres=100, decay=0.5)
    queries = mixture(50, 256, seed=7, centres=100, decay=0.5)
    c = build(data, Metric.COSINE, index_dimension=64, dtype=IndexDtype.F16)
    found = prefix_only = 0
    for q in queries:
        truth = {str(i) for i in reference_top(data, q, Metric.COSINE, 10)}
        found += len({h.id for h in c.search(Query(q, k=10))} & truth)
        prefix_only += len({str(i) for i in reference_top(data, q, Metric.COSINE, 10, d=64)} & truth)
    assert found / (10 * len(queries)) >= 0.95
    assert prefix_only / (10 * len(queries)) < 0.8  # the full-dimension rerank is what gets us there
    assert c.usearch_calls == len(queries)


def test_query_below_the_index_dimension_is_an_exact_scan_at_that_dimension() -> None:
    data = mixture(1500, 128, seed=8, decay=0.5)
    c = build(data, Metric.COSINE, index_dimension=64)
    for q in mixture(10, 128, seed=9, decay=0.5):
        full = c.search(Query(q, k=10, dimension=32))
        short = c.search(Query(q[:32].copy(), k=10, dimension=32))
        assert [int(h.id) for h in full] == reference_top(data, q, Metric.COSINE, 10, d=32)
        assert [(h.id, h.score) for h in full] == [(h.id, h.score) for h in short]
    assert c.usearch_calls == 0


@pytest.mark.parametrize("metric", list(Metric))
def test_query_between_index_and_stored_dimension_reranks_at_that_dimension(metric: Metric) -> None:
    data = mixture(1500, 128, seed=10, decay=0.5)
    c = build(data, metric, index_dimension=32)
    for q in mixture(10, 128, seed=11, decay=0.5):
        hits = c.search(Query(q, k=5, dimension=96))
        expected = reference_scores(data[[int(h.id) for h in hits]], q, metric, d=96)
        np.testing.assert_allclose([h.score for h in hits], expected, rtol=1e-4, atol=1e-4)
        assert [h.id for h in hits][:1] == [str(reference_top(data, q, metric, 1, d=96)[0])]
    assert c.usearch_calls == 10


def test_modality_filter() -> None:
    data = mixture(2000, 32, seed=12)
    c = build(data)
    allowed = {Modality.IMAGE, Modality.VIDEO}
    subset = [i for i in range(len(data)) if MODALITIES[i % 4] in allowed]
    found = 0
    for q in mixture(20, 32, seed=13):
        hits = c.search(Query(q, k=10, filter=Filter(modalities=frozenset(allowed))))
        assert len(hits) == 10
        assert all(h.modality in allowed for h in hits)
        truth = {str(subset[i]) for i in reference_top(data[subset], q, Metric.COSINE, 10)}
        found += len({h.id for h in hits} & truth)
    assert found / 200 >= 0.97


def test_only_filters_with_metadata_conditions_take_a_search_off_memory() -> None:
    """`search_in_memory` (may the search batcher run it on the event loop?): modalities are in
    the slot arrays; metadata pairs and conditions are SQLite queries."""
    c = build(mixture(50, 16, seed=17))
    q = mixture(1, 16, seed=18)[0]

    def checked(flt: Filter) -> list[CheckedQuery]:
        return [c.check_query(Query(q, k=5)), c.check_query(Query(q, k=5, filter=flt))]

    assert c.search_in_memory(checked(Filter()))
    assert c.search_in_memory(checked(Filter(modalities=frozenset({Modality.IMAGE}))))
    assert not c.search_in_memory(checked(Filter(metadata={"parity": "1"})))
    assert not c.search_in_memory(checked(Filter(conditions=(Condition("bucket", Op.IN, ("7",)),))))


def test_selective_metadata_filter_still_returns_k() -> None:
    data = mixture(2000, 32, seed=14)
    c = build(data)
    subset = [i for i in range(len(data)) if i % 100 == 7 and i % 2 == 1]  # 20 items
    flt = Filter(metadata={"bucket": "7", "parity": "1"})
    for q in mixture(5, 32, seed=15):
        hits = c.search(Query(q, k=10, filter=flt))
        truth = [subset[i] for i in reference_top(data[subset], q, Metric.COSINE, 10)]
        assert [int(h.id) for h in hits] == truth
        assert all(h.metadata["bucket"] == "7" for h in hits)
        assert len(c.search(Query(q, k=50, filter=flt))) == 20


def test_filter_matching_nothing_returns_nothing() -> None:
    c = build(mixture(300, 16, seed=16))
    assert c.search(Query(mixture(1, 16, seed=1)[0], k=5, filter=Filter(metadata={"bucket": "x"}))) == []
    q = Query(mixture(1, 16, seed=1)[0], k=5, filter=Filter(metadata={"bucket": "1", "parity": "0"}))
    assert c.search(q) == []


def test_filter_whose_matches_are_far_away_falls_back_to_an_exact_scan() -> None:
    rng = np.random.default_rng(17)
    # Matches (1,400) many times the shortlist (64 for k=2), so HNSW is planned, not an exact scan.
    near = (rng.normal(size=(3600, 32)) * 0.1 + 5.0).astype(np.float32)
    far = (rng.normal(size=(1400, 32)) * 0.1 - 5.0).astype(np.float32)
    c = new_collection(CollectionConfig(name="f", model="m", dimension=32, dtype=IndexDtype.F32))
    c.upsert([Record(f"n{i}", v, metadata={"side": "near"}) for i, v in enumerate(near)])
    c.upsert([Record(f"f{i}", v, metadata={"side": "far"}) for i, v in enumerate(far)])
    q = near[0]
    hits = c.search(Query(q, k=2, filter=Filter(metadata={"side": "far"})))
    assert c.usearch_calls == 1  # planned for the index, then fell back
    assert [h.id for h in hits] == [f"f{i}" for i in reference_top(far, q, Metric.COSINE, 2)]


def test_k_larger_than_the_collection() -> None:
    c = build(mixture(30, 16, seed=18))
    assert len(c.search(Query(mixture(1, 16, seed=2)[0], k=100))) == 30


def test_empty_collection_returns_nothing() -> None:
    c = new_collection(CollectionConfig(name="e", model="m", dimension=8))
    assert c.search(Query(np.ones(8, dtype=np.float32), k=3)) == []
    assert c.search_many([]) == []


def test_deleted_items_never_appear() -> None:
    data = mixture(2000, 32, seed=19)
    c = build(data)
    deleted = {str(i) for i in range(0, 2000, 2)}
    assert c.delete(sorted(deleted)) == 1000
    for q in data[:40:2]:  # queries equal to deleted vectors
        hits = c.search(Query(q, k=10))
        assert len(hits) == 10
        assert not deleted & {h.id for h in hits}


def test_include_vectors_returns_the_stored_vectors() -> None:
    data = mixture(100, 16, seed=20)
    c = build(data)
    hits = c.search(Query(data[3], k=2, include_vectors=True))
    for h in hits:
        assert h.vector is not None
        np.testing.assert_array_equal(h.vector, data[int(h.id)])
    assert all(h.vector is None for h in c.search(Query(data[3], k=2)))


def test_i8_index_is_only_a_shortlist_scores_are_exact() -> None:
    data = mixture(2000, 64, seed=21)
    c = build(data, Metric.COSINE, dtype=IndexDtype.I8)
    for q in mixture(10, 64, seed=22):
        hits = c.search(Query(q, k=5))
        expected = reference_scores(data[[int(h.id) for h in hits]], q, Metric.COSINE)
        np.testing.assert_allclose([h.score for h in hits], expected, rtol=1e-5, atol=1e-5)


def test_search_many_equals_individual_searches_with_one_call_per_shortlist_size() -> None:
    data = mixture(2500, 64, seed=23, decay=0.5)
    queries = [
        Query(q, k=[10, 16, 5][i % 3], dimension=[None, 64, 48][i % 3])
        for i, q in enumerate(mixture(30, 64, seed=24, decay=0.5))
    ]
    queries.append(Query(data[0], k=10, dimension=16))  # below the index dimension: exact
    queries.append(Query(data[1], k=10, filter=Filter(metadata={"bucket": "3"})))  # selective: exact
    queries.append(Query(data[2], k=10, filter=Filter(modalities=frozenset({Modality.TEXT}))))
    c = build(data, Metric.COSINE, index_dimension=32)
    before = c.usearch_calls
    batch = c.search_many(queries, threads=2)
    # k=10 and k=16 share the shortlist size 64, k=5 uses 32; the text filter (625 matches) would
    # ask for 512, so its matches are scanned exactly instead.
    assert c.usearch_calls - before == 2
    alone = [c.search(q, threads=1) for q in queries]
    assert [[(h.id, h.score) for h in hits] for hits in batch] == [
        [(h.id, h.score) for h in hits] for hits in alone
    ]
    assert all(len(hits) == q.k for hits, q in zip(batch, queries, strict=True))


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        (Query(np.ones(16, dtype=np.float32), k=0), "k", "positive integer"),
        (Query(np.ones(16, dtype=np.float32), k=1, dimension=17), "dimension", "larger than the stored"),
        (Query(np.ones(16, dtype=np.float32), k=1, dimension=0), "dimension", "positive integer"),
        (Query(np.ones(10, dtype=np.float32), k=1), "vector", "length 10 does not match"),
        (Query(np.ones(10, dtype=np.float32), k=1, dimension=8), "vector", "16 or 8"),
        (Query(np.full(16, np.nan, dtype=np.float32), k=1), "vector", "NaN or infinity"),
        (Query(np.zeros(16, dtype=np.float32), k=1), "vector", "all zeros"),
        (
            Query(np.ones(16, dtype=np.float32), k=1, filter=Filter(metadata={"a": 1})),  # type: ignore[dict-item]
            "filter.metadata",
            "must be a string",
        ),
        (
            Query(np.ones(16, dtype=np.float32), k=1, filter=Filter(modalities=frozenset({"text"}))),  # type: ignore[arg-type]
            "filter.modalities",
            "not a Modality",
        ),
    ],
)
def test_invalid_queries_name_the_field(query: Query, field: str, reason: str) -> None:
    c = build(mixture(20, 16, seed=25))
    with pytest.raises(InvalidArgument) as info:
        c.search(query)
    assert info.value.field == field
    assert reason in info.value.reason


def test_the_shortlist_is_widened_only_for_a_lossy_index() -> None:
    def config(**fields: object) -> CollectionConfig:
        return CollectionConfig(name="c", model="m", dimension=64, rerank_factor=5, **fields).validated()  # type: ignore[arg-type]

    assert config().shortlist_factor == 1  # f16 index over f16 stored vectors: the same numbers
    assert config(dtype=IndexDtype.F32, stored_dtype=StoredDtype.F32).shortlist_factor == 1
    assert config(stored_dtype=StoredDtype.F32).shortlist_factor == 5  # f16 index, f32 stored
    assert config(dtype=IndexDtype.I8).shortlist_factor == 5
    assert config(dtype=IndexDtype.BF16).shortlist_factor == 5
    assert config(index_dimension=32).shortlist_factor == 5  # a prefix index


@pytest.mark.parametrize("metric", list(Metric))
def test_shortlists_ranked_together_match_ranking_each_alone_bit_for_bit(metric: Metric) -> None:
    """`search_batch` ranks unfiltered full shortlists in one gather and one sort; every score
    and every position must be what the one-query path (`_rank`) gives for the same shortlist."""
    data = mixture(3000, 64, seed=31, decay=0.5)
    if metric is not Metric.COSINE:
        data /= np.linalg.norm(data, axis=1, keepdims=True)
    data[8] = data[7]  # two rows that tie
    c = build(data, metric, index_dimension=32)
    raw = [*mixture(24, 64, seed=32, decay=0.5), data[7]]
    checked = [
        c.check_query(Query(q, k=[10, 12, 16][i % 3], dimension=[None, 48, 64][i % 3]))
        for i, q in enumerate(raw)
    ]
    config, view, index = c.config, c.view, c.index
    plans = search._plans(config, view, index, checked, [None] * len(checked), rank_vectors(config, checked))
    count = plans[0].count
    assert count and all(p.count == count for p in plans)
    shortlists = view.rows_for_keys(np.stack(index.search(search._index_vectors(config, checked), count, 1)))
    assert (shortlists >= 0).all()
    together = search._rank_shortlists(view, config, plans, shortlists)
    for plan, shortlist, got in zip(plans, shortlists, together, strict=True):
        alone = search._rank(view, config, plan, shortlist)
        np.testing.assert_array_equal(got.rows, alone.rows)
        np.testing.assert_array_equal(got.scores, alone.scores)
    last = together[-1]  # the tie: both rows, the earlier first
    assert last.rows[:2].tolist() == [7, 8] and last.scores[0] == last.scores[1]


def test_short_shortlists_are_not_read_past_what_usearch_found() -> None:
    """usearch pads a short shortlist with key 0 (a real key here): only `found` keys count, and
    a shortlist with fewer than k live rows falls back to the exact scan."""
    data = mixture(1000, 32, seed=33)
    c = build(data, Metric.COSINE)
    real = c.index

    class Short:
        search_calls = 0

        def __len__(self) -> int:
            return len(real)

        def search_matrix(
            self, queries: np.ndarray, count: int, threads: int, expansion_search: int | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
            keys, found = real.search_matrix(queries, count, threads, expansion_search)
            found[::2] = 3  # every other query: only 3 of its keys were found, the rest padding
            keys[::2, 3:] = 0
            return keys, found

    queries = [c.check_query(Query(q, k=10)) for q in mixture(6, 32, seed=34)]
    view = c.view
    ranked = search.search_batch(c.config, view, Short(), queries, [None] * 6, 1)  # type: ignore[arg-type]
    for q, r in zip(queries, ranked, strict=True):
        assert r.rows.tolist() == reference_top(data, q.vector, Metric.COSINE, 10)


@pytest.mark.parametrize("dtype", [IndexDtype.F32, IndexDtype.I8])
def test_a_query_with_a_zero_index_prefix_is_scanned_exactly_beside_searched_ones(dtype: IndexDtype) -> None:
    """A renormalised index prefix of zeros has no direction to search along: that query of a
    batch is ranked by an exact scan, the others of the same batch by the index, each as if alone."""
    data = mixture(2000, 64, seed=40, decay=0.5)
    c = build(data, Metric.COSINE, 16, dtype)
    blind = mixture(1, 64, seed=41)[0]
    blind[:16] = 0.0
    others = mixture(3, 64, seed=42, decay=0.5)
    checked = [c.check_query(Query(v, k=5)) for v in (others[0], blind, others[1], others[2])]
    plans = search._plans(
        c.config, c.view, c.index, checked, [None] * len(checked), rank_vectors(c.config, checked)
    )
    assert [p.count > 0 for p in plans] == [True, False, True, True]
    together = c.search_many(checked)
    assert [h.id for h in together[1]] == [str(i) for i in reference_top(data, blind, Metric.COSINE, 5)]
    for query, hits in zip(checked, together, strict=True):
        assert [(h.id, h.score) for h in c.search_many([query])[0]] == [(h.id, h.score) for h in hits]
