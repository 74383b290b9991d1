"""Search batching: one usearch call per query vs one per batch, in-process and over gRPC.

(a) baseline: 1,000 queries, one `search_many([q])` call each (a server searching per request);
(b) the same queries in `search_many` batches of 64 and 256, threads=2; results must be identical;
(c) the real gateway: 500 concurrent Search RPCs with the batcher on (default settings) against
    `search_max_batch=1` (baseline, no coalescing): RPC throughput and usearch calls.

Run: `.venv/bin/pytest tests/benchmarks/test_search_batching.py -s` or
`.venv/bin/python -m tests.benchmarks.test_search_batching`. Prints figures and writes them into
docs/benchmarks.md (section `search-batching`) and docs/benchmarks/search-batching.json; asserts
only correctness.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from onespace.index import Collection, CollectionConfig, CollectionStore, IndexDtype, Metric, Query, Record
from onespace.models import LOCAL_MODEL
from onespace_client.v1 import common_pb2, search_pb2
from tests.benchmarks._common import Matrix, clustered, stopwatch
from tests.benchmarks._report import Part, load_average, write_parts
from tests.harness import running_gateway

N = 20_000
DIMENSION = 256
QUERIES = 1_000
RPCS = 500
K = 10
THREADS = 2
BATCHES = (64, 256)
REPEATS = 3  # in-process passes are short: report the best of 3


def _config(name: str) -> CollectionConfig:
    return CollectionConfig(
        name=name,
        model=LOCAL_MODEL.id,
        dimension=DIMENSION,
        index_dimension=DIMENSION,
        metric=Metric.COSINE,
        dtype=IndexDtype.F16,
    )


def _fill(collection: Collection, vectors: Matrix) -> None:
    for start in range(0, len(vectors), 5_000):
        chunk = vectors[start : start + 5_000]
        collection.upsert([Record(f"v{start + i}", row) for i, row in enumerate(chunk)])


def _ids(hits: list[list[Any]]) -> list[list[str]]:
    return [[h.id for h in row] for row in hits]


def in_process(data_dir: Path) -> Part:
    vectors, queries = clustered(N, DIMENSION, queries=QUERIES, seed=1)
    store = CollectionStore(data_dir)
    store.open()
    collection = store.create(_config("bench"))
    with stopwatch() as build:
        _fill(collection, vectors)
    qs = [Query(q, K) for q in queries]
    collection.search_many(qs[:64], THREADS)  # warm-up

    def run(size: int) -> tuple[float, int, list[list[str]]]:
        """Best of REPEATS passes over all queries in calls of `size`: seconds, calls per pass, ids."""
        best, calls, hits = float("inf"), 0, []
        for _ in range(REPEATS):
            before = collection.usearch_calls
            with stopwatch() as elapsed:
                hits = [
                    h
                    for s in range(0, QUERIES, size)
                    for h in collection.search_many(qs[s : s + size], THREADS)
                ]
            best, calls = min(best, elapsed.seconds), collection.usearch_calls - before
        return best, calls, _ids(hits)

    solo_s, solo_calls, solo = run(1)
    rows: list[list[object]] = [
        ["one `search_many([q])` per query (baseline)", 1, solo_calls, solo_s, QUERIES / solo_s, 1.0]
    ]
    figures = {"solo_qps": QUERIES / solo_s}
    for size in BATCHES:
        seconds, calls, batched = run(size)
        assert batched == solo, f"batches of {size} changed results"
        figures[f"batch{size}_qps"] = QUERIES / seconds
        rows.append(
            [f"`search_many`, batches of {size}", size, calls, seconds, QUERIES / seconds, solo_s / seconds]
        )
    return Part(
        f"In process, {N:,} x {DIMENSION} f16 cosine, k = {K}, best of {REPEATS} passes over {QUERIES:,} "
        f"queries, threads = {THREADS} (build {build.seconds:.1f} s)",
        ["mode", "batch", "usearch calls", "best s", "QPS", "x baseline"],
        rows,
        "Results are identical to the baseline's (checked).",
        figures,
    )


async def over_grpc(data_dir: Path) -> Part:
    vectors, queries = clustered(N, DIMENSION, queries=RPCS, seed=2)
    requests = [
        search_pb2.SearchRequest(collection="bench", vector=common_pb2.Vector(values=q.tolist()), k=K)
        for q in queries
    ]
    # Build and save once, so both gateways load the very same HNSW graph (a multi-threaded build
    # is not deterministic, and a different graph may return slightly different neighbours).
    store = CollectionStore(data_dir)
    store.open()
    _fill(store.create(_config("bench")), vectors)
    store.checkpoint_all()
    results: dict[str, tuple[float, int, list[list[str]]]] = {}
    modes: list[tuple[str, dict[str, Any]]] = [
        ("search_max_batch=1 (baseline)", {"search_max_batch": 1}),
        ("batcher on (defaults)", {}),
    ]
    for label, overrides in modes:
        async with running_gateway(data_dir, **overrides) as gw:
            collection = gw.app.gateway.store.get("bench")
            await asyncio.gather(*(gw.search.Search(r) for r in requests[:50]))  # warm-up
            calls = collection.usearch_calls
            with stopwatch() as elapsed:
                replies = await asyncio.gather(*(gw.search.Search(r) for r in requests))
            results[label] = (
                elapsed.seconds,
                collection.usearch_calls - calls,
                [[h.id for h in r.hits] for r in replies],
            )
    (base_s, base_calls, base_ids), (on_s, on_calls, on_ids) = results.values()
    assert on_ids == base_ids, "batched RPC results differ from unbatched ones"
    return Part(
        f"Through the gateway, {RPCS} concurrent `Search` RPCs (gRPC client in the same process, so client "
        f"and server share the cores; both gateways load the same saved index), {N:,} x {DIMENSION}",
        ["mode", "seconds", "RPC/s", "usearch calls", "x baseline RPC/s"],
        [[label, s, RPCS / s, calls, base_s / s] for label, (s, calls, _) in results.items()],
        f"Identical hits in both modes (checked); usearch calls {base_calls} -> {on_calls}.",
        {
            "rpc_base": RPCS / base_s,
            "rpc_batched": RPCS / on_s,
            "calls_base": base_calls,
            "calls_batched": on_calls,
        },
    )


async def run(data_dir: Path) -> list[Part]:
    started = dt.datetime.now().astimezone()
    load = load_average()
    parts = [in_process(data_dir / "a"), await over_grpc(data_dir / "b")]
    write_parts(
        "search-batching",
        "Search batching (`test_search_batching.py`)",
        parts,
        started=started,
        load_before=load,
    )
    return parts


async def test_search_batching(tmp_path: Path) -> None:
    local, remote = await run(tmp_path)
    assert all(v > 0 for v in local.figures.values())
    assert remote.figures["calls_batched"] < remote.figures["calls_base"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp)))


if __name__ == "__main__":
    main()
