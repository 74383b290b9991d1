"""Two-stage search over a collection's slots and its HNSW index, for a whole batch of queries.

Per query, the plan is one of:

- **HNSW + rerank** when the rank dimension `d` is at least the index dimension: stage 1 asks the
  index (built on renormalised `index_dimension` prefixes) for a shortlist, stage 2 scores the
  shortlist exactly on the `d`-prefixes of the stored full vectors.
- **Exact scan** of the matching rows at dimension `d` when the index cannot answer (`d` below the
  index dimension), when the shortlist would cover a large part of the collection anyway (small
  collections, selective filters), or — decided after stage 1 — when the filtered shortlist has
  fewer than `k` rows although more match. So results are always `min(k, matching)` long.

Rows committed but not yet in the index (the tail) join every HNSW shortlist: all of them when the
query is ranked at the index dimension (scored exactly, the tail read in place once per batch);
above it, the tail's `count` best rows by index-prefix cosine (one flat pass for the batch), the
rows the index would shortlist once they join it, so the tail costs what it does at the index
dimension.

Filters are resolved before planning. A filter matching few items arrives as `candidates`, the
sorted live slots that pass (from SQLite's indexes and the modality codes), so it is ranked
exactly on them or shortlisted and intersected; one matching many arrives as a `Predicate`, which
tests shortlists instead of listing every match (an adaptive over-fetch sized by its estimated
share), and lists them all only if the shortlist comes back short; None means every live slot.

Shortlist size: `k * config.shortlist_factor` (`rerank_factor` for a lossy index, else 1);
with a filter, scaled by `live / matching` and doubled so about that many candidates survive it.
It is rounded up to a power of two, which costs nothing while it stays under
`expansion_search` and lets differing `k`s share one usearch call: stage 1 makes ONE
`index.search` per distinct shortlist size in the batch. Stage 2 of the common case (no filter,
no unindexed tail, every shortlisted slot live) is one gather of the shortlists' vectors and one
sort for all those queries; the rest are finished one by one. Each query's result depends only on
the query and the collection, never on its batch companions: the batched and the one-by-one
stage 2 give the same scores bit for bit, and rank vectors are computed the same 2-D way for a
batch of one.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from onespace.index.config import CollectionConfig
from onespace.index.hnsw import HnswIndex
from onespace.index.matryoshka import prefix
from onespace.index.scoring import (
    CHUNK_ROWS,
    prefix_cosines,
    rank_vectors,
    score_block,
    score_rows,
    score_shortlists,
    top_k,
    top_k_order,
)
from onespace.index.slots import SlotView
from onespace.index.validate import CheckedQuery, index_normalises

__all__ = ["Candidates", "Predicate", "Ranked", "exact_scores", "plan_count", "search_batch"]

Rows = npt.NDArray[np.int64]
EXACT_SCAN_RATIO = 8  # scan a filter's matches exactly when the shortlist would be >= 1/8 of them
EXACT_SCAN_ROWS = 256  # a collection this small is always scanned: exact, and cheaper than a graph walk
Scores = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Predicate:
    """A filter that matches too many items to list: `accept(rows)` tests given slots,
    `everything()` lists every matching slot (sorted; the slow path), `estimate` is its size."""

    estimate: int
    accept: Callable[[Rows], npt.NDArray[np.bool_]]
    everything: Callable[[], Rows]


Candidates = Rows | Predicate | None


@dataclass(frozen=True)
class Ranked:
    """One query's result: table rows and their scores, best first."""

    rows: Rows
    scores: Scores


@dataclass
class _Plan:
    query: CheckedQuery
    rank_vector: npt.NDArray[np.float32]
    candidates: Candidates
    matches: int
    count: int  # HNSW shortlist size; 0: exact scan


def plan_count(k: int, rerank_factor: int, live: int, matches: int, filtered: bool) -> int:
    """Shortlist size for stage 1, or 0 when an exact scan is the better (or only correct) plan."""
    if matches == 0:
        return 0
    want = k * rerank_factor
    if filtered:
        want = math.ceil(2 * want * live / matches)
    count = 1 << max(0, (want - 1).bit_length())
    # An exact scan of the matches beats a shortlist that large: HNSW's cost grows with the
    # shortlist (ef >= count), the scan's with the matches (few, for a selective filter).
    if live <= EXACT_SCAN_ROWS or 2 * count >= live or (filtered and EXACT_SCAN_RATIO * count >= matches):
        return 0
    return count


def search_batch(
    config: CollectionConfig,
    table: SlotView,
    index: HnswIndex,
    queries: Sequence[CheckedQuery],
    candidates: Sequence[Candidates],
    threads: int,
    tail: Rows | None = None,
) -> list[Ranked]:
    """Rank every query; `tail` (sorted live slots not yet in `index`) joins every shortlist."""
    plans = _plans(config, table, index, queries, candidates, rank_vectors(config, queries))
    ranked: dict[int, Ranked] = {}
    shortlists: dict[int, Rows] = {}
    groups: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(plans):
        if p.count:
            groups[p.count].append(i)
    merge_tail = tail is not None and len(tail) > 0  # then shortlists differ in length
    for count, members in sorted(groups.items()):
        matrix = _index_vectors(config, [plans[i].query for i in members])
        keys, found = index.search_matrix(matrix, count, threads, config.hnsw.expansion_search)
        rows = table.rows_for_keys(keys)
        rows[np.arange(count) >= found[:, None]] = -1  # usearch pads short rows with key 0
        # Unfiltered queries whose whole shortlist is live are ranked together, the rest one by one.
        whole = np.zeros(len(members), dtype=bool) if merge_tail else np.all(rows >= 0, axis=1)
        together = [j for j, i in enumerate(members) if whole[j] and plans[i].candidates is None]
        if together:
            batch = _rank_shortlists(table, config, [plans[members[j]] for j in together], rows[together])
            ranked.update((members[j], r) for j, r in zip(together, batch, strict=True))
        for i, shortlist in zip(members, rows, strict=True):
            if i not in ranked:
                shortlists[i] = shortlist[shortlist >= 0]
    if tail is not None and merge_tail:
        # A query ranked above the index dimension takes the tail's best rows by their index
        # prefixes, as if the tail had joined the index; one ranked at it scans the tail exactly.
        deep = [i for i in shortlists if len(plans[i].rank_vector) > config.index_dimension]
        taken = set(deep)
        if deep:
            joined = _tail_shortlists(table, config, [plans[i] for i in deep], tail)
            for i, tail_rows in zip(deep, joined, strict=True):
                shortlists[i] = np.union1d(shortlists[i], tail_rows)
        exact = [i for i in shortlists if i not in taken]
        unfiltered = [i for i in exact if plans[i].candidates is None]
        with_tail = _rank_with_tail(
            table, config, [plans[i] for i in unfiltered], [shortlists[i] for i in unfiltered], tail
        )
        ranked.update((i, r) for i, r in zip(unfiltered, with_tail, strict=True) if r is not None)
        for i in exact:
            if i not in ranked:
                shortlists[i] = np.union1d(shortlists[i], tail)
    return [ranked.get(i) or _finish(table, config, p, shortlists.get(i)) for i, p in enumerate(plans)]


def _plans(
    config: CollectionConfig,
    table: SlotView,
    index: HnswIndex,
    queries: Sequence[CheckedQuery],
    candidates: Sequence[Candidates],
    rank_vectors: Sequence[npt.NDArray[np.float32]],
) -> list[_Plan]:
    """Each query's plan. What is the same for the whole batch is looked up once, and the test
    for zero index prefixes is one numpy call for the batch (per query it was most of planning)."""
    d = config.index_dimension
    usable = [q.dimension >= d for q in queries] if len(index) else [False] * len(queries)
    searched = [i for i, ok in enumerate(usable) if ok]
    if searched and index_normalises(config):
        heads = np.stack([queries[i].vector[:d] for i in searched])
        for j in np.flatnonzero(~heads.any(axis=1)).tolist():
            usable[searched[j]] = False  # a zero index prefix has no direction to search along
    live, factor = table.live_count, config.shortlist_factor
    plans = []
    for query, found, rank_vector, ok in zip(queries, candidates, rank_vectors, usable, strict=True):
        if isinstance(found, Predicate):
            matches = found.estimate
        else:
            matches = len(found) if found is not None else live
        count = plan_count(query.k, factor, live, matches, found is not None) if ok else 0
        plans.append(_Plan(query, rank_vector, found, matches, count))
    return plans


def _index_vectors(config: CollectionConfig, queries: Sequence[CheckedQuery]) -> npt.NDArray[np.float32]:
    """The index prefixes of many queries in one vectorised step (each is at least that long)."""
    d = config.index_dimension
    heads = np.stack([q.vector[:d] for q in queries])
    return prefix(heads, d, config.metric, full=config.dimension)


def _finish(table: SlotView, config: CollectionConfig, plan: _Plan, shortlist: Rows | None) -> Ranked:
    k = plan.query.k
    if plan.matches == 0:
        return Ranked(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    if shortlist is not None:
        rows = shortlist
        if isinstance(plan.candidates, Predicate):
            rows = rows[plan.candidates.accept(rows)] if len(rows) else rows
        elif plan.candidates is not None:
            rows = rows[_members(rows, plan.candidates)]
        if len(rows) >= min(k, plan.matches):
            return _rank(table, config, plan, rows)
    if isinstance(plan.candidates, Predicate):
        rows = plan.candidates.everything()
    else:
        rows = plan.candidates if plan.candidates is not None else table.live_rows()
    return _rank(table, config, plan, rows)


def _members(rows: Rows, sorted_candidates: Rows) -> npt.NDArray[np.bool_]:
    pos = np.searchsorted(sorted_candidates, rows)
    pos = np.minimum(pos, len(sorted_candidates) - 1)
    return np.asarray(sorted_candidates[pos] == rows)


def _rank(table: SlotView, config: CollectionConfig, plan: _Plan, rows: Rows) -> Ranked:
    scores = score_rows(table.vectors, rows, plan.rank_vector, config.metric)
    best_rows, best_scores = top_k(rows, scores, plan.query.k)
    return Ranked(best_rows, best_scores)


def _rank_shortlists(
    table: SlotView, config: CollectionConfig, plans: Sequence[_Plan], rows: Rows
) -> list[Ranked]:
    """`_rank` of many shortlists of one length (a row of `rows` each, every slot live) with one
    gather of their vectors, one scoring pass per rank dimension (`score_shortlists`) and one
    sort: the same scores (the same kernel on the same rows) and the same order as ranking each
    alone, without the per-query numpy calls."""
    gathered = np.asarray(table.vectors[rows])  # one shortlist's rows per query
    scores = np.empty(rows.shape, dtype=np.float32)
    lengths: dict[int, list[int]] = defaultdict(list)
    for i, plan in enumerate(plans):
        lengths[len(plan.rank_vector)].append(i)
    for d, members in lengths.items():
        queries = np.stack([plans[i].rank_vector for i in members])
        blocks = gathered[:, :, :d] if len(members) == len(plans) else gathered[members, :, :d]
        scores[members] = score_shortlists(blocks, queries, config.metric, table.vectors.shape[1])
    order = top_k_order(rows, scores)
    best_rows = np.take_along_axis(rows, order, axis=1)
    best_scores = np.take_along_axis(scores, order, axis=1)
    return [Ranked(best_rows[i, : p.query.k], best_scores[i, : p.query.k]) for i, p in enumerate(plans)]


def _tail_shortlists(
    table: SlotView, config: CollectionConfig, plans: Sequence[_Plan], tail: Rows
) -> list[Rows]:
    """Each plan's `count` best tail rows (sorted slots) by the cosine of their index prefixes,
    the order the index ranks them in (its prefixes are renormalised whenever they are shorter
    than the vectors): the tail (sorted live slots not yet indexed) searched the way the index
    will be, by a flat scan at the index dimension, and its rows then join the shortlist's rerank
    at the rank dimension like the index's. One pass over the tail for all the plans."""
    units = _index_vectors(config, [p.query for p in plans])
    scores = _score_in_place(table, tail, config.index_dimension, lambda block: prefix_cosines(block, units))
    return [np.sort(top_k(tail, scores[i], p.count)[0]) for i, p in enumerate(plans)]


def _score_in_place(
    table: SlotView, rows: Rows, d: int, score: Callable[[npt.NDArray[np.generic]], Scores]
) -> Scores:
    """`score` of every one of `rows` (sorted slots, not empty; the tail: the last of the vector
    file) cut to `d`, one column per row: each chunk of the file from the first to the last is
    read in place, never gathered, and scored for all the queries."""
    first, end = int(rows[0]), int(rows[-1]) + 1
    out: Scores | None = None
    for start in range(first, end, CHUNK_ROWS):
        stop = min(end, start + CHUNK_ROWS)
        inside = slice(*np.searchsorted(rows, [start, stop]))
        if inside.start == inside.stop:
            continue
        scored = score(np.asarray(table.vectors[start:stop])[:, :d])
        if out is None:
            out = np.empty((len(scored), len(rows)), dtype=np.float32)
        out[:, inside] = scored[:, rows[inside] - start]
    assert out is not None  # there is a row
    return out


def exact_scores(
    config: CollectionConfig, table: SlotView, query: CheckedQuery, candidates: Rows | None
) -> Scores:
    """The best `query.k` scores, best first, among `candidates` (sorted live slots; None: every
    live slot) by an exact scan at the query's rank dimension, chunk by chunk in place: what a
    search of `query` would return with a perfect index, the reference its recall is measured
    against. The same rank vector and kernel as the search's rerank, so a row scores the same."""
    rows = table.live_rows() if candidates is None else candidates
    if not len(rows):
        return np.zeros(0, dtype=np.float32)
    vector = rank_vectors(config, [query])[0]
    scorer = functools.partial(
        score_block, queries=vector[None, :], metric=config.metric, full=table.vectors.shape[1]
    )
    return top_k(rows, _score_in_place(table, rows, len(vector), scorer)[0], query.k)[1]


def _rank_with_tail(
    table: SlotView, config: CollectionConfig, plans: Sequence[_Plan], shortlists: Sequence[Rows], tail: Rows
) -> list[Ranked | None]:
    """`_rank` of each shortlist joined with the tail (sorted live slots not yet indexed), scoring
    the tail once for all queries of a rank dimension: the tail's slots are the last ones of the
    vector file, so each chunk of it is read in place, not gathered once per query (a 16k-row tail
    used to cost every query a 32 MB copy). The same scores (the same kernel on the same rows) and
    order as ranking the union alone; None where the union is shorter than `_finish` accepts."""
    out: list[Ranked | None] = [None] * len(plans)
    full = table.vectors.shape[1]
    dimensions: dict[int, list[int]] = defaultdict(list)
    for j, plan in enumerate(plans):
        dimensions[len(plan.rank_vector)].append(j)
    for d, members in dimensions.items():
        queries = np.stack([plans[j].rank_vector for j in members])
        scorer = functools.partial(score_block, queries=queries, metric=config.metric, full=full)
        tail_scores = _score_in_place(table, tail, d, scorer)
        for at, j in enumerate(members):
            plan = plans[j]
            own = shortlists[j][~_members(shortlists[j], tail)]  # a row indexed meanwhile is in both
            rows = np.concatenate([own, tail])
            if len(rows) < min(plan.query.k, plan.matches):
                continue
            scores = np.concatenate(
                [score_rows(table.vectors, own, plan.rank_vector, config.metric), tail_scores[at]]
            )
            out[j] = Ranked(*top_k(rows, scores, plan.query.k))
    return out
