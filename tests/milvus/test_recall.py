"""Recall@10 of the Milvus backend against exact search on a fixed synthetic set: 5,000 x 256 unit
vectors from a seeded Gaussian mixture with Matryoshka-like front-loaded variance, 100 queries
from the same mixture, k=10, default HNSW parameters; indexed at the full 256 and at a 64 prefix
(then reranked on the full vectors). docs/milvus.md states the figures.

milvus-lite searches fresh rows (its memtable) by brute force and builds HNSW indexes for flushed
segments in the background, or at load. So the collections are flushed (`checkpoint`) and the
database reopened before searching: the searches then run on HNSW indexes, not brute force."""

# ruff: noqa: E402  (the imports follow the check that the `milvus` extra is installed)
from __future__ import annotations

from tests.milvus.conftest import skip_without_milvus

skip_without_milvus()

from pathlib import Path

import numpy as np

from onespace.index import CollectionConfig, Query, Record
from onespace.milvus import MilvusBackend
from tests.benchmarks._common import clustered

N, DIM, QUERIES, K = 5_000, 256, 100, 10
INDEX_DIMENSIONS = (DIM, 64)


def test_recall_at_10(tmp_path: Path) -> None:
    data, queries = clustered(N, DIM, decay=0.5, seed=42, queries=QUERIES)
    uri = str(tmp_path / "milvus.db")
    backend = MilvusBackend(uri)
    backend.open()
    for d in INDEX_DIMENSIONS:
        c = backend.create(CollectionConfig(name=f"recall{d}", model="m", dimension=DIM, index_dimension=d))
        for start in range(0, N, 1000):
            c.apply([c.prepare_upsert([Record(f"v{i}", data[i]) for i in range(start, start + 1000)])])
        backend.checkpoint(c)  # flush: the rows move into a sealed segment
    backend.close()
    backend = MilvusBackend(uri)
    backend.open()  # loading builds the segments' HNSW indexes
    try:
        exact = np.argsort(-(queries @ data.T), axis=1, kind="stable")[:, :K]
        for d in INDEX_DIMENSIONS:
            found = backend.get(f"recall{d}").search_many([Query(q, k=K) for q in queries])
            recall = np.mean(
                [
                    len({int(h.id[1:]) for h in hits} & set(row)) / K
                    for hits, row in zip(found, exact, strict=True)
                ]
            )
            print(f"\nrecall@{K} milvus, index {d} of {DIM}: {recall:.3f}")
            assert recall >= 0.95, d
    finally:
        backend.close()
