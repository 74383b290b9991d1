"""A fixed, seeded Gaussian projection of feature vectors to 3072 dimensions, Matryoshka style.

Every column of the projection is an independent Gaussian direction, so the first `d` output
dimensions are on their own a Johnson-Lindenstrauss embedding of the features: truncating to any
prefix and renormalising (what the gateway does for 256/384/1024) keeps cosine similarities.
Columns are gently down-weighted with their index (weight^2 = 1 / (1 + j/1024)), which front-loads
variance so the cosine of a short prefix tracks the cosine of the full vector more closely.

Matrices are built lazily, once per process (text 3073 x 3072, image 452 x 3072, audio 98 x 3072:
about 45 MB of float32 in all), and are read-only.

Output column j depends on column j of the matrix only, so a vector asked for at dimension `d` is
projected onto the first `d` columns alone: the same values as the first `d` of the full vector,
at `d / 3072` of the cost.

The defined value of output column j, for one item, is this float64 computation over the item's
non-zero features r_0 < r_1 < ... (in row order), cut into consecutive blocks of `_ROW_BLOCK`:

    block_b = (((m[r_k] f_k) + m[r_k+1] f_k+1) + ...)      k = b * _ROW_BLOCK, ... (left to right)
    out     = ((0 + block_0) + block_1) + ...

where every product is a float32 matrix entry times a float64 feature, rounded once. It is computed
with plain numpy element-wise arithmetic in exactly that order, never with BLAS: a BLAS product sums
in an order that depends on the CPU's kernel, the thread split and the batch shape. (Measured: a
float64 BLAS product gave the same float32 vectors for 40,000 texts, but only because its rounding
differences, ~1e-15, rarely reach float32; the vectors are promised identical bit for bit across
calls, batches, processes and machines, and stored collections rely on it.)

`project_many` computes that for a whole batch at once: the items' non-zero rows are walked by
position, and at each position one gather, one multiply and one add cover every item that still
has a row there (items sorted longest first, so those are a prefix). Each such numpy call spans
(items x d) values and releases the GIL; the numpy calls per batch follow the longest shared
length, not the number of items. Positions fewer than `_MIN_SHARED` items share (all of them in a
small batch, the tails of the longest items in a large one) are summed one item at a time, a
row block per call, continuing the same sums in the same order. Both forms cost about the same
per multiply-add (the sparse product is memory-bound, ~1 ns per multiply-add on 2 cores); the
batched one needs fewer numpy calls, i.e. fewer GIL round trips, per item in large batches.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from onespace.errors import Internal
from onespace.providers.local.hashing import seed_for

__all__ = [
    "FULL_DIMENSION",
    "Features",
    "Term",
    "finish",
    "finish_many",
    "matrix",
    "project",
    "project_many",
    "unit",
]

FULL_DIMENSION = 3072
_ROW_BLOCK = 256
# Positions shared by fewer items than this are cheaper one item at a time (fewer numpy calls).
_MIN_SHARED = 32
# Never fewer columns than this: numpy sums an (n x 1) array pairwise, not row after row.
_MIN_COLUMNS = 8

Features = npt.NDArray[np.float64]
# One part of an output vector: (feature space, features, scale or None); a vector is the sum over
# its terms of project(features, space) * scale, added left to right.
Term = tuple[str, Features, float | None]


@functools.cache
def _column_weights() -> npt.NDArray[np.float32]:
    j = np.arange(FULL_DIMENSION, dtype=np.float64)
    return np.sqrt(1.0 / (1.0 + j / 1024.0)).astype(np.float32)


@functools.cache
def matrix(space: str, rows: int) -> npt.NDArray[np.float32]:
    """The read-only projection of feature space `space`; built once per process, on first use."""
    rng = np.random.Generator(np.random.PCG64(seed_for(f"projection/{space}/{rows}")))
    out = rng.standard_normal((rows, FULL_DIMENSION), dtype=np.float32)
    out *= _column_weights()
    out.setflags(write=False)
    return out


def _columns(space: str, rows: int, dimension: int) -> npt.NDArray[np.float32]:
    """The first `dimension` columns (at least `_MIN_COLUMNS`) of the matrix, as a view."""
    if not 0 < dimension <= FULL_DIMENSION:
        raise Internal(f"projection dimension {dimension} outside 1..{FULL_DIMENSION}")
    return matrix(space, rows)[:, : max(dimension, _MIN_COLUMNS)]


def _block_sums(
    m: npt.NDArray[np.float32], rows: npt.NDArray[np.intp], values: Features, out: Features
) -> None:
    """`out += block` for each whole `_ROW_BLOCK` of `rows` (the one-item form of the definition)."""
    for start in range(0, rows.size, _ROW_BLOCK):
        block = slice(start, start + _ROW_BLOCK)
        out += (m[rows[block]] * values[block, None]).sum(axis=0)


def project(features: Features, space: str, dimension: int = FULL_DIMENSION) -> Features:
    """Project one feature vector (one feature space, fixed length) to its first `dimension`
    output values, in float64."""
    m = _columns(space, features.shape[0], dimension)
    rows = np.flatnonzero(features)
    out = np.zeros(m.shape[1], dtype=np.float64)
    _block_sums(m, rows, features[rows], out)
    return out[:dimension]


def project_many(features: Features, space: str, dimension: int = FULL_DIMENSION) -> Features:
    """Project every row of `features` (n x rows) to its first `dimension` output values.

    Row i of the result equals `project(features[i], space, dimension)` bit for bit.
    """
    n, width = features.shape
    m = _columns(space, width, dimension)
    columns = m.shape[1]
    if n == 0:
        return np.zeros((0, dimension), dtype=np.float64)
    item, row = np.nonzero(features)  # by item, then row ascending: each item's rows in order
    values = features[item, row]
    counts = np.bincount(item, minlength=n)
    order = np.argsort(-counts, kind="stable")  # longest first: active items are a prefix
    ranked = counts[order]
    starts = (np.cumsum(counts) - counts)[order]
    out = np.zeros((n, columns), dtype=np.float64)  # in `order`
    # Positions [0, shared) are walked for all items at once; at each, >= _MIN_SHARED are active.
    shared = int(ranked[_MIN_SHARED - 1]) if n >= _MIN_SHARED else 0
    longer = int(np.count_nonzero(ranked > shared))  # items with rows beyond `shared`
    open_block: Features | None = None  # partial sums of the block that `shared` cuts
    if shared:
        active = np.searchsorted(-ranked, -np.arange(shared), side="left")  # items with > p rows
        top = int(active[0])
        # Per position, the row and value of each active item (positions past an item's end are
        # clipped to a valid index and never read).
        at = np.minimum(starts[None, :top] + np.arange(shared)[:, None], item.size - 1)
        rows_at = row[at]
        values_at = values[at][:, :, None]
        acc = np.empty((top, columns), dtype=np.float64)
        product = np.empty((top, columns), dtype=np.float64)
        cut = False
        for b0 in range(0, shared, _ROW_BLOCK):
            b1 = min(b0 + _ROW_BLOCK, shared)
            k0 = int(active[b0])
            acc[:k0] = 0.0
            for p in range(b0, b1):
                k = int(active[p])
                np.multiply(m[rows_at[p, :k]], values_at[p, :k], out=product[:k])
                np.add(acc[:k], product[:k], out=acc[:k])
            # A block ends at a multiple of _ROW_BLOCK or at the item's last row. When `shared`
            # cuts the last block short, the `longer` items are still inside it: keep their sums.
            cut = b1 - b0 < _ROW_BLOCK
            closed = longer if cut else 0
            out[closed:k0] += acc[closed:k0]
        if cut:
            open_block = acc[:longer]
    for i in range(longer):
        start, count = int(starts[i]), int(ranked[i])
        rows_i = row[start : start + count]
        values_i = values[start : start + count]
        position = shared
        if open_block is not None:
            end = min((shared // _ROW_BLOCK + 1) * _ROW_BLOCK, count)
            tail = m[rows_i[position:end]] * values_i[position:end, None]
            out[i] += np.concatenate([open_block[i : i + 1], tail]).sum(axis=0)
            position = end
        _block_sums(m, rows_i[position:], values_i[position:], out[i])
    result = np.empty((n, dimension), dtype=np.float64)
    result[order] = out[:, :dimension]
    return result


def unit(x: Features, floor: float = 0.0) -> Features:
    """`x` scaled to unit norm; with a `floor`, weak signals stay weak instead of being blown up."""
    norm = float(np.sqrt(np.sum(x * x)))
    scale = max(norm, floor)
    if scale == 0.0:
        return np.zeros_like(x)
    return x / scale


def finish(full: Features, dimension: int) -> npt.NDArray[np.float32]:
    """The renormalised first `dimension` values as unit-norm float32 (a Matryoshka truncation)."""
    vector: npt.NDArray[np.float32] = finish_many(full[None, :], dimension)[0]
    return vector


def finish_many(vectors: Features, dimension: int) -> npt.NDArray[np.float32]:
    """`finish` of every row of `vectors` (n x >= dimension), as one n x dimension float32 array."""
    prefix = vectors[:, :dimension]
    norms = np.sqrt(np.sum(prefix * prefix, axis=1))
    if np.any(norms == 0.0):
        raise Internal("the local featurizer produced a zero vector")
    vectors32: npt.NDArray[np.float32] = (prefix / norms[:, None]).astype(np.float32)
    return vectors32
