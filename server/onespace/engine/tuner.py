"""The cheapest search settings that reach a recall target, found on the collection's own data.

Why in the server: what `expansion_search` and `rerank_factor` buy depends on the data and on the
queries, so it has to be measured, and measuring needs each sample query's exact top k. A caller
would need a copy of every stored vector for that; the server has them, and the same exact scan
the recall sampler uses (`exact_scores`: the search's own rank vector and scoring kernel, so a hit
scores the same in both and a tie with the k-th best counts as found).

The queries are the caller's sample (`check_queries`: vectors, one k) or the live searches the
recall sampler last drew, each as it was asked (the gateway picks). Trials go from the cheapest
setting up (`LADDER`) and stop at the first whose mean recall@k over them reaches the target.
Each trial searches with its settings for itself only (`search_many(settings=...)`): other
searches keep the collection's settings meanwhile, and nothing is stored here (the gateway
applies the result when asked, through `Backend.tune`: durable, like UpdateCollection). Settings
that search alike are tried once: on a lossless index (the whole vector at the stored precision)
the rerank factor changes nothing.

Rows written but not yet indexed are searched exactly, which flatters recall, so they are indexed
first (the work the background indexer would do anyway).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from onespace.engine.recall import recall
from onespace.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument
from onespace.index import Query, Tuning

if TYPE_CHECKING:
    from onespace.index.backend import CollectionHandle
    from onespace.index.validate import CheckedQuery

__all__ = ["LADDER", "MAX_QUERIES", "Trial", "TuneResult", "check_queries", "tune_search"]

# (expansion_search, rerank_factor) from the cheapest search up: a search walks at least
# max(ef, shortlist) candidates, and the shortlist is k x rerank_factor rounded up to a power of 2.
LADDER: tuple[tuple[int, int], ...] = (
    (16, 1),
    (24, 1),
    (32, 1),
    (32, 2),
    (48, 2),
    (64, 2),
    (64, 4),
    (96, 4),
    (128, 4),
    (256, 4),
)
MAX_QUERIES = 1024  # a sample, not a workload: each query costs one exact scan
_BATCH = 64  # queries per search call, as the search batcher hands them over


@dataclass(frozen=True, slots=True)
class Trial:
    expansion_search: int
    rerank_factor: int
    recall: float  # mean recall@k over the sample
    seconds_per_query: float


@dataclass(frozen=True, slots=True)
class TuneResult:
    trials: list[Trial]  # in the order tried
    reached: bool  # the last trial reached the target
    queries: int  # how many queries each trial searched

    @property
    def tuning(self) -> Tuning | None:
        """The settings found, as UpdateCollection would apply them; None if none reached it."""
        if not self.reached:
            return None
        return Tuning(
            expansion_search=self.trials[-1].expansion_search, rerank_factor=self.trials[-1].rerank_factor
        )


def check_queries(
    collection: CollectionHandle, vectors: Sequence[npt.NDArray[np.float32]], k: int
) -> list[CheckedQuery]:
    """Sample query vectors as queries for `k` hits; InvalidArgument names `queries[i]`."""
    if not vectors:
        raise InvalidArgument("queries", "must contain at least one query")
    if len(vectors) > MAX_QUERIES:
        raise InvalidArgument("queries", f"{len(vectors)} queries exceeds the limit of {MAX_QUERIES}")
    checked: list[CheckedQuery] = []
    for i, vector in enumerate(vectors):
        try:
            checked.append(collection.check_query(Query(vector, k)))
        except InvalidArgument as exc:
            raise exc.at(f"queries[{i}]") from None
    return checked


def tune_search(
    collection: CollectionHandle,
    queries: Sequence[CheckedQuery],
    *,
    target: float,
    threads: int,
    deadline: float | None = None,
) -> TuneResult:
    """Try `LADDER` on `queries` (as each asks: k, rank dimension, filter) until a setting's mean
    recall reaches `target`. Changes no setting (the caller applies `TuneResult.tuning`).
    Blocking (index work, scans, searches): run it on a thread."""
    if not 0.0 < target <= 1.0:
        raise InvalidArgument("target_recall", f"must be in (0, 1], not {target}")
    if not queries:
        raise InvalidArgument("queries", "must contain at least one query")
    while collection.index_pending():  # a step at a time, so the deadline is looked at between
        _check(deadline)
    exact = []
    for query in queries:
        scores = collection.exact_scores(query)
        if scores is None:
            raise FailedPrecondition(
                f"collection {collection.name!r} cannot be scanned exactly (Milvus): it cannot be tuned here"
            )
        exact.append(scores)
        _check(deadline)
    if not any(len(e) for e in exact):
        raise FailedPrecondition(f"collection {collection.name!r} is empty: there is nothing to tune on")
    trials: list[Trial] = []
    tried: set[tuple[int, int]] = set()
    config = collection.config
    for expansion_search, rerank_factor in LADDER:
        settings = Tuning(expansion_search=expansion_search, rerank_factor=rerank_factor)
        alike = (expansion_search, settings.applied_to(config).shortlist_factor)
        if alike in tried:
            continue
        tried.add(alike)
        _check(deadline)
        trials.append(_trial(collection, queries, exact, settings, threads))
        if trials[-1].recall >= target:
            break
    return TuneResult(trials, trials[-1].recall >= target, len(queries))


def _trial(
    collection: CollectionHandle,
    checked: Sequence[CheckedQuery],
    exact: Sequence[npt.NDArray[np.float32]],
    settings: Tuning,
    threads: int,
) -> Trial:
    started = time.perf_counter()
    hits = []
    for start in range(0, len(checked), _BATCH):
        hits.extend(collection.search_many(checked[start : start + _BATCH], threads, settings))
    seconds = time.perf_counter() - started
    found = [recall([hit.score for hit in h], e) for h, e in zip(hits, exact, strict=True)]
    measured = [r for r in found if r is not None]
    assert settings.expansion_search is not None and settings.rerank_factor is not None
    return Trial(
        settings.expansion_search,
        settings.rerank_factor,
        sum(measured) / len(measured),
        seconds / len(checked),
    )


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded(
            "the deadline passed while tuning; nothing was changed (send a longer deadline, or fewer queries)"
        )
