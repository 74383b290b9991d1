"""Searching a Milvus collection with the embedded store's results contract.

Per query, the plan is one of (the embedded store's two-stage search, `index.search`):

- **ANN + rerank** when the rank dimension `d` is at least the index dimension: Milvus searches
  the HNSW field for a shortlist of `k * config.shortlist_factor` (rounded up to a power of two,
  at most Milvus's `MAX_LIMIT`) with the filter applied inside the search, returning each
  candidate's full vector; the gateway then scores the shortlist exactly on the `d`-prefixes of
  those vectors (numpy, `scoring.score_rows`: the same code, dtype and chunking as the embedded
  store, so equal vectors get bit-identical scores) and keeps the best `k`.
- **Exact scan** of every matching row when the index cannot answer (`d` below the index
  dimension; a query whose index prefix is zero on a normalised index) or when the shortlist came
  back shorter than `k` (fewer items match, or HNSW lost some under a selective filter): the
  matching rows are streamed from Milvus (`query_iterator`) and scored in batches. This is the
  slow path: it reads every matching vector over the network.

One Milvus search per distinct (filter expression, shortlist size) in a batch: a coalesced batch
of unfiltered queries with the same `k` is ONE search with many query vectors. A query's result
depends only on the query and the collection, never on its batch companions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from onespace.index.config import CollectionConfig
from onespace.index.matryoshka import prefix
from onespace.index.records import Hit, modality_from_code
from onespace.index.scoring import rank_vectors, score_rows, top_k
from onespace.index.validate import CheckedQuery, index_normalises
from onespace.milvus import layout
from onespace.milvus.expr import filter_expr
from onespace.milvus.results import Row
from onespace.milvus.rows import metadata, stored_matrix

__all__ = ["Entity", "Source", "search_batch", "shortlist_size"]

Entity = Row  # one row: id, vector, modality, tags


class Source(Protocol):
    """What a search needs from Milvus (implemented by `collection.MilvusCollection`)."""

    def ann(self, vectors: npt.NDArray[np.float32], limit: int, expr: str) -> list[list[Entity]]:
        """One Milvus search: for each row of `vectors`, up to `limit` matching rows, best first."""
        ...

    def scan(self, expr: str) -> Iterator[Sequence[Entity]]:
        """Every row matching `expr`, in batches."""
        ...


@dataclass(frozen=True)
class _Plan:
    query: CheckedQuery
    rank_vector: npt.NDArray[np.float32]
    expr: str
    limit: int  # shortlist size; 0: exact scan


def shortlist_size(k: int, factor: int) -> int:
    """`k * factor` rounded up to a power of two; 0 when Milvus cannot return that many."""
    want = k * factor
    size = 1 << max(0, (want - 1).bit_length())
    return size if size <= layout.MAX_LIMIT else 0


def search_batch(
    config: CollectionConfig, source: Source, queries: Sequence[CheckedQuery]
) -> list[list[Hit]]:
    plans = [_plan(config, q, v) for q, v in zip(queries, rank_vectors(config, queries), strict=True)]
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, p in enumerate(plans):
        if p.limit:
            groups[(p.expr, p.limit)].append(i)
    shortlists: dict[int, list[Entity]] = {}
    for (expr, limit), members in sorted(groups.items()):
        d = config.index_dimension
        heads = np.stack([plans[i].query.vector[:d] for i in members])
        found = source.ann(prefix(heads, d, config.metric, full=config.dimension), limit, expr)
        shortlists.update(zip(members, found, strict=True))
    out = []
    for i, p in enumerate(plans):
        shortlist = shortlists.get(i)
        if shortlist is not None and len(shortlist) >= p.query.k:
            out.append(_rank(config, p, shortlist))
        else:
            out.append(_scan(config, source, p))
    return out


def _plan(config: CollectionConfig, query: CheckedQuery, rank_vector: npt.NDArray[np.float32]) -> _Plan:
    usable = query.dimension >= config.index_dimension
    if usable and index_normalises(config) and not query.vector[: config.index_dimension].any():
        usable = False  # a zero index prefix has no direction to search along
    limit = shortlist_size(query.k, config.shortlist_factor) if usable else 0
    return _Plan(query, rank_vector, filter_expr(query.filter), limit)


def _scores(config: CollectionConfig, plan: _Plan, rows: Sequence[Entity]) -> npt.NDArray[np.float32]:
    vectors = stored_matrix(config, [r[layout.VECTOR] for r in rows])
    return score_rows(vectors, np.arange(len(rows), dtype=np.int64), plan.rank_vector, config.metric)


def _rank(config: CollectionConfig, plan: _Plan, shortlist: Sequence[Entity]) -> list[Hit]:
    order, scores = top_k(
        np.arange(len(shortlist), dtype=np.int64), _scores(config, plan, shortlist), plan.query.k
    )
    return [_hit(config, plan, shortlist[int(i)], float(s)) for i, s in zip(order, scores, strict=True)]


def _scan(config: CollectionConfig, source: Source, plan: _Plan) -> list[Hit]:
    """Exact top-k over every matching row, keeping only the best `k` between batches."""
    best: list[Entity] = []
    best_scores = np.zeros(0, dtype=np.float32)
    for batch in source.scan(plan.expr):
        if not batch:
            continue
        rows = [*best, *batch]
        scores = np.concatenate([best_scores, _scores(config, plan, batch)])
        order, best_scores = top_k(np.arange(len(rows), dtype=np.int64), scores, plan.query.k)
        best = [rows[int(i)] for i in order]
    return [_hit(config, plan, row, float(s)) for row, s in zip(best, best_scores, strict=True)]


def _hit(config: CollectionConfig, plan: _Plan, row: Entity, score: float) -> Hit:
    vector = None
    if plan.query.include_vectors:
        vector = stored_matrix(config, [row[layout.VECTOR]])[0].astype(np.float32)
    return Hit(
        str(row[layout.ID]),
        score,
        modality_from_code(int(row[layout.MODALITY])),
        metadata(row[layout.TAGS]),
        vector,
    )
