"""Shared data generators and an independent brute-force reference for the index tests."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from onespace.index import Collection, CollectionConfig, Metric, StoredDtype, maintenance

F32 = npt.NDArray[np.float32]


def mixture(n: int, dim: int, *, seed: int = 0, centres: int = 50, decay: float = 0.0) -> F32:
    """Gaussian mixture; with `decay` > 0 the per-component std falls like (1+i)^-decay (MRL-like)."""
    rng = np.random.default_rng(seed)
    scale = (1.0 + np.arange(dim)) ** -decay
    means = rng.normal(size=(centres, dim)) * scale
    labels = rng.integers(0, centres, size=n)
    points = means[labels] + 0.5 * rng.normal(size=(n, dim)) * scale
    return points.astype(np.float32)


def reference_scores(vectors: F32, query: F32, metric: Metric, d: int | None = None) -> F32:
    """Exact scores written independently of the code under test (float64, explicit formulas)."""
    x = vectors.astype(np.float64)
    q = query.astype(np.float64)
    full = x.shape[1]
    d = full if d is None else d
    x, q = x[:, :d], q[:d]
    if d < full or metric is Metric.COSINE:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q)
    if metric is Metric.L2:
        scores: F32 = (-((x - q) ** 2).sum(axis=1)).astype(np.float32)
    else:
        scores = (x @ q).astype(np.float32)
    return scores


def reference_top(vectors: F32, query: F32, metric: Metric, k: int, d: int | None = None) -> list[int]:
    scores = reference_scores(vectors, query, metric, d)
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def new_collection(config: CollectionConfig) -> Collection:
    """A fresh collection in its own temporary directory, storing float32 vectors (so tests can
    compare stored vectors and scores exactly); the directory goes when the process exits."""
    directory = Path(tempfile.mkdtemp(prefix="onespace-test-"))
    atexit.register(shutil.rmtree, directory, True)
    stored = replace(config, stored_dtype=StoredDtype.F32).validated()
    (directory / "c").mkdir()
    return maintenance.create_collection(directory / "c", stored)
