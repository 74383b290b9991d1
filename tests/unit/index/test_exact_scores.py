"""`Collection.exact_scores`: the exact top-k scores a perfect index would give, the reference the
recall sampler (engine.recall) measures served searches against."""

from __future__ import annotations

import numpy as np
import pytest

from onespace.engine.recall import recall
from onespace.index import Collection, CollectionConfig, Filter, IndexDtype, Metric, Query, Record, Tuning
from onespace.index.writes import UpsertOp
from onespace.models import Modality
from tests.unit.index.helpers import mixture, new_collection, reference_scores

MODALITIES = [Modality.TEXT, Modality.IMAGE, Modality.AUDIO, Modality.VIDEO]
DIM = 64


def build(metric: Metric, n: int = 1500) -> tuple[Collection, np.ndarray]:
    """A lossy index (a 16-d i8 prefix of 64-d vectors) whose searches miss some true neighbours."""
    vectors = mixture(n, DIM, seed=5, decay=0.5)
    c = new_collection(
        CollectionConfig(
            name="e", model="m", dimension=DIM, index_dimension=16, metric=metric, dtype=IndexDtype.I8
        )
    )
    c.upsert([Record(str(i), v, MODALITIES[i % 4], {"parity": str(i % 2)}) for i, v in enumerate(vectors)])
    return c, vectors


def expected(
    vectors: np.ndarray, rows: np.ndarray, query: np.ndarray, metric: Metric, k: int, d: int
) -> np.ndarray:
    scores = reference_scores(vectors[rows], query, metric, d)
    return np.sort(scores)[::-1][:k]


@pytest.mark.parametrize("metric", list(Metric))
@pytest.mark.parametrize("dimension", [DIM, 32])
def test_exact_scores_are_the_brute_force_top_k(metric: Metric, dimension: int) -> None:
    c, vectors = build(metric)
    everything = np.arange(len(vectors))
    for query in mixture(5, DIM, seed=6, decay=0.5):
        got = c.exact_scores(c.check_query(Query(query, 10, dimension)))
        assert got is not None and got.dtype == np.float32
        np.testing.assert_allclose(
            got, expected(vectors, everything, query, metric, 10, dimension), rtol=1e-5, atol=1e-5
        )


def test_a_modality_filter_scans_only_its_items_and_deleted_items_are_left_out() -> None:
    c, vectors = build(Metric.COSINE)
    images = np.arange(1, len(vectors), 4)  # MODALITIES[i % 4] is IMAGE
    gone = [str(i) for i in images[:40]]
    c.delete(gone)
    kept = images[40:]
    query = mixture(1, DIM, seed=7, decay=0.5)[0]
    flt = Filter(modalities=frozenset({Modality.IMAGE}))
    got = c.exact_scores(c.check_query(Query(query, 10, filter=flt)))
    assert got is not None
    np.testing.assert_allclose(
        got, expected(vectors, kept, query, Metric.COSINE, 10, DIM), rtol=1e-5, atol=1e-5
    )


def test_no_match_gives_no_scores_and_metadata_filters_are_not_scanned() -> None:
    c, _ = build(Metric.COSINE, n=600)
    query = mixture(1, DIM, seed=8, decay=0.5)[0]
    c.delete([str(i) for i in range(3, 600, 4)])  # every VIDEO item
    none = c.exact_scores(
        c.check_query(Query(query, 10, filter=Filter(modalities=frozenset({Modality.VIDEO}))))
    )
    assert none is not None and len(none) == 0
    assert recall([], none) is None  # nothing to find: no sample
    by_metadata = Query(query, 10, filter=Filter(metadata={"parity": "1"}))
    assert c.exact_scores(c.check_query(by_metadata)) is None


def test_served_hits_score_as_the_scan_does_so_recall_is_their_share_of_the_exact_top_k() -> None:
    """The reference uses the search's own rank vector and kernel: a hit's score is bit for bit
    the scan's score of the same item. So with the index searching exhaustively recall is 1, and
    with a starved one it is the share of true neighbours found, counted by ids."""
    c, vectors = build(Metric.COSINE)
    queries = mixture(30, DIM, seed=9, decay=0.5)
    checked = [c.check_query(Query(q, 10)) for q in queries]
    c.tune(Tuning(expansion_search=4096, rerank_factor=64))
    for q, hits in zip(checked, c.search_many(checked), strict=True):
        exact = c.exact_scores(q)
        assert exact is not None
        assert [h.score for h in hits] == exact.tolist()
        assert recall([h.score for h in hits], exact) == 1.0
    c.tune(Tuning(expansion_search=1, rerank_factor=1))
    measured = []
    for q, hits in zip(checked, c.search_many(checked), strict=True):
        exact = c.exact_scores(q)
        assert exact is not None
        truth = reference_scores(vectors, q.vector, Metric.COSINE)
        true_ids = {str(i) for i in np.argsort(-truth, kind="stable")[:10]}
        by_ids = len(true_ids & {h.id for h in hits}) / 10
        measured.append(recall([h.score for h in hits], exact))
        assert measured[-1] == by_ids
    assert min(measured) < 1.0  # the starved index did miss neighbours: the test can fail


def test_rows_not_yet_indexed_are_in_the_reference() -> None:
    c, vectors = build(Metric.COSINE, n=400)
    more = mixture(300, DIM, seed=10, decay=0.5)
    op = c.prepare_upsert([Record(f"t{i}", v, Modality.TEXT) for i, v in enumerate(more)])
    assert isinstance(op, UpsertOp)
    c.apply([op], index=False)
    assert c.unindexed_rows() == 300
    query = more[0]
    got = c.exact_scores(c.check_query(Query(query, 5)))
    assert got is not None
    both = np.concatenate([vectors, more])
    np.testing.assert_allclose(
        got, expected(both, np.arange(len(both)), query, Metric.COSINE, 5, DIM), rtol=1e-5, atol=1e-5
    )
    assert got[0] == pytest.approx(1.0, abs=1e-5)  # the query is a stored item, found though unindexed
