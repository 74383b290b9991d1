"""The Milvus backend against the embedded store: the same ingest and search workloads on both.

One collection of N vectors (default 100,000; `ONESPACE_BENCH_MILVUS_N`), 256-d, stored f16, with
a 64-d Matryoshka prefix index (cosine, rerank factor 4, default HNSW parameters), from a seeded
front-loaded Gaussian mixture; 10% of the items carry `tag=hot`. Milvus is milvus-lite, served by
pymilvus inside this process (pure Python + faiss, over a local gRPC connection): it is the
Milvus a laptop or CI has, not a cluster, so the ratios say what the backend's own work costs
(row building, the network round trip, pymilvus encoding, the rerank) on top of a Milvus that is
itself slower than a cluster's C++ query nodes.

Workloads, each run on both backends through the backend interface (what the gateway's batchers
call; the gRPC layer in front is the same for both):

- **ingest**: N items in groups of 1,000 (`apply(ops, index=False)`, as the write batcher sends
  a busy lane's group) until every group is acknowledged; then until searchable on the index:
  the embedded store's `index_pending` (HNSW adds), Milvus's flush (`checkpoint`) plus a reopen,
  whose load builds the segments' HNSW indexes (milvus-lite builds them in the background
  otherwise, and searches the rest by brute force meanwhile);
- **search**: 1,000 queries, k=10, in coalesced batches of 64 (`search_many`, what the search
  batcher sends) and 200 of them one per call; recall@10 against exact search;
- **filtered search**: the same 1,000 queries with `tag=hot` (10% of the items), batches of 64;
- **get**: 1,000 random ids, 100 per call.

Where the time goes: for Milvus, each call is split into the time inside milvus-lite's servicer
(its search, query and upsert handlers, timed by wrapping them), the client side of the Milvus
call (gRPC, pymilvus encoding and decoding: the call time minus the server's) and the gateway's
own work outside the Milvus call (building rows and prefixes; planning, the exact rerank and the
hits). For the embedded store: the commit (`apply`) and the HNSW adds (`index_pending`).

Results go into docs/benchmarks.md (section `milvus`) and docs/benchmarks/milvus.json (a run at
another N writes only `milvus-<N>.json` unless ONESPACE_BENCH_WRITE_DOC=1).

Run: `.venv/bin/pytest tests/benchmarks/test_milvus.py -s` (about 5 min on 2 cores), or
`.venv/bin/python -m tests.benchmarks.test_milvus`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the Milvus benchmark needs the `milvus` extra")
pytest.importorskip("milvus_lite", reason="milvus-lite has no wheel for this platform")

from milvus_lite.adapter.grpc.servicer import MilvusServicer

from onespace.index import CollectionConfig, CollectionStore, Filter, Metric, Query, Record
from onespace.index.backend import Backend, CollectionHandle
from onespace.milvus import MilvusBackend, MilvusCollection
from onespace.models import LOCAL_MODEL
from tests.benchmarks._common import clustered, print_table
from tests.benchmarks._report import load_average, markdown_table, write_section

pytestmark = pytest.mark.benchmark

N = int(os.environ.get("ONESPACE_BENCH_MILVUS_N", "100000"))
DIMENSION = 256
INDEX_DIMENSION = 64
GROUP = 1_000
QUERIES = 1_000
SINGLE = 200
BATCH = 64
K = 10
GETS = 1_000
GET_CALL = 100
HOT = Filter(metadata={"tag": "hot"})
KINDS = ("embedded", "milvus")


def _config() -> CollectionConfig:
    return CollectionConfig(
        name="bench",
        model=LOCAL_MODEL.id,
        dimension=DIMENSION,
        index_dimension=INDEX_DIMENSION,
        metric=Metric.COSINE,
        rerank_factor=4,
    )


def _backend(kind: str, directory: Path) -> Backend:
    if kind == "embedded":
        return CollectionStore(directory / "data")
    return MilvusBackend(str(directory / "milvus.db"))


class ServerClock:
    """Seconds spent inside milvus-lite's servicer handlers, per handler (all threads)."""

    HANDLERS = ("Search", "Query", "Upsert", "Delete", "Flush", "LoadCollection")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(self.HANDLERS, 0.0)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def installed(self) -> Iterator[ServerClock]:
        originals = {name: getattr(MilvusServicer, name) for name in self.HANDLERS}

        def timed(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
            def handler(servicer: Any, request: Any, context: Any) -> Any:
                start = time.perf_counter()
                try:
                    return original(servicer, request, context)
                finally:
                    with self._lock:
                        self.seconds[name] += time.perf_counter() - start

            return handler

        for name, original in originals.items():
            setattr(MilvusServicer, name, timed(name, original))
        try:
            yield self
        finally:
            for name, original in originals.items():
                setattr(MilvusServicer, name, original)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.seconds)


@dataclass
class Split:
    """Where one workload's seconds went."""

    total: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)


class CallClock:
    """Seconds spent inside some methods of one object (patched on the instance, restored after)."""

    def __init__(self, target: Any, *names: str) -> None:
        self.seconds = 0.0
        self._target = target
        self._names = names

    @contextlib.contextmanager
    def installed(self) -> Iterator[CallClock]:
        def timed(original: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    self.seconds += time.perf_counter() - start

            return call

        for name in self._names:
            setattr(self._target, name, timed(getattr(self._target, name)))
        try:
            yield self
        finally:
            for name in self._names:
                delattr(self._target, name)  # back to the class's method


def _records(data: np.ndarray, start: int, stop: int) -> list[Record]:
    return [
        Record(f"v{i}", data[i], metadata={"tag": "hot" if i % 10 == 0 else "cold"})
        for i in range(start, stop)
    ]


def _timed(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


@dataclass
class Figures:
    kind: str
    ingest_ack_s: float = 0.0
    ingest_index_s: float = 0.0
    search_batch_s: float = 0.0
    search_single_s: float = 0.0
    filtered_s: float = 0.0
    get_s: float = 0.0
    recall: float = 0.0
    filtered_recall: float = 0.0
    splits: dict[str, Split] = field(default_factory=dict)

    def rates(self) -> dict[str, float]:
        return {
            "ingest items/s (acked)": N / self.ingest_ack_s,
            "ingest items/s (acked + indexed)": N / (self.ingest_ack_s + self.ingest_index_s),
            f"search QPS, batches of {BATCH}": QUERIES / self.search_batch_s,
            "search QPS, one per call": SINGLE / self.search_single_s,
            f"filtered search QPS (10%), batches of {BATCH}": QUERIES / self.filtered_s,
            f"get ids/s ({GET_CALL} per call)": GETS / self.get_s,
        }


def _recall(found: list[list[Any]], exact: np.ndarray) -> float:
    return float(
        np.mean(
            [
                len({int(h.id[1:]) for h in hits} & set(row)) / K
                for hits, row in zip(found, exact, strict=True)
            ]
        )
    )


def _searches(c: CollectionHandle, queries: list[Query]) -> list[list[Any]]:
    return [h for s in range(0, len(queries), BATCH) for h in c.search_many(queries[s : s + BATCH])]


def measure(
    kind: str, directory: Path, data: np.ndarray, queries: np.ndarray, truth: dict[str, np.ndarray]
) -> Figures:
    figures = Figures(kind)
    server = ServerClock()
    with server.installed():  # before the first open: milvus-lite binds its handlers when it starts
        backend = _backend(kind, directory)
        backend.open()
        c = backend.create(_config())
        ops = [c.prepare_upsert(_records(data, s, min(s + GROUP, N))) for s in range(0, N, GROUP)]
        if isinstance(c, MilvusCollection):
            calls = CallClock(c._client, "upsert", "query", "delete")  # the benchmark looks inside
            before = server.snapshot()
            with calls.installed():
                figures.ingest_ack_s, _ = _timed(lambda: [c.apply([op], index=False) for op in ops])
            after = server.snapshot()
            inside = sum(after[h] - before[h] for h in ("Upsert", "Query", "Delete"))
            figures.splits["ingest"] = Split(
                figures.ingest_ack_s,
                {
                    "milvus-lite upsert + id lookup handlers": inside,
                    "client side of the Milvus calls (gRPC, pymilvus encoding)": calls.seconds - inside,
                    "gateway: fold, rows, prefixes": figures.ingest_ack_s - calls.seconds,
                },
            )
            assert isinstance(backend, MilvusBackend)
            flush_s, _ = _timed(lambda: backend.checkpoint(c))
            backend.close()
            backend = _backend(kind, directory)
            load_s, _ = _timed(backend.open)  # load builds the flushed segments' HNSW indexes
            figures.ingest_index_s = flush_s + load_s
            c = backend.get("bench")
        else:
            figures.ingest_ack_s, _ = _timed(lambda: [c.apply([op], index=False) for op in ops])
            figures.ingest_index_s, _ = _timed(lambda: [None for _ in iter(c.index_pending, False)])
        assert len(c) == N
        plain = [Query(q, K) for q in queries]
        hot = [Query(q, K, filter=HOT) for q in queries]
        c.search_many(plain[:BATCH])  # warm-up
        if isinstance(c, MilvusCollection):
            calls = CallClock(c, "ann")
            before = server.snapshot()
            with calls.installed():
                figures.search_batch_s, found = _timed(lambda: _searches(c, plain))
            inside = server.snapshot()["Search"] - before["Search"]
            figures.splits["search"] = Split(
                figures.search_batch_s,
                {
                    "milvus-lite search handler (HNSW, output vectors)": inside,
                    "client side of the Milvus call (gRPC, pymilvus decoding)": calls.seconds - inside,
                    "gateway: plan, exact rerank, hits": figures.search_batch_s - calls.seconds,
                },
            )
        else:
            figures.search_batch_s, found = _timed(lambda: _searches(c, plain))
        figures.recall = _recall(found, truth["plain"])
        figures.search_single_s, _ = _timed(lambda: [c.search_many([q]) for q in plain[:SINGLE]])
        figures.filtered_s, found_hot = _timed(lambda: _searches(c, hot))
        figures.filtered_recall = _recall(found_hot, truth["hot"])
        rng = np.random.default_rng(5)
        ids = [f"v{i}" for i in rng.choice(N, GETS, replace=False)]
        figures.get_s, got = _timed(lambda: [c.get(ids[s : s + GET_CALL]) for s in range(0, GETS, GET_CALL)])
        assert all(item is not None for batch in got for item in batch)
        backend.close()
    return figures


def run(directory: Path) -> dict[str, Figures]:
    started = dt.datetime.now().astimezone()
    load_before = load_average()
    data, queries = clustered(N, DIMENSION, decay=0.5, seed=3, queries=QUERIES)
    scores = queries @ data.T
    hot_rows = np.arange(0, N, 10)
    truth = {
        "plain": np.argsort(-scores, axis=1)[:, :K],
        "hot": hot_rows[np.argsort(-scores[:, hot_rows], axis=1)[:, :K]],
    }
    results = {kind: measure(kind, directory / kind, data, queries, truth) for kind in KINDS}
    embedded, milvus = results["embedded"], results["milvus"]
    header = ["workload", "embedded", "milvus (lite)", "milvus / embedded"]
    rows: list[list[object]] = []
    for (name, base), other in zip(embedded.rates().items(), milvus.rates().values(), strict=True):
        rows.append([name, f"{base:,.0f}", f"{other:,.0f}", f"{other / base:.2f}"])
    rows.append(["recall@10 (plain)", f"{embedded.recall:.3f}", f"{milvus.recall:.3f}", ""])
    rows.append(
        ["recall@10 (tag=hot, 10%)", f"{embedded.filtered_recall:.3f}", f"{milvus.filtered_recall:.3f}", ""]
    )
    title = (
        f"{N:,} x {DIMENSION} (stored f16), {INDEX_DIMENSION}-d prefix HNSW, cosine, rerank x4; "
        "milvus-lite in process"
    )
    print_table(title, header, rows)
    split_rows: list[list[object]] = []
    for workload, split in milvus.splits.items():
        for part, seconds in split.parts.items():
            split_rows.append([workload, part, f"{seconds:.2f}", f"{100 * seconds / split.total:.0f}%"])
    split_rows.append(
        [
            "ingest (embedded)",
            "apply (commits, and HNSW adds under backpressure) / index_pending (the rest)",
            f"{embedded.ingest_ack_s:.2f} / {embedded.ingest_index_s:.2f}",
            "",
        ]
    )
    split_rows.append(
        ["ingest (milvus)", "flush + reopen (load builds HNSW)", f"{milvus.ingest_index_s:.2f}", ""]
    )
    split_header = ["workload (milvus)", "part", "seconds", "share"]
    print_table("where the time goes", split_header, split_rows)
    body = "\n\n".join(
        [
            f"{N:,} vectors, {DIMENSION}-d (stored f16) with a {INDEX_DIMENSION}-d Matryoshka prefix HNSW "
            "(cosine, rerank factor 4, default HNSW parameters), a seeded front-loaded Gaussian mixture; "
            "10% of the items tagged `hot`. Both backends driven through the backend interface (the "
            "write batcher's `apply` in groups of 1,000; `search_many` in batches of 64 as the search "
            "batcher sends them, and one query per call). Milvus is **milvus-lite** 3.x inside the "
            "benchmark process (pure Python and faiss behind a local gRPC port, sharing the 2 cores): "
            "what CI and a laptop run, not a cluster. Ingest 'acked' is until every group is "
            "acknowledged; 'indexed' adds the embedded store's HNSW adds, or Milvus's flush and a "
            "reopen whose load builds the HNSW indexes (before that milvus-lite searches unflushed "
            "rows by brute force). The embedded store's `apply` adds rows to HNSW itself once 16,384 "
            "committed rows wait for the index (backpressure), so at this size most of its HNSW work "
            "is inside 'acked'.",
            markdown_table(header, rows),
            "Where the Milvus backend's time goes (seconds summed over the workload; the servicer's "
            "handlers are timed by wrapping them, the client side is the Milvus call's time minus "
            "that, the gateway part is what the backend does outside the Milvus calls):",
            markdown_table(split_header, split_rows),
        ]
    )
    write_section(
        "milvus" if N == 100_000 else f"milvus-{N}",
        "Milvus backend vs embedded store (`test_milvus.py`)",
        body,
        started=started,
        load_before=load_before,
        raw={
            kind: {
                **{k: v for k, v in f.__dict__.items() if k != "splits"},
                "rates": f.rates(),
                "splits": {w: s.__dict__ for w, s in f.splits.items()},
            }
            for kind, f in results.items()
        },
        document=N == 100_000,
    )
    return results


@pytest.mark.timeout(3600)
def test_milvus_vs_embedded(tmp_path: Path) -> None:
    results = run(tmp_path)
    assert all(f.recall >= 0.9 for f in results.values())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp))


if __name__ == "__main__":
    main()
