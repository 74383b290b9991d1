"""The gateway's own cost, bursts and overload: a real `onespace serve` (local provider) in a
subprocess, this process its gRPC client on one channel, side by side in one run.

1. Overhead: the Info RPC (no work: the transport floor) against unary Embed RPCs whose text is in
   the cache (no provider work), both from 64 concurrent callers; one-item unary Embed calls made
   one after another against one EmbedStream carrying the same cached items one per message (and
   4 streams), and against the client's `embed_stream`, which packs the items that are ready
   into EmbedStreamPacked frames; unary Embed RPCs of 64 cached texts each (one group wait in the
   gateway, no task per text). The Info RPC once more over a pool of 4 channels, each its own TCP
   connection: whether one HTTP/2 connection limits a client here (a reason to pool channels).
2. Burst: 5,000 unary RPCs opened at once on one channel: how many fail (grpc-core's default
   pending-call limits cancelled ~40% of them before onespace raised them).
3. Overload: a gateway with `--max-in-flight-rpcs 64` in front of the Bedrock emulator (16 calls
   in flight, at 50 ms a call, then at 200 ms), offered uncached Embed RPCs open-loop at 5x the
   rate it serves closed-loop with 64 callers: how fast refusals reach the client, and the
   admitted RPCs' latency against that closed-loop load. At 50 ms, 5x saturates the 2 cores
   (client, gateway and emulator share them); at 200 ms it does not.
Medians of `REPEATS`; only correctness and counts are asserted, never time.

Run: `.venv/bin/pytest tests/benchmarks/test_gateway_overhead.py -s` (about 2 min on 2 cores).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from onespace_client import AsyncClient
from onespace_client.v1 import common_pb2, embed_pb2, embed_pb2_grpc, info_pb2, info_pb2_grpc
from tests.benchmarks._common import closed_loop, print_table
from tests.benchmarks._report import load_average, markdown_table, write_section
from tests.reliability.serve import Server

CALLERS = 64
CALLS = 3_000
SEQUENTIAL = 500
PER_REQUEST = 64  # texts in each request of the multi-item unary Embed run
STREAM_ITEMS = 5_000
BURST = 5_000
OVERLOAD_SECONDS = 3.0
POOL = 4  # channels of the pooled Info run
# Emulator latency of the two overload runs: 50 ms saturates the 2 cores at 5x, 200 ms does not.
OVERLOAD_LATENCIES_MS = (50, 200)
REPEATS = 3
DIMENSION = 256  # smallest local dimension: the provider's work is not what is measured here
TEXTS = [f"cached text number {i}" for i in range(200)]


@contextlib.contextmanager
def _emulator(*args: str) -> Iterator[str]:
    """`onespace emulate-bedrock` on a free port; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "onespace.cli", "emulate-bedrock", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        found = re.search(r"on (http://[\d.:]+)", process.stdout.readline())
        assert found, "the emulator did not start"
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(10)


def _embed_request(text: str, dimension: int = DIMENSION) -> embed_pb2.EmbedRequest:
    options = common_pb2.EmbedOptions(dimension=dimension, vector_format=common_pb2.VECTOR_FORMAT_F32)
    return embed_pb2.EmbedRequest(items=[common_pb2.Content(text=text)], options=options)


async def _rate(call: Callable[[int], Awaitable[Any]], calls: int, callers: int) -> tuple[float, list[float]]:
    seconds, latencies, _ = await closed_loop(call, calls, callers)
    return calls / seconds, latencies


def _p(latencies: list[float], q: float) -> float:
    return 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * q))] if latencies else float("nan")


async def overhead(target: str) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {}
    async with grpc.aio.insecure_channel(target) as channel, AsyncClient(target) as client:
        info, embed = info_pb2_grpc.InfoServiceStub(channel), embed_pb2_grpc.EmbedServiceStub(channel)
        requests = [_embed_request(t) for t in TEXTS]
        for r in requests:  # warm the cache
            await embed.Embed(r)
        info_request = info_pb2.InfoRequest()
        lists = [
            embed_pb2.EmbedRequest(
                items=[requests[(j + k) % len(requests)].items[0] for k in range(PER_REQUEST)],
                options=requests[0].options,
            )
            for j in range(len(requests))
        ]

        async def stream_rate(streams: int) -> float:
            per = STREAM_ITEMS // streams

            async def one(s: int) -> int:
                async def items() -> Any:
                    for i in range(per):
                        yield embed_pb2.EmbedStreamRequest(
                            request_id=str(i),
                            content=requests[(s + i) % len(requests)].items[0],
                            options=requests[0].options,
                        )

                got = 0
                async for response in embed.EmbedStream(items()):
                    assert response.WhichOneof("outcome") == "result" and response.result.cached
                    got += 1
                return got

            started = time.perf_counter()
            got = sum(await asyncio.gather(*(one(s) for s in range(streams))))
            assert got == per * streams
            return got / (time.perf_counter() - started)

        async def packed_rate() -> float:
            """The client's `embed_stream` (EmbedStreamPacked): what a caller gets by default."""
            texts = [requests[i % len(requests)].items[0].text for i in range(STREAM_ITEMS)]
            started = time.perf_counter()
            got = 0
            async for response in client.embed_stream(texts, dimension=DIMENSION):
                assert response.WhichOneof("outcome") == "result" and response.result.cached
                got += 1
            assert got == STREAM_ITEMS
            return got / (time.perf_counter() - started)

        # A pool of connections, as a client would open if one HTTP/2 connection were the limit:
        # distinct channel arguments give each channel its own subchannel, so its own TCP connection.
        pool = [grpc.aio.insecure_channel(target, options=[("grpc.channel_id", n)]) for n in range(POOL)]
        pooled = [info_pb2_grpc.InfoServiceStub(c) for c in pool]
        for _ in range(REPEATS):
            rate, _ = await _rate(lambda i: info.Info(info_request), CALLS, CALLERS)
            runs.setdefault("info", []).append(rate)
            rate, _ = await _rate(lambda i: pooled[i % POOL].Info(info_request), CALLS, CALLERS)
            runs.setdefault("info_pool", []).append(rate)
            rate, lat = await _rate(lambda i: embed.Embed(requests[i % len(requests)]), CALLS, CALLERS)
            runs.setdefault("embed_cached", []).append(rate)
            runs.setdefault("embed_cached_p50_ms", []).append(_p(lat, 0.5))
            rate, lat = await _rate(lambda i: embed.Embed(lists[i % len(lists)]), CALLS // 16, CALLERS // 8)
            runs.setdefault("embed_lists", []).append(rate * PER_REQUEST)
            runs.setdefault("embed_lists_p50_ms", []).append(_p(lat, 0.5))
            rate, lat = await _rate(lambda i: embed.Embed(requests[i % len(requests)]), SEQUENTIAL, 1)
            runs.setdefault("embed_sequential", []).append(rate)
            runs.setdefault("embed_sequential_p50_ms", []).append(_p(lat, 0.5))
            runs.setdefault("stream_1", []).append(await stream_rate(1))
            runs.setdefault("stream_4", []).append(await stream_rate(4))
            runs.setdefault("packed_1", []).append(await packed_rate())
        for c in pool:
            await c.close()
    return runs


async def burst(target: str) -> dict[str, float]:
    async with grpc.aio.insecure_channel(target) as channel:
        info = info_pb2_grpc.InfoServiceStub(channel)
        await info.Info(info_pb2.InfoRequest())
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(info.Info(info_pb2.InfoRequest(), timeout=120) for _ in range(BURST)), return_exceptions=True
        )
        seconds = time.perf_counter() - started
    failed = [o for o in outcomes if not isinstance(o, info_pb2.InfoResponse)]
    codes = sorted({o.code().name for o in failed if isinstance(o, grpc.aio.AioRpcError)})
    return {"rpcs": BURST, "failed": len(failed), "seconds": seconds, "codes": ", ".join(codes) or "-"}  # type: ignore[dict-item]


async def overload(target: str) -> dict[str, float]:
    counter = iter(range(10**9))

    def fresh() -> embed_pb2.EmbedRequest:  # never cached: real provider work each time
        return _embed_request(f"uncached text {next(counter)} for the overload run", 1024)

    async with grpc.aio.insecure_channel(target) as channel:
        embed = embed_pb2_grpc.EmbedServiceStub(channel)
        capacity, loaded = await _rate(lambda i: embed.Embed(fresh()), 600, CALLERS)
        rate = 5 * capacity
        admitted: list[float] = []
        refused: list[float] = []
        other: list[str] = []

        async def one() -> None:
            started = time.perf_counter()
            try:
                await embed.Embed(fresh(), timeout=30)
                admitted.append(time.perf_counter() - started)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    refused.append(time.perf_counter() - started)
                else:
                    other.append(error.code().name)

        tasks = []
        started = time.perf_counter()
        sent = 0
        while (elapsed := time.perf_counter() - started) < OVERLOAD_SECONDS:
            due = int(elapsed * rate)
            while sent < due:
                tasks.append(asyncio.ensure_future(one()))
                sent += 1
            await asyncio.sleep(0.001)
        await asyncio.gather(*tasks)
    admitted.sort()
    refused.sort()
    return {
        "capacity_rps": capacity,
        "loaded_p99_ms": _p(loaded, 0.99),
        "offered_rps": rate,
        "sent": sent,
        "admitted": len(admitted),
        "refused": len(refused),
        "other_failures": len(other),
        "admitted_p99_ms": _p(admitted, 0.99),
        "refused_p50_ms": _p(refused, 0.5),
        "refused_p99_ms": _p(refused, 0.99),
    }


def run(data_dir: Path) -> None:
    started = dt.datetime.now().astimezone()
    load = load_average()
    server = Server(data_dir / "a", "--log-level", "WARNING")
    try:
        runs = asyncio.run(overhead(f"127.0.0.1:{server.port}"))
        bursts = asyncio.run(burst(f"127.0.0.1:{server.port}"))
    finally:
        server.terminate()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "emulator")  # the emulator takes any credentials
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "emulator")
    overloads: dict[int, dict[str, float]] = {}
    for latency_ms in OVERLOAD_LATENCIES_MS:
        with _emulator("--latency-ms", str(latency_ms)) as url:
            server = Server(
                data_dir / f"b{latency_ms}",
                *("--log-level", "WARNING", "--provider", "bedrock", "--bedrock-endpoint-url", url),
                *("--concurrency-initial", "16", "--concurrency-max", "16", "--max-in-flight-rpcs", "64"),
            )
            try:
                overloads[latency_ms] = asyncio.run(overload(f"127.0.0.1:{server.port}"))
            finally:
                server.terminate()
    assert bursts["failed"] == 0, bursts
    for over in overloads.values():
        assert over["other_failures"] == 0 and over["refused"] > 0, over

    m = {key: statistics.median(values) for key, values in runs.items()}
    rows = [
        ["Info RPC (transport floor)", f"{CALLERS} callers", m["info"], 1.0, ""],
        [
            f"Info RPC over a pool of {POOL} channels (a TCP connection each)",
            f"{CALLERS} callers",
            m["info_pool"],
            m["info_pool"] / m["info"],
            "",
        ],
        [
            "Embed RPC, 1 cached text",
            f"{CALLERS} callers",
            m["embed_cached"],
            m["embed_cached"] / m["info"],
            f"p50 {m['embed_cached_p50_ms']:.1f} ms",
        ],
        [
            "Embed RPC, 1 cached text, one call after another",
            "1 caller",
            m["embed_sequential"],
            m["embed_sequential"] / m["info"],
            f"p50 {m['embed_sequential_p50_ms']:.2f} ms",
        ],
        [
            f"Embed RPC, {PER_REQUEST} cached texts per request",
            f"{CALLERS // 8} callers",
            m["embed_lists"],
            m["embed_lists"] / m["info"],
            f"p50 {m['embed_lists_p50_ms']:.1f} ms a request",
        ],
        ["EmbedStream, cached texts", "1 stream (window 64)", m["stream_1"], m["stream_1"] / m["info"], ""],
        ["EmbedStream, cached texts", "4 streams", m["stream_4"], m["stream_4"] / m["info"], ""],
        [
            "EmbedStreamPacked through the client's `embed_stream`, cached texts",
            "1 stream (window 64, frames of up to 64)",
            m["packed_1"],
            m["packed_1"] / m["info"],
            "",
        ],
    ]
    header = ["path", "load", "items/s", "x Info", "latency"]
    print_table("Gateway overhead (local provider, cache hits)", header, rows)
    targets = [
        ["cached unary Embed / Info (64 callers)", m["embed_cached"] / m["info"], "≥ 0.70"],
        [
            "1 stream (the client's, packed) / sequential one-item unary Embed",
            m["packed_1"] / m["embed_sequential"],
            "≥ 10",
        ],
        [
            "1 stream (one item per message) / sequential one-item unary Embed",
            m["stream_1"] / m["embed_sequential"],
            "",
        ],
        [
            "1 stream (the client's, packed) / 64 concurrent one-item unary Embed",
            m["packed_1"] / m["embed_cached"],
            "",
        ],
        [f"burst of {BURST} unary RPCs on one channel: failed", bursts["failed"], "0"],
    ]
    for latency_ms, over in overloads.items():
        targets += [
            [f"overload 5x, {latency_ms} ms calls: refusal latency p99 (ms)", over["refused_p99_ms"], "< 50"],
            [
                f"overload 5x, {latency_ms} ms calls: admitted p99 / p99 at capacity (64 callers)",
                over["admitted_p99_ms"] / over["loaded_p99_ms"],
                "≤ 2",
            ],
        ]
    print_table("Targets", ["ratio", "measured", "issue target"], targets)
    overload_header = ["figure", *(f"{latency_ms} ms calls" for latency_ms in overloads)]
    overload_rows = [[k, *(over[k] for over in overloads.values())] for k in next(iter(overloads.values()))]
    print_table("Overload runs (max_in_flight_rpcs 64)", overload_header, overload_rows)
    body = (
        f"`onespace serve` (local provider, {DIMENSION}-d) in a subprocess, this process its client on "
        f"one channel; medians of {REPEATS}. Cached texts isolate the gateway's own cost. The burst opens "
        f"{BURST:,} Info RPCs at once ({bursts['seconds']:.2f} s, failures: "
        f"{bursts['failed']} {bursts['codes']}). "
        "The overload runs offer uncached Embed RPCs open-loop at 5x the closed-loop rate of 64 callers "
        "to a gateway started with `--max-in-flight-rpcs 64 --concurrency-max 16` in front of the Bedrock "
        "emulator at 50 ms a call, then at 200 ms a call. At 50 ms the capacity is ~200-250 RPS, so 5x is "
        "~1,100-1,200 RPS from one Python client on the same 2 cores as the gateway and the emulator: "
        "the gateway's event loop is close to saturated (a refusal costs it about what an Info RPC does, "
        "and each admitted Bedrock call ~1.5 ms), and where it saturates the calls queue in grpc-core "
        "before any handler runs and the refusal latency measures that queue: 15 ms to 1.9 s p99 between "
        "runs of the same code when an Info RPC cost ~0.4 ms here (~2,300 Info RPS), 12-39 ms in four "
        "runs on 2026-11-27 when it cost ~0.2 ms (~4,700 Info RPS). "
        "At 200 ms (~75 RPS, 5x ~370 RPS) the loop has room and it measures the gateway's admission. "
        f"The pooled Info run spreads the same {CALLERS} callers over {POOL} channels, each its own TCP "
        "connection.\n\n"
        + markdown_table(header, rows)
        + "\n\n"
        + markdown_table(["ratio", "measured", "issue target"], targets)
        + "\n\n"
        + markdown_table(["overload figure", *overload_header[1:]], overload_rows)
        + "\n"
    )
    write_section(
        "gateway_overhead",
        "Gateway overhead, bursts and overload (`test_gateway_overhead.py`)",
        body,
        started=started,
        load_before=load,
        raw={"runs": runs, "burst": bursts, "overload": {str(k): v for k, v in overloads.items()}},
    )


@pytest.mark.benchmark
def test_gateway_overhead(tmp_path: Path) -> None:
    run(tmp_path)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp))
