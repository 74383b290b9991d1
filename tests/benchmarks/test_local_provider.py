"""The local provider's text throughput: the featurizer in process, and through the real gateway.

Side by side in one run, `N` distinct synthetic texts (8-40 words drawn from a Zipf vocabulary of
5,000 made-up words) at 1024 dimensions, each mode the median of 3 runs on fresh texts:

(a) the featurizer called once per text in process (`embed_content` in a loop: what a user would
    write);
(b) the batched featurizer in process (`embed_many` over chunks of `MAX_BATCH`, the most the
    provider puts in one batch);
(c) unary `Embed` RPCs carrying 1 text each, from 64 concurrent callers, through a real gateway on
    127.0.0.1 with the local provider;
(d) content items through one `AsyncClient.ingest` stream (`IngestPacked`; 64 in flight, the
    client's and server's default window) into a 1024-d collection with default settings (1024-d
    f16 HNSW, f16 stored rows, fsync batch): embedding plus storage;
(c0), (d0) the same loads through a gateway whose provider does no work (it looks up the vector
    the featurizer made for each text before the run): the gateway's own ceiling on this
    machine, which bounds (c) and (d);
(c1), (d1) (c) and (d) with the featurizer on threads of the gateway's process
    (`--local-executor thread`) instead of its worker processes (the server's default);
(d2) (d) over 2 streams (`AsyncClient.ingest(..., streams=2)`: items spread by id, a window each);
(e) the HNSW add every stored item costs, alone: (b)'s vectors added to a fresh index with (d)'s
    settings in process, one thread (as the gateway adds). With (b), it bounds (d): featurising
    and indexing alone take (b)'s plus (e)'s CPU per item, so no gateway on these cores stores
    more than `cores / (both)` items a second; with (d0)'s CPU per item (this gateway's whole
    cost of storing one) in place of (e)'s, the bound for this gateway, had its work no gaps.

The gateway runs in this process; the gRPC load comes from a child process
(`python -m tests.benchmarks.test_local_provider client ...`), so this process's CPU time
(`time.process_time`, all its threads) plus its worker processes' over a run is the gateway's own
CPU per item, and the client's is reported apart. The gateway acks a stored item before its HNSW
add (searches scan the rows not yet indexed), so an ingest run ends once its collection's index
has caught up, and its CPU includes those adds. Both share the machine's cores. The hashed-token
tables are warm in every mode (as in a running server): the texts of every run are new, their
words mostly not.

Figures: items/s, ratio to (b), CPU ms per item, and for (c)/(d) the featurizer batches the local
provider ran (calls coalesced while a batch was running). Correctness only is asserted: (a) and
(b) give identical vectors bit for bit, every RPC returns one 1024-d vector, a sample of gateway
vectors equals the in-process ones (after the gateway's own renormalisation, to float32
rounding), every ingested item is stored.

Results are written into docs/benchmarks.md (section `local-provider`) and
docs/benchmarks/local-provider.json by the run itself; `ONESPACE_BENCH_LOCAL_N` scales the run
(a non-default N only writes the JSON unless ONESPACE_BENCH_WRITE_DOC=1).

Run: `.venv/bin/pytest tests/benchmarks/test_local_provider.py -s` (about 3 min on 2 cores).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from onespace.content import Content, EmbeddingType, Modality
from onespace.index import CollectionConfig
from onespace.index.hnsw import HnswIndex
from onespace.models import LOCAL_MODEL, ModelSpec
from onespace.providers.base import EmbedInput, Provider, ProviderEmbedding, ProviderResult
from onespace.providers.local import embed_content, embed_many
from onespace.providers.local.embed import warm_up
from onespace.providers.local.provider import MAX_BATCH, LocalProvider, default_workers
from onespace_client import AsyncClient
from onespace_client.async_client import DEFAULT_MAX_IN_FLIGHT
from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, embed_pb2, embed_pb2_grpc
from tests.benchmarks._common import print_table, process_stat
from tests.benchmarks._report import ROOT, load_average, markdown_table, write_section
from tests.harness import Running, running_gateway

pytestmark = pytest.mark.benchmark

DEFAULT_N = 4000
N = int(os.environ.get("ONESPACE_BENCH_LOCAL_N", str(DEFAULT_N)))
REPEATS = 3
DIMENSION = 1024
CALLERS = 64
IN_FLIGHT = DEFAULT_MAX_IN_FLIGHT  # the client's, equal to the server's default stream_window
STREAMS = 2  # (d2)
SAMPLE = 32  # gateway vectors compared with in-process ones, per run
VOCABULARY = 5000
KEY = "local-provider"
_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


def corpus(n: int, seed: int) -> list[str]:
    """`n` distinct texts of 8-40 words; every seed gives new texts over the same vocabulary."""
    rng = np.random.default_rng(12345)
    syllables = ["ka", "to", "ri", "men", "sa", "lo", "ve", "dun", "pi", "tra", "el", "on", "qu", "is", "ar"]
    vocabulary = ["".join(rng.choice(syllables, size=int(rng.integers(1, 4)))) for _ in range(VOCABULARY)]
    zipf = 1.0 / np.arange(1, VOCABULARY + 1)
    rng = np.random.default_rng(seed)
    words = rng.choice(VOCABULARY, size=n * 40, p=zipf / zipf.sum())
    lengths = rng.integers(8, 41, size=n)
    return [
        f"document {seed}-{i}: " + " ".join(vocabulary[w] for w in words[i * 40 : i * 40 + k]) + "."
        for i, k in enumerate(lengths)
    ]


def _contents(texts: list[str]) -> list[Content]:
    return [Content(Modality.TEXT, text=t) for t in texts]


class PrecomputedProvider(Provider):
    """Does no work: each text's vector is looked up, made by the featurizer before the run, so
    storage and the index get the vectors the local provider gives (the gateway's own ceiling).
    A text it was not given (the client's warm-up) gets one constant unit vector.

    Constant vectors for every text, as this provider once returned, made the ceiling a
    measure of usearch linking thousands of identical vectors: an add cost grew with every run
    and outlasted it."""

    name = "precomputed"

    def __init__(self, texts: Sequence[str]) -> None:
        contents = _contents(texts)
        vectors = [
            r.embeddings[0].vector
            for s in range(0, len(contents), MAX_BATCH)
            for r in embed_many(contents[s : s + MAX_BATCH], DIMENSION)
        ]
        self._vectors = dict(zip(texts, vectors, strict=True))
        self._other = np.full(DIMENSION, DIMENSION**-0.5, dtype=np.float32)

    def models(self) -> Sequence[ModelSpec]:
        return (LOCAL_MODEL,)

    async def embed(
        self,
        inputs: Sequence[EmbedInput],
        *,
        deadline: float | None = None,
        interactive: bool = False,
    ) -> list[ProviderResult]:
        out = []
        for item in inputs:
            vector = self._vectors.get(item.content.text or "", self._other)
            out.append(ProviderResult((ProviderEmbedding(vector, EmbeddingType.TEXT),)))
        return out


# ------------------------------------------------------------------ the load, in a child process


async def _client(mode: str, target: str, n: int, seed: int, collection: str) -> dict[str, Any]:
    texts = corpus(n, seed)
    options = common_pb2.EmbedOptions(dimension=DIMENSION, vector_format=common_pb2.VECTOR_FORMAT_F32)
    async with grpc.aio.insecure_channel(target, options=_OPTIONS) as channel:
        stub = embed_pb2_grpc.EmbedServiceStub(channel)

        async def embed(text: str) -> embed_pb2.EmbedResponse:
            request = embed_pb2.EmbedRequest(items=[common_pb2.Content(text=text)], options=options)
            reply: embed_pb2.EmbedResponse = await stub.Embed(request)
            return reply

        # Warm the connection and the server's code paths with texts outside the measured set.
        await asyncio.gather(*(embed(f"warm-up text {seed} {i}") for i in range(CALLERS)))
        print("ready", flush=True)
        sys.stdin.readline()  # "go"
        start, cpu = time.perf_counter(), time.process_time()
        sample: list[list[float]] = []
        ok = 0
        if mode == "unary":
            replies: list[embed_pb2.EmbedResponse | None] = [None] * n

            async def caller(first: int) -> None:
                for i in range(first, n, CALLERS):
                    replies[i] = await embed(texts[i])

            await asyncio.gather(*(caller(c) for c in range(CALLERS)))
            seconds = time.perf_counter() - start
            for reply in replies:
                assert reply is not None
                ok += len(reply.results) == 1 and len(reply.results[0].embeddings[0].f32) == 4 * DIMENSION
            sample = [
                np.frombuffer(r.results[0].embeddings[0].f32, dtype="<f4").tolist()
                for r in replies[:SAMPLE]
                if r is not None
            ]
        else:
            items = [
                data_pb2.Item(id=f"t{i}", content=common_pb2.Content(text=t)) for i, t in enumerate(texts)
            ]
            streams = STREAMS if mode == "ingest-streams" else 1
            async with AsyncClient(target) as client:
                async for ack in client.ingest(collection, items, max_in_flight=IN_FLIGHT, streams=streams):
                    ok += ack.HasField("stored")
            seconds = time.perf_counter() - start
        return {"ok": ok, "seconds": seconds, "cpu_seconds": time.process_time() - cpu, "sample": sample}


def client_main(argv: list[str]) -> None:
    mode, target, n, seed, collection, out = argv
    result = asyncio.run(_client(mode, target, int(n), int(seed), collection))
    Path(out).write_text(json.dumps(result), "utf-8")
    print("done", flush=True)
    sys.stdin.readline()  # until the gateway's CPU is read: an ended, reaped client would count in it


# ------------------------------------------------------------------ measurements


@dataclass
class Run:
    mode: str
    items: int
    seconds: float
    cpu_seconds: float  # this process (the featurizer), or the gateway: its threads and worker processes
    client_cpu_seconds: float = 0.0
    batches: int = 0  # featurizer batches the local provider ran

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1e3 * self.cpu_seconds / self.items


def _children_cpu(exclude: int) -> float:
    """CPU seconds of this process's child processes but `exclude` (the client, which lives until
    the run's CPU is read): the local provider's worker processes and their resource tracker,
    and the collections' background checkpoint processes. Those still running (or not yet
    reaped) are read from /proc, those ended and reaped from getrusage, so a checkpoint process
    that starts or ends during a run is counted for the part of its work the run saw (reading
    only the live ones once counted an ended one's whole CPU against the next run: a run came
    out at 0.07 ms an item)."""
    me, total = os.getpid(), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        pid = int(stat.parent.name)
        try:
            parent, cpu = process_stat(pid)
        except OSError:  # it ended meanwhile
            continue
        if parent == me and pid != exclude:
            total += cpu
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + reaped.ru_utime + reaped.ru_stime


def _index_add(vectors: list[np.ndarray]) -> Run:
    """(e): the gateway's own HNSW add (`HnswIndex.add_stored`, one thread) of `vectors` into a
    fresh index configured as (d)'s collection."""
    index = HnswIndex(CollectionConfig(name="texts", model=LOCAL_MODEL.id, dimension=DIMENSION).validated())
    stored = np.stack(vectors).astype(np.float16)  # (d) stores f16 rows and indexes those
    keys = np.arange(len(vectors), dtype=np.uint64)
    start, cpu = time.perf_counter(), time.process_time()
    index.add_stored(keys, stored)
    run = Run("index-add", len(vectors), time.perf_counter() - start, time.process_time() - cpu)
    assert len(index) == len(vectors)
    return run


def _in_process(mode: str, texts: list[str]) -> tuple[Run, list[np.ndarray]]:
    contents = _contents(texts)
    start, cpu = time.perf_counter(), time.process_time()
    if mode == "per-item":
        vectors = [embed_content(c, DIMENSION).embeddings[0].vector for c in contents]
    else:
        vectors = [
            r.embeddings[0].vector
            for s in range(0, len(contents), MAX_BATCH)
            for r in embed_many(contents[s : s + MAX_BATCH], DIMENSION)
        ]
    run = Run(mode, len(texts), time.perf_counter() - start, time.process_time() - cpu)
    return run, vectors


async def _through_gateway(
    gw: Running, scratch: Path, mode: str, n: int, seed: int, *, collection: str = "-", check: bool = True
) -> Run:
    load = "unary" if mode.startswith("unary") else "ingest-streams" if mode == "ingest-streams" else "ingest"
    out = scratch / f"client-{mode}-{seed}.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.benchmarks.test_local_provider",
        "client",
        load,
        gw.target,
        str(n),
        str(seed),
        collection,
        str(out),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    provider = gw.app.gateway.provider
    batches = provider.batches if isinstance(provider, LocalProvider) else 0
    try:
        ready = await asyncio.wait_for(proc.stdout.readline(), 120)
        assert ready.strip() == b"ready", ready
        cpu = time.process_time() + _children_cpu(proc.pid)
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        done = await asyncio.wait_for(proc.stdout.readline(), 600)
        if load != "unary":  # acks come before the HNSW adds: count them, and keep them in this run
            stored = gw.app.gateway.store.get(collection)
            while await asyncio.to_thread(stored.index_pending):
                pass
        cpu_seconds = time.process_time() + _children_cpu(proc.pid) - cpu
        assert done.strip() == b"done", done
    finally:
        proc.stdin.close()  # the client ends
        await proc.wait()
    assert proc.returncode == 0
    result = json.loads(out.read_text("utf-8"))
    assert result["ok"] == n, f"{mode}: {result['ok']} of {n} items came back right"
    if load == "unary" and check:  # the gateway's vectors are the featurizer's (renormalised once more)
        texts = corpus(n, seed)[:SAMPLE]
        expected = np.stack([r.embeddings[0].vector for r in embed_many(_contents(texts), DIMENSION)])
        np.testing.assert_allclose(np.array(result["sample"], dtype=np.float32), expected, rtol=0, atol=1e-6)
    if load != "unary":
        assert len(gw.app.gateway.store.get(collection)) == n
    batches = provider.batches - batches if isinstance(provider, LocalProvider) else 0
    return Run(mode, n, result["seconds"], cpu_seconds, result["cpu_seconds"], batches)


async def _create(gw: Running, name: str) -> None:
    config = collections_pb2.CollectionConfig(name=name, dimension=DIMENSION)
    await gw.collections.CreateCollection(collections_pb2.CreateCollectionRequest(config=config))


def _median(runs: list[Run]) -> Run:
    """The run with the median rate (its own CPU and batch figures stay consistent with it)."""
    rate = statistics.median(r.rate for r in runs)
    return min(runs, key=lambda r: abs(r.rate - rate))


MODES = {
    "per-item": "(a) featurizer in process, one `embed_content` per text",
    "batched": f"(b) featurizer in process, `embed_many` of {MAX_BATCH} texts",
    "unary": f"(c) gateway, local provider: unary `Embed` of 1 text, {CALLERS} concurrent callers",
    "ingest": f"(d) gateway, local provider: one `IngestPacked` stream of texts, {IN_FLIGHT} in flight",
    "unary-ceiling": "(c0) as (c), provider doing no work (gateway ceiling)",
    "ingest-ceiling": "(d0) as (d), provider doing no work (gateway ceiling)",
    "unary-thread": "(c1) as (c), the featurizer on a thread of the gateway's process (the default before)",
    "ingest-thread": "(d1) as (d), the featurizer on a thread of the gateway's process (the default before)",
    "ingest-streams": f"(d2) as (d) over {STREAMS} streams (`ingest(..., streams={STREAMS})`), a window each",
    "index-add": "(e) HNSW add alone: (b)'s vectors into a fresh index as (d)'s, in process, one thread",
}


SEEDS = {"unary": 100, "ingest": 200, "unary-ceiling": 300, "ingest-ceiling": 400}  # + the run


async def _gateway_runs(
    data_dir: Path, mode: str, provider: Provider | None, *, executor: str = "process"
) -> list[Run]:
    """The local provider's default worker count (not the test harness's 2), on `executor`."""
    runs = []
    base = SEEDS.get(mode, SEEDS[mode.split("-")[0]])  # (c1)/(d1)/(d2) take (c)/(d)'s texts
    async with running_gateway(data_dir / mode, provider, local_workers=0, local_executor=executor) as gw:
        for r in range(REPEATS):
            if mode.startswith("ingest"):
                name = f"texts{r}"
                await _create(gw, name)
                run = await _through_gateway(gw, data_dir, mode, N, base + r, collection=name)
            else:
                run = await _through_gateway(gw, data_dir, mode, N, base + r, check=provider is None)
            runs.append(run)
            print(f"[{time.strftime('%H:%M:%S')}] {mode}: {run.rate:,.0f} items/s", flush=True)
    return runs


async def run(data_dir: Path) -> dict[str, Any]:
    started = dt.datetime.now().astimezone()
    load_before = load_average()
    warm_up()
    embed_many(_contents(corpus(1000, seed=999)), DIMENSION)  # warm the token tables, as a server's
    runs: dict[str, list[Run]] = {mode: [] for mode in MODES}
    for r in range(REPEATS):
        texts = corpus(N, seed=r)
        one, per_item = _in_process("per-item", texts)
        many, batched = _in_process("batched", texts)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(per_item, batched, strict=True))
        runs["per-item"].append(one)
        runs["batched"].append(many)
        runs["index-add"].append(_index_add(batched))
    runs["unary"] = await _gateway_runs(data_dir, "unary", None)
    runs["ingest"] = await _gateway_runs(data_dir, "ingest", None)
    for mode in ("unary-ceiling", "ingest-ceiling"):
        texts = [t for r in range(REPEATS) for t in corpus(N, SEEDS[mode] + r)]
        runs[mode] = await _gateway_runs(data_dir, mode, PrecomputedProvider(texts))
    runs["unary-thread"] = await _gateway_runs(data_dir, "unary-thread", None, executor="thread")
    runs["ingest-thread"] = await _gateway_runs(data_dir, "ingest-thread", None, executor="thread")
    runs["ingest-streams"] = await _gateway_runs(data_dir, "ingest-streams", None)

    medians = {mode: _median(rs) for mode, rs in runs.items()}
    batched_rate = medians["batched"].rate
    header = [
        "mode",
        "items/s (median of 3)",
        "all runs, items/s",
        "x (b)",
        "CPU ms/item, gateway",
        "client CPU ms/item",
        "featurizer batches (mean texts)",
    ]
    rows: list[list[object]] = []
    for mode, label in MODES.items():
        m = medians[mode]
        gateway = mode not in ("per-item", "batched", "index-add")
        local = mode in ("unary", "ingest", "unary-thread", "ingest-thread", "ingest-streams")
        rows.append(
            [
                label,
                m.rate,
                ", ".join(f"{r.rate:,.0f}" for r in runs[mode]),
                f"{m.rate / batched_rate:.2f}",
                f"{m.cpu_ms:.3f}",
                f"{1e3 * m.client_cpu_seconds / m.items:.3f}" if gateway else "-",
                f"{m.batches:,} ({m.items / max(m.batches, 1):.1f})" if local else "-",
            ]
        )
    title = f"local provider, {N:,} texts per run at {DIMENSION}-d; x (b) = items/s / batched in-process"
    print_table(title, header, rows)
    ratios = {mode: medians[mode].rate / batched_rate for mode in MODES}
    cores = os.cpu_count() or 1
    needed = medians["batched"].cpu_ms + medians["index-add"].cpu_ms
    bound = 1e3 * cores / needed
    own = medians["ingest-ceiling"].cpu_ms  # this gateway's whole cost of storing an item: (d0)
    this_bound = 1e3 * cores / (medians["batched"].cpu_ms + own)
    target_cost = 1e3 * cores / (0.8 * batched_rate) - medians["batched"].cpu_ms
    bound_line = (
        f"Bounds for (d): featurising and indexing alone take {needed:.3f} ms of CPU an item ((b) + "
        f"(e)), so no gateway on these {cores} cores stores more than {bound:,.0f} items/s "
        f"(x{bound / batched_rate:.2f} of (b)); with this gateway's own {own:.3f} ms an item ((d0)) "
        f"instead of (e)'s, {this_bound:,.0f} items/s (x{this_bound / batched_rate:.2f}), had its "
        f"work no gaps. (d) carried x{ratios['ingest']:.2f}, (d2) x{ratios['ingest-streams']:.2f}. "
        f"x0.80 would need the gateway's own cost at {target_cost:.3f} ms an item at most."
    )
    print(bound_line)
    body = "\n\n".join(
        [
            f"{N:,} distinct synthetic texts per run (8-40 words from a Zipf vocabulary of {VOCABULARY:,} "
            f"made-up words), {DIMENSION}-d, median of {REPEATS} runs on fresh texts. (a) and (b) in this "
            "process; (c) and (d) through a real gateway in this process on 127.0.0.1 (local provider "
            f"with the server's defaults: worker processes, one fewer than the cores: {default_workers()} "
            "here; the test harness's settings otherwise) with the gRPC load "
            "from a child process, so 'CPU ms/item, gateway' is the gateway's own CPU (all its "
            "threads, and its worker processes: the featurizer), the client's apart; all share the "
            "cores. (d) stores into "
            "a 1024-d collection with default settings (1024-d f16 HNSW, f16 rows, fsync batch), so "
            "it includes storage; its CPU includes the HNSW adds, which follow the acks (the run "
            "waits for them before it ends). (c0) and (d0) repeat (c) and (d) with a provider that "
            "does no work (it looks up the featurizer's vector for each text, made before the run): "
            "what the gateway itself sustains here, an upper bound for (c) and (d). (c1) and (d1) "
            f"repeat (c) and (d) on the same texts with {default_workers()} featurizer thread(s) in the "
            "gateway's process instead (`--local-executor thread`, the default before). (d2) repeats (d) "
            f"over {STREAMS} streams, the items spread by id, each with its own window. 'Featurizer "
            "batches': the local provider's worker tasks (concurrent calls coalesced while a batch "
            "runs). The hashed-token tables are warm in every mode, as in a running server. Checked: "
            "(a) = (b) bit for bit; a sample of (c)'s vectors = in-process vectors to float32 rounding "
            "(the gateway renormalises); every (d) item stored.",
            markdown_table(header, rows),
            bound_line,
        ]
    )
    write_section(
        KEY if N == DEFAULT_N else f"{KEY}-{N}",
        "Local provider throughput (`test_local_provider.py`)",
        body,
        started=started,
        load_before=load_before,
        raw={
            "n": N,
            "dimension": DIMENSION,
            "runs": {
                mode: [{**asdict(r), "rate": r.rate, "cpu_ms": r.cpu_ms} for r in rs]
                for mode, rs in runs.items()
            },
            "ratio_to_batched": ratios,
            "ingest_bound": {"cpu_ms_per_item": needed, "cores": cores, "items_per_second": bound},
            "this_gateway_bound": {"cpu_ms_per_item": own, "items_per_second": this_bound},
        },
        document=N == DEFAULT_N,
    )
    return {"runs": runs, "ratios": ratios}


@pytest.mark.timeout(1800)
async def test_local_provider_throughput(tmp_path: Path) -> None:
    figures = await run(tmp_path)
    assert all(len(rs) == REPEATS for rs in figures["runs"].values())


def main(argv: list[str]) -> None:
    if argv[:1] == ["client"]:
        client_main(argv[1:])
        return
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp)))


if __name__ == "__main__":
    main(sys.argv[1:])
