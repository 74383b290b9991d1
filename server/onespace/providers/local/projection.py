"""A fixed, seeded Gaussian projection of feature vectors to 3072 dimensions, Matryoshka style.

Every column of the projection is an independent Gaussian direction, so the first `d` output
dimensions are on their own a Johnson-Lindenstrauss embedding of the features: truncating to any
prefix and renormalising (what the gateway does for 256/384/1024) keeps cosine similarities.
Columns are gently down-weighted with their index (weight^2 = 1 / (1 + j/1024)), which front-loads
variance so the cosine of a short prefix tracks the cosine of the full vector more closely.

Matrices are built lazily, once per process (text 3073 x 3072, image 452 x 3072, audio 98 x 3072:
about 45 MB of float32 in all), and are read-only.

The product is computed with plain numpy element-wise arithmetic, accumulated row block by row block
in a fixed order, not with BLAS: BLAS may split a matrix-vector product across threads differently
from run to run, and the vectors must be identical bit for bit across calls and processes.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from onespace.errors import Internal
from onespace.providers.local.hashing import seed_for

__all__ = ["FULL_DIMENSION", "Features", "finish", "project", "unit"]

FULL_DIMENSION = 3072
_ROW_BLOCK = 256

Features = npt.NDArray[np.float64]


@functools.cache
def _column_weights() -> npt.NDArray[np.float32]:
    j = np.arange(FULL_DIMENSION, dtype=np.float64)
    return np.sqrt(1.0 / (1.0 + j / 1024.0)).astype(np.float32)


@functools.cache
def _matrix(space: str, rows: int) -> npt.NDArray[np.float32]:
    """The read-only projection of feature space `space`; built once per process, on first use."""
    rng = np.random.Generator(np.random.PCG64(seed_for(f"projection/{space}/{rows}")))
    matrix = rng.standard_normal((rows, FULL_DIMENSION), dtype=np.float32)
    matrix *= _column_weights()
    matrix.setflags(write=False)
    return matrix


def project(features: Features, space: str) -> Features:
    """Project `features` (one feature space, fixed length) to FULL_DIMENSION, in float64."""
    matrix = _matrix(space, features.shape[0])
    rows = np.flatnonzero(features)
    out = np.zeros(FULL_DIMENSION, dtype=np.float64)
    for start in range(0, rows.size, _ROW_BLOCK):
        block = rows[start : start + _ROW_BLOCK]
        out += (matrix[block] * features[block, None]).sum(axis=0)
    return out


def unit(x: Features, floor: float = 0.0) -> Features:
    """`x` scaled to unit norm; with a `floor`, weak signals stay weak instead of being blown up."""
    norm = float(np.sqrt(np.sum(x * x)))
    scale = max(norm, floor)
    if scale == 0.0:
        return np.zeros_like(x)
    return x / scale


def finish(full: Features, dimension: int) -> npt.NDArray[np.float32]:
    """The renormalised first `dimension` values as unit-norm float32 (a Matryoshka truncation)."""
    prefix = full[:dimension]
    norm = float(np.sqrt(np.sum(prefix * prefix)))
    if norm == 0.0:
        raise Internal("the local featurizer produced a zero vector")
    return (prefix / norm).astype(np.float32)
