"""The 1M-item collection: memory per item, restart time, search QPS and recall@10, filtered search.

One collection on disk (`CollectionStore` in a temp dir under /tmp, durable as in production):
1024-d vectors stored as f16, a 256-d Matryoshka prefix in the HNSW index (f16, cosine,
connectivity 16), rerank_factor 4. Data: a Gaussian mixture (1,000 centres, spread 0.5) whose
per-dimension std falls like (1 + i) ** -0.5 (front-loaded like an MRL embedding), generated and
upserted in chunks of 20,000 (never the whole matrix at once), with metadata
{"shard": i % 100, "rare": i % 1000} so `Filter(metadata={"shard": "7"})` keeps 1% and
`{"rare": "7"}` 0.1% of the items.

Figures, at 100k items on the way up and at N (default 1,000,000; `ONESPACE_BENCH_N` scales it):

- ingest rate (chunked `collection.upsert`, HNSW add timed separately);
- resident memory: VmRSS of the building process, and of a fresh process after a restart
  (the steady-state figure), broken down into the usearch index (`memory_usage`), the mapped
  vector/slot files (mapped size, and what of it is resident: /proc/self/smaps), the per-slot
  arrays, SQLite (file size; its page cache is bounded at 16 MiB per connection) and the rest;
  bytes per item against the 3.5 KB target;
- restart: `store.close()` (checkpoints the index), then `CollectionStore(path).open()` timed in a
  fresh process; the rebuild without a checkpoint only when N <= 200k (or
  `ONESPACE_BENCH_REBUILD=1`): at 1M it takes as long as the HNSW build;
- search: 1,000 queries in one `search_many` (k=10, threads=2), recall@10 of 200 of them against
  exact brute force on the original float32 1024-d vectors (a running top-k kept while the chunks
  are generated); filtered search at 1% and 0.1%: QPS, every result k long, recall against the
  exact filtered top-10 (time-boxed: batches of 25 queries until 200 are done or 60 s passed).

The figures are written into docs/benchmarks.md (section `million`) and docs/benchmarks/million.json.

Run: `.venv/bin/pytest tests/benchmarks/test_million.py -s` (1M: ~20-30 min on 2 cores), or
`ONESPACE_BENCH_N=100000 .venv/bin/pytest tests/benchmarks/test_million.py -s` (~3 min).
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from onespace.index import (
    Collection,
    CollectionConfig,
    CollectionStore,
    Filter,
    IndexDtype,
    Metric,
    Query,
    Record,
    StoredDtype,
    maintenance,
)
from onespace.models import LOCAL_MODEL
from tests.benchmarks._common import Matrix, print_table
from tests.benchmarks._report import (
    ROOT,
    load_average,
    markdown_table,
    rss_bytes,
    write_section,
)

pytestmark = pytest.mark.benchmark

N = int(os.environ.get("ONESPACE_BENCH_N", "1000000"))
MID = 100_000  # figures "on the way up"
CHUNK = 20_000
DIMENSION = 1024
INDEX_DIMENSION = 256
CENTRES = 1_000
QUERIES = 1_000  # unfiltered QPS
TRUTH = 200  # queries with exact ground truth (recall, filtered search)
FILTER_BATCH = 25
FILTER_BUDGET_S = 60.0
K = 10
THREADS = 2
SEED = 11
TARGET_BYTES_PER_ITEM = 3_500
SQLITE_CACHE = 16 * 2**20  # PRAGMA cache_size=-16384 per connection
FILTERS = {"1%": {"shard": "7"}, "0.1%": {"rare": "7"}}
NAME = "million"


def _rebuild_wanted() -> bool:
    flag = os.environ.get("ONESPACE_BENCH_REBUILD")
    return flag == "1" if flag in {"0", "1"} else N <= 200_000


def _config() -> CollectionConfig:
    return CollectionConfig(
        name=NAME,
        model=LOCAL_MODEL.id,
        dimension=DIMENSION,
        index_dimension=INDEX_DIMENSION,
        metric=Metric.COSINE,
        dtype=IndexDtype.F16,
        stored_dtype=StoredDtype.F16,
        rerank_factor=4,
    )


# --- data ----------------------------------------------------------------------------------------


class Mixture:
    """A deterministic Gaussian mixture drawn in independent streams (stream 0: queries, c+1: chunk c)."""

    def __init__(self, dimension: int, *, centres: int, spread: float = 0.5, decay: float = 0.5, seed: int):
        rng = np.random.default_rng(seed)
        self.seed, self.spread, self.dimension = seed, spread, dimension
        self.scale = ((1.0 + np.arange(dimension)) ** -decay).astype(np.float32)
        self.means = rng.standard_normal((centres, dimension), dtype=np.float32)

    def draw(self, stream: int, count: int) -> Matrix:
        rng = np.random.default_rng([self.seed, stream])
        picks = rng.integers(0, len(self.means), count)
        points = rng.standard_normal((count, self.dimension), dtype=np.float32)
        points *= np.float32(self.spread)
        points += self.means[picks]
        points *= self.scale
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        return points


class TopK:
    """Exact top-k by cosine of fixed unit queries over rows fed in chunks (ids are item numbers)."""

    def __init__(self, queries: Matrix, k: int) -> None:
        self.queries = queries
        self.k = k
        self.scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        self.ids = np.full((len(queries), k), -1, dtype=np.int64)

    def update(self, rows: Matrix, ids: npt.NDArray[np.int64]) -> None:
        if not len(rows):
            return
        scores = np.concatenate([self.scores, self.queries @ rows.T], axis=1)
        ids_all = np.concatenate([self.ids, np.broadcast_to(ids, (len(self.queries), len(ids)))], axis=1)
        top = np.argpartition(-scores, self.k - 1, axis=1)[:, : self.k]
        self.scores = np.take_along_axis(scores, top, axis=1)
        self.ids = np.take_along_axis(ids_all, top, axis=1)

    def copy(self) -> TopK:
        other = TopK(self.queries, self.k)
        other.scores, other.ids = self.scores.copy(), self.ids.copy()
        return other

    def sets(self) -> list[set[int]]:
        return [{int(i) for i in row if i >= 0} for row in self.ids]


def _metadata(i: int) -> dict[str, str]:
    return {"shard": str(i % 100), "rare": str(i % 1000)}


def _filter_mask(ids: npt.NDArray[np.int64], name: str) -> npt.NDArray[np.bool_]:
    modulus = 100 if name == "1%" else 1000
    return np.asarray(ids % modulus == 7, dtype=np.bool_)


# --- memory ----------------------------------------------------------------------------------------


def _smaps_rss(directory: Path) -> dict[str, int]:
    """Resident bytes of this process's mappings of the collection's files, by file kind."""
    out = {"vectors": 0, "slots": 0, "other": 0}
    current: str | None = None
    prefix = str(directory)
    with open("/proc/self/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):  # a mapping header line
                parts = line.split()
                path = parts[5] if len(parts) >= 6 else ""
                if path.startswith(prefix):
                    name = Path(path).name
                    current = (
                        "vectors"
                        if name.startswith("vectors-")
                        else ("slots" if name.startswith("slots-") else "other")
                    )
                else:
                    current = None
            elif current is not None and first == "Rss:":
                out[current] += int(line.split()[1]) * 1024
    return out


def _sqlite_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("items.sqlite*") if p.is_file())


def memory_breakdown(collection: Collection, baseline_rss: int) -> dict[str, int]:
    """What the process holds for `collection` (bytes); `baseline_rss` is VmRSS before the store."""
    gc.collect()
    rss = rss_bytes()
    mapped = _smaps_rss(collection.directory)
    stats = maintenance.stats(collection)
    slots = collection.slots
    slot_arrays = slots.memory_bytes()
    index = collection.index.memory_usage
    delta = rss["VmRSS"] - baseline_rss
    return {
        "items": len(collection),
        "rss": rss["VmRSS"],
        "rss_anon": rss.get("RssAnon", 0),
        "rss_file": rss.get("RssFile", 0),
        "rss_delta": delta,
        "index": index,
        "vectors_mapped": stats.vector_bytes,
        "vectors_resident": mapped["vectors"],
        "slots_file_mapped": slots.count * 16,
        "slots_file_resident": mapped["slots"],
        "slot_arrays": slot_arrays,
        "sqlite_file": _sqlite_bytes(collection.directory),
        "other": delta - index - mapped["vectors"] - mapped["slots"] - slot_arrays,
        "disk": stats.disk_bytes,
    }


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"


def memory_rows(label: str, m: dict[str, int]) -> list[object]:
    n = max(m["items"], 1)
    return [
        label,
        m["items"],
        _mb(m["rss"]),
        _mb(m["rss_delta"]),
        _mb(m["index"]),
        f"{_mb(m['vectors_mapped'])} / {_mb(m['vectors_resident'])}",
        f"{_mb(m['slots_file_mapped'])} / {_mb(m['slots_file_resident'])}",
        _mb(m["slot_arrays"]),
        _mb(m["sqlite_file"]),
        _mb(m["other"]),
        f"{m['rss_delta'] / n:,.0f}",
        f"{(m['rss_delta'] - m['vectors_resident'] + m['vectors_mapped']) / n:,.0f}",
    ]


MEMORY_HEADER = [
    "where",
    "items",
    "VmRSS MB",
    "RSS delta MB",
    "index MB",
    "vectors mapped/resident MB",
    "slots file mapped/resident MB",
    "slot arrays MB",
    "SQLite file MB",
    "other MB",
    "RSS B/item",
    "B/item if vectors cached",
]


# --- search ----------------------------------------------------------------------------------------


@dataclass
class SearchFigures:
    label: str
    queries: int
    seconds: float
    recall: float
    full: bool  # every result has k hits

    @property
    def qps(self) -> float:
        return self.queries / self.seconds


def _recall(hits: Sequence[Sequence[Any]], truth: Sequence[set[int]]) -> float:
    found = [{int(h.id[1:]) for h in row} for row in hits]
    return float(np.mean([len(f & t) / K for f, t in zip(found, truth, strict=False)]))


def unfiltered_search(collection: Collection, queries: Matrix, truth: TopK, label: str) -> SearchFigures:
    qs = [Query(q, K) for q in queries]
    collection.search_many(qs[:100], THREADS)  # warm-up
    best, hits = float("inf"), []
    for _ in range(2):
        start = time.perf_counter()
        hits = collection.search_many(qs, THREADS)
        best = min(best, time.perf_counter() - start)
    recall = _recall(hits[: len(truth.queries)], truth.sets())
    return SearchFigures(label, len(qs), best, recall, all(len(h) == K for h in hits))


def filtered_search(
    collection: Collection, queries: Matrix, truth: TopK, metadata: dict[str, str], label: str
) -> SearchFigures:
    """Batches of FILTER_BATCH until every truth query is done or FILTER_BUDGET_S has passed."""
    flt = Filter(metadata=metadata)
    qs = [Query(q, K, filter=flt) for q in queries]
    collection.search_many(qs[:2], THREADS)  # warm-up (SQLite pages, code paths)
    hits: list[Any] = []
    spent = 0.0
    while len(hits) < len(qs) and spent < FILTER_BUDGET_S:
        batch = qs[len(hits) : len(hits) + FILTER_BATCH]
        start = time.perf_counter()
        hits += collection.search_many(batch, THREADS)
        spent += time.perf_counter() - start
    recall = _recall(hits, truth.sets()[: len(hits)])
    return SearchFigures(label, len(hits), spent, recall, all(len(h) == K for h in hits))


def search_rows(figures: Sequence[SearchFigures]) -> list[list[object]]:
    return [[f.label, f.queries, f.seconds, f.qps, f.recall, "yes" if f.full else "NO"] for f in figures]


SEARCH_HEADER = ["search", "queries", "seconds", "QPS", "recall@10", "all k results"]


# --- restart in a fresh process --------------------------------------------------------------------


def reopen(data_dir: Path, queries_file: Path | None) -> dict[str, Any]:
    """Run in a fresh process: open the store (timed), memory, then a search pass; JSON figures."""
    before = rss_bytes()["VmRSS"]
    store = CollectionStore(data_dir)
    start = time.perf_counter()
    store.open()
    seconds = time.perf_counter() - start
    collection = store.get(NAME)
    out: dict[str, Any] = {
        "open_seconds": seconds,
        "baseline_rss": before,
    }
    out["memory"] = memory_breakdown(collection, before)
    if queries_file is not None:
        queries = np.load(queries_file)
        qs = [Query(q, K) for q in queries]
        start = time.perf_counter()
        collection.search_many(qs, THREADS)
        out["search_seconds"] = time.perf_counter() - start
        out["search_queries"] = len(qs)
        out["memory_after_search"] = memory_breakdown(collection, before)
    return out


def _reopen_in_subprocess(data_dir: Path, queries_file: Path | None) -> dict[str, Any]:
    args = [sys.executable, "-m", "tests.benchmarks.test_million", "--reopen", str(data_dir)]
    if queries_file is not None:
        args.append(str(queries_file))
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"reopen failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --- the run ---------------------------------------------------------------------------------------


def _timed(fn: Callable[..., Any], total: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - start

    return wrapper


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(data_dir: Path) -> dict[str, Any]:
    started = dt.datetime.now().astimezone()
    load_before = load_average()
    figures: dict[str, Any] = {"n": N, "chunk": CHUNK, "load_before": load_before}
    mixture = Mixture(DIMENSION, centres=CENTRES, seed=SEED)
    queries = mixture.draw(0, QUERIES)
    truth_queries = queries[:TRUTH]
    truth = TopK(truth_queries, K)
    filtered_truth = {name: TopK(truth_queries, K) for name in FILTERS}

    gc.collect()
    baseline_rss = rss_bytes()["VmRSS"]
    store = CollectionStore(data_dir)
    store.open()
    collection = store.create(_config())
    hnsw_seconds = [0.0]
    collection.index.add = _timed(collection.index.add, hnsw_seconds)  # type: ignore[method-assign]

    mid = MID if N > MID else N
    memory: list[list[object]] = []
    searches: list[SearchFigures] = []
    stages = {"generate": 0.0, "truth": 0.0, "upsert": 0.0}
    ingest_rows: list[list[object]] = []
    mid_done = False
    last_report = (0, 0.0, 0.0)  # items, upsert seconds, hnsw seconds
    _progress(f"building {N:,} items in chunks of {CHUNK:,} under {data_dir} (load {load_before})")
    for start in range(0, N, CHUNK):
        count = min(CHUNK, N - start)
        t0 = time.perf_counter()
        rows = mixture.draw(1 + start // CHUNK, count)
        ids = np.arange(start, start + count, dtype=np.int64)
        t1 = time.perf_counter()
        truth.update(rows, ids)
        for name, top in filtered_truth.items():
            mask = _filter_mask(ids, name)
            top.update(rows[mask], ids[mask])
        t2 = time.perf_counter()
        collection.upsert(
            [Record(f"v{i}", rows[j], None, _metadata(i)) for j, i in enumerate(range(start, start + count))]
        )
        t3 = time.perf_counter()
        del rows
        stages["generate"] += t1 - t0
        stages["truth"] += t2 - t1
        stages["upsert"] += t3 - t2
        done = start + count
        if done % 100_000 == 0 or done == N:
            items0, up0, hn0 = last_report
            up, hn = stages["upsert"] - up0, hnsw_seconds[0] - hn0
            rate = (done - items0) / up
            ingest_rows.append([f"{items0:,}..{done:,}", rate, hn / up, up - hn])
            last_report = (done, stages["upsert"], hnsw_seconds[0])
            _progress(
                f"{done:,} items: {rate:,.0f} items/s over the last {done - items0:,} "
                f"(HNSW add {100 * hn / up:.0f}% of upsert), RSS {rss_bytes()['VmRSS'] / 1e6:,.0f} MB, "
                f"load {load_average()}"
            )
        if done == mid and not mid_done:
            mid_done = True
            m = memory_breakdown(collection, baseline_rss)
            figures["memory_mid"] = m
            memory.append(memory_rows("building process, before searching", m))
            _progress(f"searching at {done:,}")
            searches.append(unfiltered_search(collection, queries, truth, f"{done:,}: unfiltered"))
            for name, flt in FILTERS.items():
                searches.append(
                    filtered_search(
                        collection, truth_queries, filtered_truth[name], flt, f"{done:,}: filter {name}"
                    )
                )
    figures["build"] = {**stages, "hnsw_add": hnsw_seconds[0]}
    rate = N / stages["upsert"]
    print_table(
        f"ingest: chunked collection.upsert of {CHUNK:,} (durable store, f16 1024-d, HNSW 256-d f16); "
        f"overall {rate:,.0f} items/s, HNSW add {100 * hnsw_seconds[0] / stages['upsert']:.0f}% of it",
        ["items", "items/s", "HNSW add share", "non-HNSW s"],
        ingest_rows,
    )
    print(
        f"time: generate {stages['generate']:.0f} s, exact ground truth {stages['truth']:.0f} s, "
        f"upsert {stages['upsert']:.0f} s (HNSW add {hnsw_seconds[0]:.0f} s)"
    )

    if mid < N:
        m = memory_breakdown(collection, baseline_rss)
        figures["memory_end"] = m
        memory.append(memory_rows("building process, before searching", m))
        _progress(f"searching at {N:,}")
        searches.append(unfiltered_search(collection, queries, truth, f"{N:,}: unfiltered"))
        for name, flt in FILTERS.items():
            searches.append(
                filtered_search(collection, truth_queries, filtered_truth[name], flt, f"{N:,}: filter {name}")
            )
    m = memory_breakdown(collection, baseline_rss)
    memory.append(memory_rows("building process, after the searches", m))
    figures["memory_after_search"] = m
    figures["search"] = [{**f.__dict__, "qps": f.qps} for f in searches]

    _progress("closing the store (checkpoints the index)")
    closing = time.perf_counter()
    store.close()
    close_seconds = time.perf_counter() - closing
    index_files = sorted((data_dir / "collections" / NAME).glob("index-*.usearch"))
    index_file_bytes = sum(p.stat().st_size for p in index_files)
    del collection, store
    gc.collect()

    queries_file = data_dir / "queries.npy"
    np.save(queries_file, queries)
    _progress("restart from the checkpoint in a fresh process")
    restart = _reopen_in_subprocess(data_dir, queries_file)
    figures["restart"] = restart
    memory.append(memory_rows("fresh process after restart", restart["memory"]))
    memory.append(
        memory_rows(
            f"fresh process after {restart['search_queries']:,} searches", restart["memory_after_search"]
        )
    )
    restart_rows: list[list[object]] = [
        [
            "close (checkpoint: save + sha256 + fsync)",
            close_seconds,
            f"index file {_mb(index_file_bytes)} MB",
        ],
        [
            "open from the checkpoint (fresh process)",
            restart["open_seconds"],
            f"then {restart['search_queries']:,} searches in {restart['search_seconds']:.2f} s "
            f"({restart['search_queries'] / restart['search_seconds']:,.0f} QPS, mapping cold)",
        ],
    ]
    if _rebuild_wanted():
        (data_dir / "collections" / NAME / "checkpoint.json").unlink()
        _progress("restart without a checkpoint (index rebuild) in a fresh process")
        rebuild = _reopen_in_subprocess(data_dir, None)
        figures["rebuild"] = rebuild
        restart_rows.append(["open without a checkpoint (rebuild)", rebuild["open_seconds"], ""])
    else:
        estimate = hnsw_seconds[0] / max(N, 1) * N
        figures["rebuild"] = None
        restart_rows.append(
            [
                "open without a checkpoint (rebuild)",
                "skipped",
                f"at {N:,} it re-adds every vector to HNSW: about the build's {estimate:,.0f} s "
                "(ONESPACE_BENCH_REBUILD=1 runs it)",
            ]
        )

    figures["close_seconds"] = close_seconds
    figures["index_file_bytes"] = index_file_bytes
    mem_end = restart["memory"]
    per_item = mem_end["rss_delta"] / max(mem_end["items"], 1)
    figures["bytes_per_item_after_restart"] = per_item

    title_mem = (
        "resident memory (mapped = file size in the address space; resident = its pages in RSS per "
        "/proc/self/smaps; 'B/item if vectors cached' counts the whole vector file as resident)"
    )
    print_table(title_mem, MEMORY_HEADER, memory)
    verdict = "within" if per_item <= TARGET_BYTES_PER_ITEM else "OVER"
    print(
        f"after restart: {per_item:,.0f} B/item resident ({verdict} the {TARGET_BYTES_PER_ITEM:,} B target); "
        f"the vector file ({DIMENSION} x f16 = {DIMENSION * 2:,} B/item) is mapped, resident only where read"
    )
    print_table(
        f"restart at {N:,} items (page cache warm: files just written)",
        ["step", "seconds", "note"],
        restart_rows,
    )
    print_table(
        f"search, k={K}, threads={THREADS}: unfiltered = {QUERIES:,} queries in one search_many (best of 2), "
        f"recall on {TRUTH}; filtered = batches of {FILTER_BATCH} of the {TRUTH} until done or "
        f"{FILTER_BUDGET_S:.0f} s; exact truth on the original float32 1024-d vectors",
        SEARCH_HEADER,
        search_rows(searches),
    )

    body = "\n\n".join(
        [
            f"{N:,} items, 1024-d stored f16, 256-d prefix HNSW (f16, cosine, M=16, ef_add 128, "
            f"ef_search 64), rerank_factor 4; Gaussian mixture ({CENTRES:,} centres, std ∝ (1+i)^-0.5), "
            f"chunks of {CHUNK:,} through `collection.upsert` on a durable `CollectionStore` under /tmp "
            "(ext4). Figures at 100k were taken on the way up, in the same run.",
            f"**Ingest**: {rate:,.0f} items/s overall; HNSW add is "
            f"{100 * hnsw_seconds[0] / stages['upsert']:.0f}% of the upsert time "
            f"(generation {stages['generate']:.0f} s and exact ground truth {stages['truth']:.0f} s "
            "not included).",
            markdown_table(["items", "items/s", "HNSW add share", "non-HNSW s"], ingest_rows),
            f"**Memory** (target ≤ {TARGET_BYTES_PER_ITEM:,} B/item resident): {per_item:,.0f} B/item "
            f"in a fresh process after restart ({verdict} target). Mapped = size in the address "
            "space, resident = pages in RSS (/proc/self/smaps). The vector file is written with "
            "pwrite and read through the mapping only by reranks, so it is resident only where "
            "searches touched it; the last column counts all of it (what the page cache should hold "
            "to rerank without disk reads). SQLite's page cache is bounded at 16 MiB per connection "
            "(writer + one reader per searching thread). 'other' = RSS delta minus the rest "
            "(Python objects, allocator, SQLite cache, numpy buffers).",
            markdown_table(MEMORY_HEADER, memory),
            "**Restart** (page cache warm: the files were just written):",
            markdown_table(["step", "seconds", "note"], restart_rows),
            "**Search**: unfiltered = 1,000 queries in one `search_many` (best of 2), recall on 200 of "
            f"them; filtered = batches of {FILTER_BATCH} of the 200 until done or {FILTER_BUDGET_S:.0f} s. "
            "Exact truth is the brute-force top-10 over the original float32 vectors (so f16 storage "
            "counts against recall).",
            markdown_table(SEARCH_HEADER, search_rows(searches)),
        ]
    )
    write_section(
        "million" if N == 1_000_000 else f"million-n{N}",
        f"The {N:,}-item collection (`test_million.py`)",
        body,
        started=started,
        load_before=load_before,
        raw=figures,
        document=N == 1_000_000,
    )
    return figures


@pytest.mark.timeout(3 * 3600)
def test_million() -> None:
    base = Path(os.environ.get("ONESPACE_BENCH_DIR", tempfile.gettempdir()))
    data_dir = Path(tempfile.mkdtemp(prefix="onespace-million-", dir=base))
    try:
        figures = run(data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    assert all(s["full"] for s in figures["search"]), "a search returned fewer than k results"
    assert all(s["recall"] > 0.5 for s in figures["search"])


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "--reopen":
        queries = Path(argv[2]) if len(argv) >= 3 else None
        print(json.dumps(reopen(Path(argv[1]), queries)))
        return
    test_million()


if __name__ == "__main__":
    main(sys.argv[1:])
