"""Exact scores in numpy: the rerank of a shortlist and the brute-force scan share this code.

Scores are higher-is-closer at rank dimension `d`: cosine similarity, dot product, or negative
squared L2 distance. When `d` is shorter than the stored vectors (or the metric is cosine) both
sides are the renormalised `d`-prefixes (`matryoshka.renormalises`), so inner product becomes the
cosine of the prefixes and L2 the distance between unit prefixes.

Rows are gathered and scored in fixed-size chunks: memory stays bounded on large collections and
the same rows in the same order always give bit-identical scores, whichever batch a query was in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numkong
import numpy as np
import numpy.typing as npt

from onespace.index.config import CollectionConfig, Metric
from onespace.index.matryoshka import prefix, renormalises
from onespace.index.validate import CheckedQuery

__all__ = [
    "CHUNK_ROWS",
    "as_dtype",
    "prefix_cosines",
    "rank_vectors",
    "score_block",
    "score_rows",
    "score_shortlists",
    "top_k",
    "top_k_order",
]

CHUNK_ROWS = 8192

Rows = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]


def rank_vectors(config: CollectionConfig, queries: Sequence[CheckedQuery]) -> list[npt.NDArray[np.float32]]:
    """Each query's rank prefix (`matryoshka.prefix` at its rank dimension), computed for all the
    queries of one length and dimension at once. A single query goes the same 2-D way, so its
    scores never depend on its batch companions (a 1-D norm sums in another order)."""
    out: list[npt.NDArray[np.float32]] = [np.zeros(0, dtype=np.float32)] * len(queries)
    shapes: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, q in enumerate(queries):
        shapes[(len(q.vector), q.dimension)].append(i)
    for (_, d), members in shapes.items():
        stacked = np.stack([queries[i].vector for i in members])
        for i, vector in zip(members, prefix(stacked, d, config.metric, full=config.dimension), strict=True):
            out[i] = vector
    return out


def score_rows(
    vectors: npt.NDArray[np.generic], rows: Rows, query: npt.NDArray[np.float32], metric: Metric
) -> Scores:
    """Scores of `vectors[rows]` (stored length) against `query`, the rank prefix of the query.

    `query` must already be what `matryoshka.prefix(q, d, metric)` returns for the rank dimension.
    The products run in NumKong's SIMD kernels directly on the stored dtype (f16 rows are never
    converted: numpy's f16 -> f32 conversion cost 60x the products in the profile), with the
    query cast to that dtype; renormalised prefixes are scored through the angular distance, so
    no normalised copy is made either.
    """
    d = len(query)
    full = vectors.shape[1]
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), CHUNK_ROWS):
        block = np.asarray(vectors[rows[start : start + CHUNK_ROWS]])[:, :d]
        out[start : start + len(block)] = score_block(block, query[None, :], metric, full)[0]
    return out


def score_block(
    block: npt.NDArray[np.generic], queries: npt.NDArray[np.float32], metric: Metric, full: int
) -> Scores:
    """Scores of the rows of `block` (stored dtype, cut to the rank dimension `d` of `full`-long
    stored vectors) against each row of `queries` (m x d rank prefixes): an m x len(block) matrix.
    The one kernel every ranking path uses; a query's row is the same bit for bit whatever other
    queries share the call."""
    kernel, finish = _kernel(queries.shape[1], full, metric)
    q = as_dtype(queries, block.dtype)
    return finish(np.asarray(numkong.cdist(q, block, metric=kernel)))


def score_shortlists(
    blocks: npt.NDArray[np.generic], queries: npt.NDArray[np.float32], metric: Metric, full: int
) -> Scores:
    """Row i: the scores of `blocks[i]` (a shortlist's rows, stored dtype, cut to the rank
    dimension `d`) against `queries[i]` (m x d rank prefixes), bit for bit what `score_block`
    gives each alone. The query cast and the metric's finishing step run once for all m
    shortlists, so each costs one NumKong call instead of five numpy and NumKong calls (in
    process at 100k x 1024, a 256-d prefix collection's `search_many` took 105-108 us a query
    against 110-113). Each such call also lets go of the GIL and takes it back, which waits
    whenever another thread holds it."""
    kernel, finish = _kernel(queries.shape[1], full, metric)
    q = as_dtype(queries, blocks.dtype)
    raw = np.empty(blocks.shape[:2], dtype=np.float64)
    for i in range(len(q)):
        numkong.cdist(q[i : i + 1], blocks[i], metric=kernel, out=raw[i : i + 1])
    return finish(raw)


def as_dtype(a: npt.NDArray[np.generic], dtype: np.dtype[Any]) -> npt.NDArray[np.generic]:
    """`a` as a C-contiguous array of `dtype`. float32 to float16 goes through NumKong's cast,
    the same bits as numpy's (round to nearest even; beyond the range, inf) at ~5 us for a batch
    of 64 x 1024 queries where numpy's took ~100 (1.5 us a query of a batch's rerank)."""
    if a.dtype == np.float32 and dtype == np.float16:
        out = np.empty(a.shape, dtype=np.float16)
        numkong.astype(a, "float16", out=out)
        return out
    return np.ascontiguousarray(a, dtype=dtype)


_Kernel = Literal["angular", "sqeuclidean", "dot"]


def _kernel(d: int, full: int, metric: Metric) -> tuple[_Kernel, Callable[[npt.NDArray[np.float64]], Scores]]:
    """NumKong's distance for scoring `d`-prefixes with `metric`, and the step that turns its
    distances into higher-is-closer float32 scores. Unit prefixes are scored through the angular
    distance (cos = 1 - angular; |x - q|^2 = 2 - 2 cos), so no normalised copy is made."""
    if renormalises(d, full, metric):
        if metric is Metric.L2:
            return "angular", lambda raw: np.asarray(-2.0 * raw, dtype=np.float32)
        return "angular", lambda raw: np.asarray(1.0 - raw, dtype=np.float32)
    if metric is Metric.L2:
        return "sqeuclidean", lambda raw: np.asarray(-raw, dtype=np.float32)
    return "dot", lambda raw: np.asarray(raw, dtype=np.float32)


def prefix_cosines(block: npt.NDArray[np.generic], units: npt.NDArray[np.float32]) -> Scores:
    """Cosines between the rows of `block` (stored dtype, cut to a prefix) and each row of `units`
    (unit prefixes of that length): an m x len(block) matrix, for choosing candidates, not for
    final scores (`score_block` gives those). The block is made contiguous and scored by dot
    product over its own norms: at 256 of 1024 dimensions that costs 0.37x of the full rows'
    angular scores, where the angular kernel on the strided prefix costs 0.55x (its per-pair
    norms weigh more on short rows)."""
    rows = np.ascontiguousarray(block)
    q = as_dtype(units, rows.dtype)
    dots = np.asarray(numkong.cdist(q, rows, metric="dot"), dtype=np.float32)
    squares = np.asarray(numkong.cdist(np.zeros((1, rows.shape[1]), rows.dtype), rows, metric="sqeuclidean"))
    norms = np.sqrt(squares[0]).astype(np.float32)
    return np.asarray(dots / np.maximum(norms, np.float32(1e-30)), dtype=np.float32)


def top_k(rows: Rows, scores: Scores, k: int) -> tuple[Rows, Scores]:
    """The `k` best (row, score) pairs, best first; ties go to the earlier row, so order is stable."""
    scores = _nan_last(scores)
    if len(rows) > k:
        threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = scores >= threshold
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]


def top_k_order(rows: Rows, scores: Scores) -> Rows:
    """For 2-D `rows` and `scores` (one shortlist a row): each row's positions best first, in
    `top_k`'s order (NaN last, ties to the earlier row), so its first k are that row's `top_k`."""
    return np.lexsort((rows, -_nan_last(scores)), axis=-1)


def _nan_last(scores: Scores) -> Scores:
    """`scores` with NaN as -inf, so a NaN score ranks after every number."""
    return np.where(np.isnan(scores), np.float32(-np.inf), scores).astype(np.float32)
