"""Matryoshka prefixes: the first `d` components of an embedding, renormalised.

A Matryoshka model front-loads meaning into the leading components, so `v[:d]` is a usable
`d`-dimensional embedding once divided by its own norm (without that, dot products and distances
between prefixes of different vectors are on different scales). The rule used everywhere here:

- a shorter prefix (`d < len(v)`) is always renormalised;
- at full length the vector is left as it is, unless the metric is cosine (`prefix`), where
  normalising makes the dot product the cosine similarity (`renormalises` states the rule).

A prefix whose norm is zero stays all-zero rather than becoming NaN; callers that cannot accept
that (cosine queries, the index prefix of a stored vector) refuse such vectors up front.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from onespace.index.config import Metric

__all__ = ["normalise", "prefix", "renormalises", "truncate"]

Vectors = npt.NDArray[np.float32]


def truncate(x: npt.ArrayLike, d: int, *, normalise_full: bool = False) -> Vectors:
    """The first `d` components of each vector (1-D: one vector, 2-D: one per row), as a new array.

    Shorter prefixes are renormalised to unit length; at full length the vectors are renormalised
    only when `normalise_full` is true.
    """
    array = np.asarray(x, dtype=np.float32)
    if array.ndim not in (1, 2):
        raise ValueError(f"expected a 1-D or 2-D array, got {array.ndim}-D")
    length = array.shape[-1]
    if not 1 <= d <= length:
        raise ValueError(f"prefix length {d} is outside 1..{length}")
    out = np.array(array[..., :d], dtype=np.float32, order="C", copy=True)
    if d < length or normalise_full:
        normalise(out)
    return out


def renormalises(d: int, full: int, metric: Metric) -> bool:
    """Whether scoring at prefix `d` of `full`-long vectors works on unit vectors."""
    return d < full or metric is Metric.COSINE


def prefix(x: npt.ArrayLike, d: int, metric: Metric, full: int | None = None) -> Vectors:
    """The `d`-prefix used to score with `metric` among vectors whose stored length is `full`.

    `full` defaults to the length of `x`; pass it when `x` is itself already shorter than the
    stored vectors (a query given at its rank dimension), so it is renormalised like them.
    """
    length = np.shape(x)[-1]
    return truncate(x, d, normalise_full=renormalises(d, length if full is None else full, metric))


def normalise(x: Vectors) -> Vectors:
    """Scale `x` (1-D or 2-D, float32) in place to unit rows; zero rows stay zero. Returns `x`."""
    if x.ndim == 1:
        norm = float(np.linalg.norm(x))
        if norm > 0.0:
            x /= np.float32(norm)
        return x
    norms = np.linalg.norm(x, axis=1)
    nonzero = norms > 0.0
    x[nonzero] /= norms[nonzero, None].astype(np.float32)
    return x
