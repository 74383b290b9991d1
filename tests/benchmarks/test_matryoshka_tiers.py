"""Matryoshka tiers x index dtypes: recall@10, QPS and memory of every combination, Pareto front.

N (default 10,000) x 3072 unit vectors with front-loaded variance (per-dimension std ∝ (1+i)^-0.5,
the shape of a Matryoshka embedding), 500 queries. For every index dimension (256, 384, 1024, 3072)
and usearch scalar type (f32, f16, bf16, i8): an HNSW index on the renormalised prefixes (M=16,
ef_add 128, ef_search 64, built one thread at a time as the gateway does), searched in batches of
64 with threads=2, either returning its own top 10 ("no rerank") or a shortlist of 40 (64 after
rounding, the gateway's `k x rerank_factor`) reranked exactly on the stored f16 full vectors by
the gateway's own scoring code ("rerank"). Recall@10 is against exact float64 search on the full
3072-d vectors. Memory is the serialised index per vector (vectors + graph; the stored full
vectors, 6 KB each in f16, come on top of every row alike). A row is on the Pareto front when
no other row has at least its recall and QPS and at most its memory, one of them strictly better.

Run: `.venv/bin/pytest tests/benchmarks/test_matryoshka_tiers.py -s` (about 3 min on 2 cores).
Writes its section of docs/benchmarks.md and, with matplotlib installed (the `bench` extra),
docs/benchmarks/matryoshka_tiers.png. Asserts only correctness, never time.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from usearch.index import Index

from onespace.index.config import Metric
from onespace.index.scoring import score_rows, top_k
from tests.benchmarks._common import Matrix, clustered, print_table
from tests.benchmarks._report import RAW, load_average, markdown_table, write_section

N = int(os.environ.get("ONESPACE_BENCH_TIERS_N", "10000"))
FULL = 3072
TIERS = (256, 384, 1024, 3072)
DTYPES = ("f32", "f16", "bf16", "i8")
QUERIES = 500
K = 10
SHORTLIST = 64  # k=10 x rerank_factor 4, rounded up to a power of two, as the gateway asks
BATCH = 64
THREADS = 2


def _unit(x: Matrix) -> Matrix:
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def _recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    return float(
        np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)])
    )


def measure(vectors: Matrix, queries: Matrix, truth: npt.NDArray[np.int64]) -> list[dict[str, Any]]:
    stored = vectors.astype(np.float16)  # the gateway's default stored dtype, read by the rerank
    rows: list[dict[str, Any]] = []
    for tier in TIERS:
        prefixes, heads = _unit(vectors[:, :tier]), _unit(queries[:, :tier])
        for dtype in DTYPES:
            index = Index(
                ndim=tier, metric="cos", dtype=dtype, connectivity=16, expansion_add=128, expansion_search=64
            )
            started = time.perf_counter()
            index.add(np.arange(len(prefixes), dtype=np.uint64), prefixes, threads=1)
            build = time.perf_counter() - started
            memory = len(index.save()) / len(prefixes)  # vectors + graph (memory_usage is in arena steps)
            for rerank in (False, True):
                best = 0.0
                found = np.zeros((len(queries), K), dtype=np.int64)
                for _ in range(3):  # best of 3 passes: the passes are short
                    started = time.perf_counter()
                    for start in range(0, len(queries), BATCH):
                        q = heads[start : start + BATCH]
                        keys = index.search(q, SHORTLIST if rerank else K, threads=THREADS).keys.astype(
                            np.int64
                        )
                        if rerank:  # the gateway's own exact scoring on the stored f16 rows
                            keys = np.stack(
                                [
                                    top_k(row, score_rows(stored, row, query, Metric.COSINE), K)[0]
                                    for row, query in zip(keys, queries[start : start + BATCH], strict=True)
                                ]
                            )
                        found[start : start + len(q)] = keys[:, :K]
                    best = max(best, len(queries) / (time.perf_counter() - started))
                rows.append(
                    {
                        "dimension": tier,
                        "dtype": dtype,
                        "rerank": rerank,
                        "recall": _recall(found, truth),
                        "qps": best,
                        "bytes_per_vector": memory,
                        "build_seconds": build,
                    }
                )
    for row in rows:
        row["pareto"] = not any(
            o is not row
            and o["recall"] >= row["recall"]
            and o["qps"] >= row["qps"]
            and o["bytes_per_vector"] <= row["bytes_per_vector"]
            and (
                o["recall"] > row["recall"]
                or o["qps"] > row["qps"]
                or o["bytes_per_vector"] < row["bytes_per_vector"]
            )
            for o in rows
        )
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (the `bench` extra): no plot")
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    markers = {"f32": "o", "f16": "s", "bf16": "D", "i8": "^"}
    colours = {256: "tab:blue", 384: "tab:orange", 1024: "tab:green", 3072: "tab:red"}
    for row in rows:
        ax.scatter(
            row["qps"],
            row["recall"],
            marker=markers[row["dtype"]],
            color=colours[row["dimension"]],
            facecolors=colours[row["dimension"]] if row["rerank"] else "none",
            s=70 if row["pareto"] else 35,
            linewidths=1.5,
        )
    front, best = [], -1.0  # the recall/QPS front: walking from the fastest, recall only rises
    for row in sorted(rows, key=lambda r: -r["qps"]):
        if row["recall"] > best:
            front.append(row)
            best = row["recall"]
    ax.plot([r["qps"] for r in front], [r["recall"] for r in front], color="grey", linewidth=0.8, zorder=0)
    for dim, colour in colours.items():
        ax.scatter([], [], color=colour, label=f"index {dim}-d")
    for dtype, marker in markers.items():
        ax.scatter([], [], marker=marker, color="black", facecolors="none", label=dtype)
    ax.set_xlabel("queries/s (batches of 64, 2 threads; filled = rerank on stored f16 3072-d)")
    ax.set_ylabel("recall@10 vs exact 3072-d")
    ax.set_title(f"Matryoshka tiers x index dtypes, {N:,} x {FULL}")
    ax.text(
        0.01,
        0.01,
        "grey line: recall/QPS front; large markers: Pareto front with memory",
        transform=ax.transAxes,
        fontsize=8,
    )
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run() -> None:
    started = dt.datetime.now().astimezone()
    load = load_average()
    vectors, queries = clustered(N, FULL, centres=500, decay=0.5, seed=7, queries=QUERIES)
    exact = queries.astype(np.float64) @ vectors.T.astype(np.float64)
    truth = np.argsort(-exact, axis=1)[:, :K]
    rows = measure(vectors, queries, truth)
    assert all(0.0 <= r["recall"] <= 1.0 for r in rows)
    assert max(r["recall"] for r in rows) > 0.9  # the full-precision 3072-d index with rerank finds them
    table = [
        [
            f"{r['dimension']}",
            r["dtype"],
            "yes" if r["rerank"] else "no",
            r["recall"],
            r["qps"],
            f"{r['bytes_per_vector']:.0f}",
            r["build_seconds"],
            "**yes**" if r["pareto"] else "",
        ]
        for r in rows
    ]
    header = ["index dim", "dtype", "rerank", "recall@10", "QPS", "index B/vector", "build s", "Pareto"]
    print_table(f"Matryoshka tiers x dtypes, {N:,} x {FULL}", header, table)
    image = RAW / "matryoshka_tiers.png"
    RAW.mkdir(parents=True, exist_ok=True)
    drawn = plot(rows, image)
    body = (
        f"{N:,} x {FULL} unit vectors (front-loaded variance, 500 centres), {QUERIES} queries, k = {K}; "
        f"HNSW M=16, ef_add 128, ef_search 64, one-thread builds; search in batches of {BATCH}, "
        f"threads={THREADS}; rerank = shortlist of {SHORTLIST} reranked on the stored f16 full vectors. "
        "Index bytes are the serialised index (vectors + graph) per vector; every row also stores "
        "the full vectors (6,144 B each in f16).\n\n"
        + markdown_table(header, table)
        + ("\n\n![recall against QPS](benchmarks/matryoshka_tiers.png)\n" if drawn else "\n")
    )
    write_section(
        "matryoshka_tiers",
        "Matryoshka tiers x index dtypes (`test_matryoshka_tiers.py`)",
        body,
        started=started,
        load_before=load,
        raw={"n": N, "rows": rows},
        document=N == 10_000,
    )


@pytest.mark.benchmark
def test_matryoshka_tiers() -> None:
    run()


if __name__ == "__main__":
    run()
