"""Matryoshka prefix index: HNSW on the full 1024-d vectors vs on a 256-d prefix + exact rerank.

20,000 x 1024 vectors from a Gaussian mixture whose per-dimension std is ∝ (1 + i) ** -0.5 (the
first 256 dims hold most of the variance, like an MRL embedding; see the usearch notes). Both
collections are cosine, f16, k=10; the prefix one has rerank_factor 4 (shortlist 64 reranked on
the full 1024-d vectors; the full one reranks its shortlist too). Figures: build time, QPS of
1,000 queries in one `search_many` call, recall@10 against exact float64 numpy, index memory
(usearch `memory_usage`) and snapshot file sizes. The full-dimension index is the baseline.

Run: `.venv/bin/pytest tests/benchmarks/test_matryoshka.py -s` or
`.venv/bin/python -m tests.benchmarks.test_matryoshka`. Prints figures and writes them into
docs/benchmarks.md (section `matryoshka`) and docs/benchmarks/matryoshka.json; asserts only sanity.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import numpy as np

from onespace.index import CollectionConfig, CollectionStore, IndexDtype, Metric, Query, Record
from onespace.models import LOCAL_MODEL
from tests.benchmarks._common import Matrix, clustered, stopwatch
from tests.benchmarks._report import Part, load_average, write_parts

N = 20_000
DIMENSION = 1024
PREFIX = 256
QUERIES = 1_000
K = 10
THREADS = 2
REPEATS = 3


def _truth(vectors: Matrix, queries: Matrix) -> np.ndarray:
    base = vectors.astype(np.float64)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    q = queries.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    scores = q @ base.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    return top


def _file_bytes(directory: Path) -> tuple[int, int]:
    """(usearch index files, everything else) in a collection directory after a save."""
    index = other = 0
    for path in directory.rglob("*"):
        if path.is_file():
            if "usearch" in path.name or path.suffix == ".index":
                index += path.stat().st_size
            else:
                other += path.stat().st_size
    return index, other


def run(data_dir: Path) -> Part:
    started = dt.datetime.now().astimezone()
    load = load_average()
    vectors, queries = clustered(N, DIMENSION, centres=1000, decay=0.5, seed=3, queries=QUERIES)
    truth = _truth(vectors, queries)
    records = [Record(f"v{i}", row) for i, row in enumerate(vectors)]
    qs = [Query(q, K) for q in queries]
    store = CollectionStore(data_dir)
    store.open()
    rows: list[list[object]] = []
    figures: dict[str, float] = {}
    base: dict[str, float] = {}
    for label, index_dimension in (
        (f"full {DIMENSION}-d HNSW (baseline)", DIMENSION),
        (f"{PREFIX}-d prefix + rerank", PREFIX),
    ):
        name = f"m{index_dimension}"
        collection = store.create(
            CollectionConfig(
                name=name,
                model=LOCAL_MODEL.id,
                dimension=DIMENSION,
                index_dimension=index_dimension,
                metric=Metric.COSINE,
                dtype=IndexDtype.F16,
                rerank_factor=4,
            )
        )
        with stopwatch() as build:
            for start in range(0, N, 5_000):
                collection.upsert(records[start : start + 5_000])
        collection.search_many(qs[:100], THREADS)  # warm-up
        best = float("inf")
        hits: list[list[str]] = []
        for _ in range(REPEATS):
            with stopwatch() as elapsed:
                results = collection.search_many(qs, THREADS)
            best = min(best, elapsed.seconds)
            hits = [[h.id for h in row] for row in results]
        found = [{int(i[1:]) for i in row} for row in hits]
        recall = float(np.mean([len(f & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]))
        memory = store.stats(collection).index_bytes  # usearch's memory_usage, read under the index lock
        store.checkpoint_all()
        index_file, other_files = _file_bytes(store.directory(name))
        qps = QUERIES / best
        base = base or {
            "build": build.seconds,
            "qps": qps,
            "memory": float(memory),
            "file": index_file or 1,
        }
        rows.append(
            [
                label,
                build.seconds,
                base["build"] / build.seconds,
                qps,
                qps / base["qps"],
                recall,
                memory / 1e6,
                memory / base["memory"],
                f"{index_file / 1e6:.1f}",
                f"{other_files / 1e6:.1f}",
            ]
        )
        figures[f"recall{index_dimension}"] = recall
        figures[f"qps{index_dimension}"] = qps
    part = Part(
        f"{N:,} x {DIMENSION} f16 cosine, front-loaded variance, {QUERIES:,} queries in one `search_many` "
        f"(best of {REPEATS}), k = {K}, threads = {THREADS}; recall@10 against exact float64 numpy",
        [
            "index",
            "build s",
            "x build speed",
            "QPS",
            "x QPS",
            "recall@10",
            "index MB (RAM, `memory_usage`)",
            "x RAM",
            "index file MB",
            "vectors + rows MB",
        ],
        rows,
        "Both collections keep the full vectors for the rerank; only the HNSW part shrinks. "
        "`memory_usage` includes usearch's power-of-two capacity. At this size the full-dimension "
        "index is small enough that per-query work and the rerank weigh more than the HNSW walk, and "
        "the time ratios are the noisiest figures here; `test_search_rpc.py` compares the two at 100k.",
        figures,
    )
    write_parts(
        "matryoshka",
        "Matryoshka prefix index (`test_matryoshka.py`)",
        [part],
        started=started,
        load_before=load,
    )
    return part


def test_matryoshka_prefix_index(tmp_path: Path) -> None:
    figures = run(tmp_path).figures
    assert figures[f"recall{DIMENSION}"] > 0.5 and figures[f"recall{PREFIX}"] > 0.5


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp))


if __name__ == "__main__":
    main()
