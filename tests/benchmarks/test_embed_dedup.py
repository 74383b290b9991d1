"""Embed deduplication and provider batching through the real gateway.

(a) 2,000 concurrent Embed RPCs (at most 500 in flight on the channel) over 200 distinct texts,
    gateway as is (dedup of in-flight identical inputs + cache), provider latency 20 ms,
    concurrency limit 16; against
(b) the baseline a naive client or LiteLLM-style proxy does: the same provider called directly
    once per request, at most 16 at a time (`asyncio.Semaphore(16)`; no gRPC, which favours it);
(c) 2,000 distinct texts: a single-input provider against a Cohere-like packed one
    (`max_batch_size=96`), both through the gateway.

Run: `.venv/bin/pytest tests/benchmarks/test_embed_dedup.py -s` or
`.venv/bin/python -m tests.benchmarks.test_embed_dedup`. Prints figures; asserts only counts.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onespace.content import Content, Purpose
from onespace.models import LOCAL_MODEL, Modality
from onespace.providers.base import EmbedInput, ProviderResult
from onespace_client.v1 import common_pb2, embed_pb2
from tests.benchmarks._common import print_table, stopwatch
from tests.harness import running_gateway
from tests.scripted import ScriptedProvider

REQUESTS = 2_000
DISTINCT = 200
LATENCY = 0.02
CONCURRENCY = 16
DIMENSION = 256
PACKED_BATCH = 96
# One grpc.aio channel with ~2,000 RPCs in flight gets ~10% of them CANCELLED by the transport
# (seen even for the standard Health service, so not the gateway's doing); 500 in flight is safe.
CLIENT_IN_FLIGHT = 500
PER_ITEM = 0.0005  # extra seconds per input in the "latency grows with the batch" variant


@dataclass
class SlowerWhenPacked(ScriptedProvider):
    """A packed provider whose call takes `latency + per_item * len(inputs)` (closer to Cohere's)."""

    per_item: float = 0.0

    async def embed(
        self, inputs: Sequence[EmbedInput], *, deadline: float | None = None
    ) -> list[ProviderResult]:
        await asyncio.sleep(self.per_item * len(inputs))
        return await super().embed(inputs, deadline=deadline)


def _limits() -> dict[str, int]:
    return {
        "concurrency_initial": CONCURRENCY,
        "concurrency_min": CONCURRENCY,
        "concurrency_max": CONCURRENCY,
    }


def _request(text: str) -> embed_pb2.EmbedRequest:
    return embed_pb2.EmbedRequest(
        items=[common_pb2.Content(text=text)], options=common_pb2.EmbedOptions(dimension=DIMENSION)
    )


async def _through_gateway(data_dir: Path, provider: ScriptedProvider, texts: list[str]) -> float:
    async with running_gateway(data_dir, provider, **_limits()) as gw:
        await gw.embed.Embed(_request("warm-up"))
        provider.calls.clear()
        in_flight = asyncio.Semaphore(CLIENT_IN_FLIGHT)

        async def call(text: str) -> embed_pb2.EmbedResponse:
            async with in_flight:
                reply: embed_pb2.EmbedResponse = await gw.embed.Embed(_request(text))
                return reply

        with stopwatch() as elapsed:
            replies = await asyncio.gather(*(call(t) for t in texts))
        assert all(len(r.results) == 1 for r in replies)
        return elapsed.seconds


async def _direct_per_request(provider: ScriptedProvider, texts: list[str]) -> float:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(text: str) -> None:
        item = EmbedInput(Content(Modality.TEXT, text=text), LOCAL_MODEL.id, DIMENSION, Purpose.GENERIC_INDEX)
        async with limit:
            results = await provider.embed([item])
        assert len(results) == 1

    with stopwatch() as elapsed:
        await asyncio.gather(*(one(t) for t in texts))
    return elapsed.seconds


async def dedup(data_dir: Path) -> dict[str, float]:
    texts = [f"a popular query number {i % DISTINCT}" for i in range(REQUESTS)]
    naive = ScriptedProvider(latency=LATENCY)
    naive_s = await _direct_per_request(naive, texts)
    gateway = ScriptedProvider(latency=LATENCY)
    gateway_s = await _through_gateway(data_dir, gateway, texts)
    assert len(naive.calls) == REQUESTS
    assert sum(gateway.calls) <= DISTINCT
    print_table(
        f"{REQUESTS:,} concurrent Embed requests over {DISTINCT} distinct texts, "
        f"provider {LATENCY * 1000:.0f} ms, "
        f"{CONCURRENCY} concurrent calls",
        ["mode", "provider calls", "seconds", "req/s", "x baseline speed"],
        [
            ["provider once per request (baseline)", len(naive.calls), naive_s, REQUESTS / naive_s, 1.0],
            [
                "gateway gRPC (dedup + cache)",
                len(gateway.calls),
                gateway_s,
                REQUESTS / gateway_s,
                naive_s / gateway_s,
            ],
        ],
    )
    print(f"provider calls: {len(naive.calls) / max(len(gateway.calls), 1):.1f}x fewer through the gateway")
    return {
        "naive_calls": len(naive.calls),
        "gateway_calls": len(gateway.calls),
        "speedup": naive_s / gateway_s,
    }


async def packing(data_dir: Path) -> dict[str, float]:
    texts = [f"a distinct document number {i}" for i in range(REQUESTS)]
    variants: list[tuple[str, ScriptedProvider]] = [
        ("single input per call (baseline)", ScriptedProvider(latency=LATENCY)),
        (
            f"packed, max_batch_size={PACKED_BATCH}",
            ScriptedProvider(latency=LATENCY, max_batch_size=PACKED_BATCH),
        ),
        (
            f"packed, {PER_ITEM * 1000:.1f} ms more per input",
            SlowerWhenPacked(latency=LATENCY, max_batch_size=PACKED_BATCH, per_item=PER_ITEM),
        ),
    ]
    rows: list[list[object]] = []
    figures: dict[str, float] = {}
    base_s = 0.0
    for n, (label, provider) in enumerate(variants):
        seconds = await _through_gateway(data_dir / str(n), provider, texts)
        assert sum(provider.calls) == REQUESTS
        base_s = base_s or seconds
        mean = sum(provider.calls) / len(provider.calls)
        rows.append([label, len(provider.calls), mean, seconds, REQUESTS / seconds, base_s / seconds])
        figures[f"calls{n}"] = len(provider.calls)
    print_table(
        f"{REQUESTS:,} distinct texts through the gateway, provider {LATENCY * 1000:.0f} ms per call, "
        f"{CONCURRENCY} concurrent calls",
        ["provider", "provider calls", "mean batch", "seconds", "items/s", "x baseline"],
        rows,
    )
    return figures


async def test_dedup_against_a_call_per_request(tmp_path: Path) -> None:
    figures = await dedup(tmp_path)
    assert figures["gateway_calls"] < figures["naive_calls"]


async def test_packed_provider_against_single_input(tmp_path: Path) -> None:
    figures = await packing(tmp_path)
    assert figures["calls1"] < figures["calls0"]


async def _main(data_dir: Path) -> None:
    await dedup(data_dir / "dedup")
    await packing(data_dir / "packing")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_main(Path(tmp)))


if __name__ == "__main__":
    main()
