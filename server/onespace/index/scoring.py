"""Exact scores in numpy: the rerank of a shortlist and the brute-force scan share this code.

Scores are higher-is-closer at rank dimension `d`: cosine similarity, dot product, or negative
squared L2 distance. When `d` is shorter than the stored vectors (or the metric is cosine) both
sides are the renormalised `d`-prefixes (`matryoshka.renormalises`), so inner product becomes the
cosine of the prefixes and L2 the distance between unit prefixes.

Rows are gathered and scored in fixed-size chunks: memory stays bounded on large collections and
the same rows in the same order always give bit-identical scores, whichever batch a query was in.
"""

from __future__ import annotations

import numkong
import numpy as np
import numpy.typing as npt

from onespace.index.config import Metric
from onespace.index.matryoshka import renormalises

__all__ = ["CHUNK_ROWS", "score_rows", "top_k"]

CHUNK_ROWS = 8192

Rows = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]


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
    unit = renormalises(d, vectors.shape[1], metric)
    q = np.ascontiguousarray(query, dtype=vectors.dtype)[None, :]
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), CHUNK_ROWS):
        block = np.asarray(vectors[rows[start : start + CHUNK_ROWS]])[:, :d]
        if unit:  # both sides unit length: cos = 1 - angular; |x - q|^2 = 2 - 2 cos
            angular = np.asarray(numkong.cdist(q, block, metric="angular"))[0]
            scores = -2.0 * angular if metric is Metric.L2 else 1.0 - angular
        elif metric is Metric.L2:
            scores = -np.asarray(numkong.cdist(q, block, metric="sqeuclidean"))[0]
        else:
            scores = np.asarray(numkong.cdist(q, block, metric="dot"))[0]
        out[start : start + len(block)] = scores
    return out


def top_k(rows: Rows, scores: Scores, k: int) -> tuple[Rows, Scores]:
    """The `k` best (row, score) pairs, best first; ties go to the earlier row, so order is stable."""
    scores = np.where(np.isnan(scores), np.float32(-np.inf), scores).astype(np.float32)
    if len(rows) > k:
        threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = scores >= threshold
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]
