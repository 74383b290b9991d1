"""Exact scores in numpy: the rerank of a shortlist and the brute-force scan share this code.

Scores are higher-is-closer at rank dimension `d`: cosine similarity, dot product, or negative
squared L2 distance. When `d` is shorter than the stored vectors (or the metric is cosine) both
sides are the renormalised `d`-prefixes (`matryoshka.renormalises`), so inner product becomes the
cosine of the prefixes and L2 the distance between unit prefixes.

Rows are gathered and scored in fixed-size chunks: memory stays bounded on large collections and
the same rows in the same order always give bit-identical scores, whichever batch a query was in.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from onespace.index.config import Metric
from onespace.index.matryoshka import normalise, renormalises

__all__ = ["CHUNK_ROWS", "score_rows", "top_k"]

CHUNK_ROWS = 8192

Rows = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]


def score_rows(
    vectors: npt.NDArray[np.generic], rows: Rows, query: npt.NDArray[np.float32], metric: Metric
) -> Scores:
    """Scores of `vectors[rows]` (stored length) against `query`, the rank prefix of the query.

    `query` must already be what `matryoshka.prefix(q, d, metric)` returns for the rank dimension.
    """
    d = len(query)
    unit = renormalises(d, vectors.shape[1], metric)
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk = np.array(vectors[rows[start : start + CHUNK_ROWS], :d], dtype=np.float32, order="C")
        if unit:
            normalise(chunk)
        if metric is Metric.L2:
            diff = chunk - query
            out[start : start + len(chunk)] = -np.einsum("ij,ij->i", diff, diff)
        else:
            out[start : start + len(chunk)] = chunk @ query
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
