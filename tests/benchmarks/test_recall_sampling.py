"""What watching recall on live traffic costs, and how close its estimate comes: a real
`onespace serve` in a subprocess, restarted with `--recall-sample-budget` 0 (off), 0.01 and 0.05,
alternating, under the same single-query Search load.

20,000 x 1024 front-loaded unit vectors in the default collection (1024-d f16 HNSW, f16 rows),
tuned with `UpdateCollection` to expansion_search 16 so that its searches miss some neighbours;
1,000 queries from the same mixture, from 64 concurrent callers on one channel. Per server: Search
RPCs a second (median of the passes), the server's CPU per search (from /proc), and the recall
samples it took. The benchmark computes the recall@10 of every answer it received itself (exact
top 10 by numpy over the f16-rounded vectors the server stores, a hit counted when it reaches
the 10th exact score less 1e-4: numpy's float64 sums and the server's SIMD kernel differ in
the last bits), and compares the server's sampled mean with it. Only counts are asserted, never time.

Run: `.venv/bin/pytest tests/benchmarks/test_recall_sampling.py -s` (about 1.5 min on 2 cores).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
import statistics
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

import onespace_client
from onespace_client import AsyncClient
from onespace_client.v1 import common_pb2, search_pb2, search_pb2_grpc
from onespace_client.vectors import pack
from tests.benchmarks._common import closed_loop, clustered, print_table, process_stat
from tests.benchmarks._report import load_average, markdown_table, write_section
from tests.reliability.serve import Server

N = 20_000
DIM = 1024
K = 10
QUERIES = 1_000
CALLERS = 64
PASSES = 3  # measured passes over the queries per server, after one warm-up pass
ROUNDS = 3  # each budget's server started this many times, in turn with the others
BUDGETS = (0.0, 0.01, 0.05)
EF = 16
TIE = 1e-4


def _metrics_port(server: Server) -> int:
    match = re.search(r"metrics on :(\d+)/metrics", server.output)
    assert match, server.output
    return int(match.group(1))


def _recall_samples(port: int) -> tuple[float, float]:
    """(count, sum) of the server's recall observations for the collection."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    found = {
        name: float(value)
        for name, value in re.findall(
            r'^onespace_search_recall_(count|sum)\{collection="r"\} (\S+)$', text, re.M
        )
    }
    return found.get("count", 0.0), found.get("sum", 0.0)


async def _build(target: str, data: np.ndarray) -> None:
    async with AsyncClient(target) as client:
        await client.create_collection("r", dimension=DIM)
        acks = [
            a
            async for a in client.ingest(
                "r", [onespace_client.item(f"v{i}", row) for i, row in enumerate(data)]
            )
        ]
        assert len(acks) == N
        while (await client.get_collection("r")).stats.unindexed_rows:
            await asyncio.sleep(0.2)  # the indexer's progress is only visible by asking
        await client.update_collection("r", expansion_search=EF)
        await client.checkpoint_collection("r")  # the restarts load the graph instead of rebuilding it


async def _load(target: str, queries: np.ndarray) -> tuple[list[float], list[Any]]:
    """Search RPCs a second for each measured pass, and the answers of the last."""
    requests = [
        search_pb2.SearchRequest(collection="r", vector=common_pb2.Vector(f32=pack(q)), k=K) for q in queries
    ]
    rates: list[float] = []
    answers: list[Any] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        for n in range(PASSES + 1):
            seconds, _, answers = await closed_loop(
                lambda i: stub.Search(requests[i]), len(requests), CALLERS
            )
            if n:
                rates.append(len(requests) / seconds)
    return rates, answers


def _true_recall(answers: list[Any], queries: np.ndarray, stored: np.ndarray) -> float:
    """Recall@K of `answers` against an exact scan of `stored` (unit rows), scoring as the server
    does: the unit query cast to f16 (its kernel's dtype), the products summed in float64."""
    found = 0
    for answer, q in zip(answers, queries, strict=True):
        q16 = (q / np.linalg.norm(q)).astype(np.float16).astype(np.float64)
        kth = float(np.sort(stored @ (q16 / np.linalg.norm(q16)))[-K])
        found += min(K, sum(1 for h in answer.hits if h.score >= kth - TIE))
    return found / (K * len(queries))


def run(data_dir: Path) -> dict[str, Any]:
    started = dt.datetime.now().astimezone()
    load = load_average()
    data, queries = clustered(N, DIM, centres=200, decay=0.5, seed=21, queries=QUERIES)
    stored = data.astype(np.float16).astype(np.float64)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    builder = Server(data_dir, "--log-level", "WARNING")
    try:
        asyncio.run(_build(f"127.0.0.1:{builder.port}", data))
    finally:
        builder.terminate()

    runs: dict[float, dict[str, list[float]]] = {
        b: {"qps": [], "cpu_us": [], "samples": [], "sampled": []} for b in BUDGETS
    }
    truth: list[float] = []
    for _ in range(ROUNDS):
        for budget in BUDGETS:
            server = Server(
                data_dir,
                "--log-level",
                "WARNING",
                "--metrics-port",
                "0",
                "--recall-sample-budget",
                str(budget),
            )
            try:
                port = _metrics_port(server)
                cpu_before = process_stat(server.proc.pid)[1]
                count_before, sum_before = _recall_samples(port)
                rates, answers = asyncio.run(_load(f"127.0.0.1:{server.port}", queries))
                cpu = process_stat(server.proc.pid)[1] - cpu_before
                count, total = _recall_samples(port)
            finally:
                server.terminate()
            row = runs[budget]
            row["qps"].append(statistics.median(rates))
            row["cpu_us"].append(cpu / ((PASSES + 1) * QUERIES) * 1e6)
            row["samples"].append(count - count_before)
            row["sampled"].append(total - sum_before)
            truth.append(_true_recall(answers, queries, stored))
    baseline = statistics.median(runs[0.0]["qps"])
    rows = []
    for budget, row in runs.items():
        samples, sampled = sum(row["samples"]), sum(row["sampled"])
        mean = sampled / samples if samples else math.nan
        seconds = ROUNDS * (PASSES + 1) * QUERIES / statistics.median(row["qps"])
        rows.append(
            [
                "off" if not budget else f"{budget}",
                statistics.median(row["qps"]),
                ", ".join(f"{q:,.0f}" for q in row["qps"]),
                statistics.median(row["qps"]) / baseline,
                statistics.median(row["cpu_us"]),
                int(samples),
                samples / seconds,
                mean if samples else "-",
            ]
        )
    true_recall = statistics.median(truth)
    for budget in BUDGETS[1:]:
        assert sum(runs[budget]["samples"]) > 0, f"no recall sample at a budget of {budget}"
    assert sum(runs[0.0]["samples"]) == 0
    header = [
        "--recall-sample-budget",
        "Search RPCs/s (median)",
        "each run",
        "x off",
        "server CPU us/search",
        "samples",
        "samples/s",
        "sampled mean recall@10",
    ]
    print_table("Recall sampling: cost and estimate", header, rows)
    print(f"recall@10 of every answer, by the benchmark's own brute force: {true_recall:.4f}")
    body = (
        f"{N:,} x {DIM} front-loaded unit vectors (`clustered(..., centres=200, decay=0.5)`), the default "
        f"collection (1024-d f16 HNSW, f16 rows) tuned to expansion_search {EF}; {QUERIES:,} queries from "
        f"the same mixture as single-query Search RPCs from {CALLERS} callers on one channel, one warm-up "
        f"pass and {PASSES} measured passes per server; each budget's server started {ROUNDS} times, in "
        "turn with the others, on the same data directory. 'server CPU' is the gateway process's CPU "
        "over all its passes (from /proc) per search. The benchmark's own recall@10 of every answer it "
        f"received (exact top {K} by numpy over the f16-rounded stored vectors): **{true_recall:.4f}** "
        f"(median over the {len(truth)} runs: {', '.join(f'{t:.4f}' for t in truth)}). The sampled mean "
        "is over every sample of that budget's runs, each a search re-run as an exact scan on a "
        "low-priority thread; with few samples it has a wide margin (a search misses 0 or several "
        "neighbours, not a fraction of one).\n\n" + markdown_table(header, rows) + "\n"
    )
    write_section(
        "recall-sampling",
        "Recall on live traffic: cost and estimate (`test_recall_sampling.py`)",
        body,
        started=started,
        load_before=load,
        raw={"runs": {str(b): r for b, r in runs.items()}, "true_recall": truth},
    )
    return {"runs": runs, "truth": truth}


@pytest.mark.benchmark
def test_recall_sampling(tmp_path: Path) -> None:
    run(tmp_path)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp))
