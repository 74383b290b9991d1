"""engine.tuner: the cheapest search settings reaching a recall target, on real collections."""

from __future__ import annotations

import time

import numpy as np
import pytest

from onespace.engine.tuner import LADDER, MAX_QUERIES, TuneResult, check_queries, tune_search
from onespace.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument
from onespace.index import Collection, CollectionConfig, IndexDtype, Metric, Query, Record, Tuning
from onespace.index.writes import UpsertOp
from onespace.models import Modality
from tests.unit.index.helpers import mixture, new_collection, reference_top

DIM = 64


def lossy(n: int = 3000) -> tuple[Collection, np.ndarray]:
    """A 16-d i8 prefix of 64-d vectors: cheap settings miss neighbours, dearer ones find more."""
    vectors = mixture(n, DIM, seed=5, decay=0.5)
    c = new_collection(
        CollectionConfig(name="t", model="m", dimension=DIM, index_dimension=16, dtype=IndexDtype.I8)
    )
    c.upsert([Record(str(i), v, Modality.TEXT) for i, v in enumerate(vectors)])
    return c, vectors


def tune(c: Collection, vectors: object, *, target: float, k: int = 10, **kw: object) -> TuneResult:
    """`tune_search` on `vectors` as queries for `k` hits, as the gateway calls it."""
    return tune_search(c, check_queries(c, list(vectors), k), target=target, threads=2, **kw)  # type: ignore[arg-type]


def recall_by_ids(c: Collection, vectors: np.ndarray, queries: list[Query], settings: Tuning) -> float:
    """Mean recall@k (each query's own k) computed independently: the float64 brute force of the
    test helpers against the hits' ids."""
    shares = []
    for q, hits in zip(queries, c.search_many(queries, 2, settings), strict=True):
        truth = set(reference_top(vectors, q.vector, Metric.COSINE, q.k))
        shares.append(len(truth & {int(h.id) for h in hits}) / q.k)
    return sum(shares) / len(shares)


def test_a_search_with_settings_of_its_own_is_the_tuned_search_and_changes_nothing() -> None:
    c, _ = lossy(1500)
    queries = [Query(q, 10) for q in mixture(20, DIM, seed=6, decay=0.5)]
    before = c.config
    trial = c.search_many(queries, 2, Tuning(expansion_search=16, rerank_factor=1))
    assert c.config == before and c.index._index.expansion_search == before.hnsw.expansion_search == 64
    default = c.search_many(queries, 2)
    c.tune(Tuning(expansion_search=16, rerank_factor=1))
    tuned = c.search_many(queries, 2)
    assert [[h.id for h in hits] for hits in trial] == [[h.id for h in hits] for hits in tuned]
    assert [[h.id for h in hits] for hits in trial] != [[h.id for h in hits] for hits in default]


def test_trials_go_up_the_ladder_and_stop_at_the_first_reaching_the_target() -> None:
    c, vectors = lossy()
    queries = mixture(60, DIM, seed=7, decay=0.5)
    before = c.config
    result = tune(c, list(queries), k=10, target=0.9)
    tried = [(t.expansion_search, t.rerank_factor) for t in result.trials]
    assert tried == list(LADDER[: len(tried)])
    assert result.reached and result.trials[-1].recall >= 0.9
    assert all(t.recall < 0.9 for t in result.trials[:-1]) and len(tried) > 1  # the test can fail
    assert all(t.seconds_per_query > 0 for t in result.trials)
    for t in result.trials:  # the reported recall is the recall: checked by ids, by brute force
        settings = Tuning(expansion_search=t.expansion_search, rerank_factor=t.rerank_factor)
        expected = recall_by_ids(c, vectors, [Query(q, 10) for q in queries], settings)
        assert t.recall == pytest.approx(expected, abs=1e-9)
    assert result.tuning == Tuning(expansion_search=tried[-1][0], rerank_factor=tried[-1][1])
    assert c.config == before  # finding is not applying


def test_a_target_no_setting_reaches_tries_them_all_and_finds_nothing() -> None:
    starved = new_collection(
        CollectionConfig(name="s", model="m", dimension=DIM, index_dimension=4, dtype=IndexDtype.I8)
    )
    vectors = mixture(1500, DIM, seed=5, decay=0.0)  # no front-loading: a 4-d prefix knows little
    starved.upsert([Record(str(i), v, Modality.TEXT) for i, v in enumerate(vectors)])
    result = tune(starved, list(mixture(40, DIM, seed=8)), k=10, target=1.0)
    assert not result.reached and result.tuning is None
    assert [(t.expansion_search, t.rerank_factor) for t in result.trials] == list(LADDER)
    assert max(t.recall for t in result.trials) < 1.0


def test_on_a_lossless_index_each_ef_is_tried_once() -> None:
    vectors = mixture(1500, DIM, seed=5, decay=0.5)
    c = new_collection(
        CollectionConfig(
            name="f", model="m", dimension=DIM, metric=Metric.INNER_PRODUCT, dtype=IndexDtype.F32
        )
    )
    c.upsert([Record(str(i), v, Modality.TEXT) for i, v in enumerate(vectors)])
    result = tune(c, list(mixture(30, DIM, seed=9, decay=0.5)), k=10, target=1.0)
    efs = [t.expansion_search for t in result.trials]
    assert efs == sorted(set(efs))  # 32/1 and 32/2 search alike: one trial
    assert [t.rerank_factor for t in result.trials] == [next(rf for e, rf in LADDER if e == ef) for ef in efs]


def test_rows_not_yet_indexed_are_indexed_before_measuring() -> None:
    c, _ = lossy(800)
    op = c.prepare_upsert(
        [Record(f"n{i}", v, Modality.TEXT) for i, v in enumerate(mixture(500, DIM, seed=11))]
    )
    assert isinstance(op, UpsertOp)
    c.apply([op], index=False)
    assert c.unindexed_rows() == 500
    tune(c, list(mixture(5, DIM, seed=12)), k=10, target=0.5)
    assert c.unindexed_rows() == 0


def test_bad_input_names_the_field() -> None:
    c, _ = lossy(300)
    q = list(mixture(3, DIM, seed=13))
    for target in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(InvalidArgument) as bad:
            tune(c, q, k=10, target=target)
        assert bad.value.field == "target_recall"
    with pytest.raises(InvalidArgument) as bad:
        tune(c, [], k=10, target=0.9)
    assert bad.value.field == "queries" and "at least one" in str(bad.value)
    with pytest.raises(InvalidArgument) as bad:
        tune(c, [q[0]] * (MAX_QUERIES + 1), k=10, target=0.9)
    assert bad.value.field == "queries" and "limit of 1024" in str(bad.value)
    with pytest.raises(InvalidArgument) as bad:
        tune(c, [q[0], q[1][:10]], k=10, target=0.9)
    assert bad.value.field.startswith("queries[1]")
    with pytest.raises(InvalidArgument) as bad:
        tune(c, q, k=0, target=0.9)
    assert bad.value.field == "queries[0].k"


def test_an_empty_collection_and_a_passed_deadline_are_refused_and_change_nothing() -> None:
    empty = new_collection(CollectionConfig(name="e", model="m", dimension=DIM))
    with pytest.raises(FailedPrecondition, match="empty"):
        tune(empty, list(mixture(2, DIM, seed=14)), k=10, target=0.9)
    c, _ = lossy(300)
    before = c.config
    with pytest.raises(DeadlineExceeded):
        tune(c, list(mixture(2, DIM, seed=15)), k=10, target=0.9, deadline=time.monotonic())
    assert c.config == before


def test_queries_are_measured_as_asked_each_with_its_own_k() -> None:
    """Live queries (the recall sampler's) come with their own k: recall@k is each one's."""
    c, vectors = lossy()
    sample = mixture(40, DIM, seed=16, decay=0.5)
    queries = [c.check_query(Query(q, 5 if i % 2 else 20)) for i, q in enumerate(sample)]
    result = tune_search(c, queries, target=1.0, threads=2)
    assert result.queries == 40
    for t in result.trials:
        settings = Tuning(expansion_search=t.expansion_search, rerank_factor=t.rerank_factor)
        assert t.recall == pytest.approx(recall_by_ids(c, vectors, queries, settings), abs=1e-9)
