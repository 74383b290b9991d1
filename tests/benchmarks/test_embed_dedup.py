"""Embed deduplication and provider batching through the real gateway.

(a) 2,000 concurrent Embed RPCs (at most 500 in flight on the channel) over 200 distinct texts,
    gateway as is (dedup of in-flight identical inputs + cache), provider latency 20 ms,
    concurrency limit 16; against
(b) the baseline a naive client or LiteLLM-style proxy does: the same provider called directly
    once per request, at most 16 at a time (`asyncio.Semaphore(16)`; no gRPC, which favours it);
(c) 2,000 distinct texts: a single-input provider against a Cohere-like packed one
    (`max_batch_size=96`), both through the gateway;
(d) an ingest of 2,000 text items with 50% repeats (1,000 distinct texts, each under two ids,
    shuffled) through one `AsyncClient.ingest` stream into a collection, against what a user
    writes instead: the provider called once per item (`Semaphore(16)`), then the vectors
    stored through the same gateway as raw vectors. Provider calls per item, items/s; every
    item is stored, and both ids of a text hold the same vector.

Run: `.venv/bin/pytest tests/benchmarks/test_embed_dedup.py -s` or
`.venv/bin/python -m tests.benchmarks.test_embed_dedup`. Prints figures and writes them into
docs/benchmarks.md (section `embed-dedup`) and docs/benchmarks/embed-dedup.json; asserts only counts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onespace.content import Content, Purpose
from onespace.models import LOCAL_MODEL, Modality
from onespace.providers.base import EmbedInput, ProviderResult
from onespace_client import AsyncClient, item, vector
from onespace_client.v1 import common_pb2, embed_pb2
from tests.benchmarks._common import stopwatch
from tests.benchmarks._report import Part, load_average, write_parts
from tests.harness import running_gateway
from tests.scripted import ScriptedProvider

REQUESTS = 2_000
DISTINCT = 200
LATENCY = 0.02
CONCURRENCY = 16
DIMENSION = 256
PACKED_BATCH = 96
CLIENT_IN_FLIGHT = 500  # RPCs on the channel at once (a client's own bound; the server takes 5,000)
INGEST_ITEMS = 2_000  # (d): half of them repeat a text another id carries
PER_ITEM = 0.0005  # extra seconds per input in the "latency grows with the batch" variant


@dataclass
class SlowerWhenPacked(ScriptedProvider):
    """A packed provider whose call takes `latency + per_item * len(inputs)` (closer to Cohere's)."""

    per_item: float = 0.0

    async def embed(
        self,
        inputs: Sequence[EmbedInput],
        *,
        deadline: float | None = None,
        interactive: bool = False,
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
    with stopwatch() as elapsed:
        await _embed_each(provider, texts)
    return elapsed.seconds


async def _embed_each(provider: ScriptedProvider, texts: list[str]) -> list[np.ndarray]:
    """What a naive client or LiteLLM-style proxy does: the provider once per text, 16 at a time."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(text: str) -> np.ndarray:
        item = EmbedInput(Content(Modality.TEXT, text=text), LOCAL_MODEL.id, DIMENSION, Purpose.GENERIC_INDEX)
        async with limit:
            results = await provider.embed([item])
        assert len(results) == 1
        return results[0].embeddings[0].vector

    return list(await asyncio.gather(*(one(t) for t in texts)))


async def dedup(data_dir: Path) -> Part:
    texts = [f"a popular query number {i % DISTINCT}" for i in range(REQUESTS)]
    naive = ScriptedProvider(latency=LATENCY)
    naive_s = await _direct_per_request(naive, texts)
    gateway = ScriptedProvider(latency=LATENCY)
    gateway_s = await _through_gateway(data_dir, gateway, texts)
    assert len(naive.calls) == REQUESTS
    assert sum(gateway.calls) <= DISTINCT
    fewer = len(naive.calls) / max(len(gateway.calls), 1)
    return Part(
        f"{REQUESTS:,} concurrent Embed requests over {DISTINCT} distinct texts, provider "
        f"{LATENCY * 1000:.0f} ms, {CONCURRENCY} concurrent calls",
        ["mode", "provider calls", "seconds", "req/s", "x baseline speed"],
        [
            [
                f"provider once per request, `Semaphore({CONCURRENCY})` (baseline, no gRPC)",
                len(naive.calls),
                naive_s,
                REQUESTS / naive_s,
                1.0,
            ],
            [
                "gateway over gRPC (dedup + cache)",
                len(gateway.calls),
                gateway_s,
                REQUESTS / gateway_s,
                naive_s / gateway_s,
            ],
        ],
        f"{fewer:.1f}x fewer provider calls. The gateway's wall time is bound by handling {REQUESTS:,} RPCs "
        "on 2 cores (client included), not by the provider; the baseline is bound by the provider "
        f"({REQUESTS:,} / {CONCURRENCY} x {LATENCY * 1000:.0f} ms).",
        {
            "naive_calls": len(naive.calls),
            "gateway_calls": len(gateway.calls),
            "speedup": naive_s / gateway_s,
        },
    )


async def packing(data_dir: Path) -> Part:
    texts = [f"a distinct document number {i}" for i in range(REQUESTS)]
    variants: list[tuple[str, ScriptedProvider]] = [
        ("single input per call (baseline)", ScriptedProvider(latency=LATENCY)),
        (
            f"packed, `max_batch_size={PACKED_BATCH}`",
            ScriptedProvider(latency=LATENCY, max_batch_size=PACKED_BATCH),
        ),
        (
            f"packed, call time + {PER_ITEM * 1000:.1f} ms per input",
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
    return Part(
        f"{REQUESTS:,} distinct texts through the gateway, provider {LATENCY * 1000:.0f} ms per call, "
        f"{CONCURRENCY} concurrent calls",
        ["provider", "provider calls", "mean batch", "seconds", "items/s", "x baseline"],
        rows,
        f"Batches stay far below {PACKED_BATCH}: requests arrive at the rate the gRPC server can take them, "
        f"and with {CONCURRENCY} provider slots free a batch is cut as soon as a slot is (within "
        "`max_batch_wait_ms`); the packed call count and mean batch vary most between runs. "
        "`ScriptedProvider`'s call time does not grow with the batch; the third row adds "
        f"{PER_ITEM * 1000:.1f} ms per input to be closer to a real packed API.",
        figures,
    )


async def ingest_repeats(data_dir: Path) -> Part:
    distinct = [f"a catalogue entry number {i}" for i in range(INGEST_ITEMS // 2)]
    texts = distinct * 2
    random.Random(7).shuffle(texts)
    ids = [f"doc-{i}" for i in range(INGEST_ITEMS)]
    runs: dict[str, tuple[int, float]] = {}
    for mode in ("naive", "gateway"):
        provider = ScriptedProvider(latency=LATENCY)
        async with running_gateway(data_dir / mode, provider, **_limits()) as gw:
            async with AsyncClient(gw.target) as client:
                await client.create_collection("docs", dimension=DIMENSION)
                provider.calls.clear()
                with stopwatch() as elapsed:
                    sources: list[np.ndarray] | list[str] = texts
                    if mode == "naive":  # embed every item itself, then store the vectors
                        sources = await _embed_each(provider, texts)
                    items = (item(i, source) for i, source in zip(ids, sources, strict=True))
                    acks = [a async for a in client.ingest("docs", items)]
                assert len(acks) == INGEST_ITEMS and all(a.stored for a in acks)
                stored = await client.get("docs", ids, include_vectors=True)
                assert [s.id for s in stored.items] == ids
                by_text: dict[str, np.ndarray] = {}
                for text, got in zip(texts, stored.items, strict=True):
                    values = np.asarray(vector(got), dtype=np.float32)
                    np.testing.assert_array_equal(by_text.setdefault(text, values), values)
            runs[mode] = (len(provider.calls), elapsed.seconds)
    (naive_calls, naive_s), (gateway_calls, gateway_s) = runs["naive"], runs["gateway"]
    assert naive_calls == INGEST_ITEMS
    assert gateway_calls <= len(distinct)
    return Part(
        f"Ingest of {INGEST_ITEMS:,} text items with 50% repeats ({len(distinct):,} distinct texts, each "
        f"under two ids), provider {LATENCY * 1000:.0f} ms, {CONCURRENCY} concurrent calls",
        ["mode", "provider calls", "calls per item", "seconds", "items/s", "x baseline speed"],
        [
            [
                "provider once per item, then the vectors ingested (baseline)",
                naive_calls,
                naive_calls / INGEST_ITEMS,
                naive_s,
                INGEST_ITEMS / naive_s,
                1.0,
            ],
            [
                "gateway ingest of the texts (dedup + cache)",
                gateway_calls,
                gateway_calls / INGEST_ITEMS,
                gateway_s,
                INGEST_ITEMS / gateway_s,
                naive_s / gateway_s,
            ],
        ],
        "Both through one `AsyncClient.ingest` stream into a fresh collection of the same gateway; every "
        "item is stored and both ids of a text read back the same vector.",
        {"naive_calls": naive_calls, "gateway_calls": gateway_calls, "speedup": naive_s / gateway_s},
    )


async def run(data_dir: Path) -> list[Part]:
    started = dt.datetime.now().astimezone()
    load = load_average()
    parts = [
        await dedup(data_dir / "dedup"),
        await packing(data_dir / "packing"),
        await ingest_repeats(data_dir / "ingest"),
    ]
    write_parts(
        "embed-dedup",
        "Embed dedup, provider packing and ingest with repeats (`test_embed_dedup.py`)",
        parts,
        started=started,
        load_before=load,
    )
    return parts


async def test_embed_dedup(tmp_path: Path) -> None:
    deduped, packed, ingested = (part.figures for part in await run(tmp_path))
    assert deduped["gateway_calls"] < deduped["naive_calls"]
    assert packed["calls1"] < packed["calls0"]
    assert ingested["gateway_calls"] <= ingested["naive_calls"] / 2


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp)))


if __name__ == "__main__":
    main()
