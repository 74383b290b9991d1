"""The engine seen through gRPC: search batching, unary overload, and a 100,000-item stream that
outruns the provider while the server's memory stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, embed_pb2, search_pb2
from tests.harness import Running, index_all, only_groups, running_gateway, until
from tests.scripted import RefusingProvider, ScriptedProvider


async def test_concurrent_searches_share_index_calls_and_match_solo_results(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, search_max_wait_ms=50.0) as gw:
        await gw.collections.CreateCollection(
            collections_pb2.CreateCollectionRequest(
                config=collections_pb2.CollectionConfig(name="v", dimension=256, index_dimension=256)
            )
        )
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((2000, 256)).astype(np.float32)
        for start in range(0, 2000, 250):
            await gw.data.Upsert(
                data_pb2.UpsertRequest(
                    collection="v",
                    items=[
                        data_pb2.Item(id=f"v{i}", vector=common_pb2.Vector(values=vectors[i].tolist()))
                        for i in range(start, start + 250)
                    ],
                )
            )
        collection = gw.app.gateway.store.get("v")
        # Index every acked row first: rows still in the tail are scanned exactly, so the solo
        # searches (while background indexing runs) and the batched ones (after it) could
        # otherwise differ by HNSW's approximation, not by batching.
        await index_all(gw, "v")
        queries = rng.standard_normal((200, 256)).astype(np.float32)

        def request(q: np.ndarray) -> search_pb2.SearchRequest:
            return search_pb2.SearchRequest(collection="v", vector=common_pb2.Vector(values=q.tolist()), k=10)

        solo = []
        for q in queries:
            solo.append([h.id for h in (await gw.search.Search(request(q))).hits])
        calls_before = collection.usearch_calls
        batched = await asyncio.gather(*(gw.search.Search(request(q)) for q in queries))
        calls = collection.usearch_calls - calls_before
        assert [[h.id for h in r.hits] for r in batched] == solo
        assert calls <= 20, f"200 concurrent searches took {calls} usearch calls"


async def test_unary_overload_is_refused_fast_with_a_retry_hint(tmp_path: Path) -> None:
    provider = ScriptedProvider(latency=0.2)
    async with running_gateway(
        tmp_path, provider, queue_capacity=8, concurrency_initial=1, concurrency_max=1, retry_pushback_ms=300
    ) as gw:
        calls = [
            gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(text=f"load {i}")]))
            for i in range(40)
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        served = [o for o in outcomes if isinstance(o, embed_pb2.EmbedResponse)]
        assert refused and served and len(refused) + len(served) == 40
        for error in refused:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "queue is full" in (error.details() or "")
            assert ("grpc-retry-pushback-ms", "300") in tuple(error.trailing_metadata() or ())
        assert len(provider.seen) == len(served)


async def test_a_stream_faster_than_the_provider_keeps_memory_bounded(tmp_path: Path) -> None:
    total = 100_000
    window = 64
    provider = ScriptedProvider(latency=0.0005, max_batch_size=32)
    async with running_gateway(
        tmp_path,
        provider,
        stream_window=window,
        queue_capacity=4096,
        concurrency_initial=2,
        concurrency_max=2,
        cache_bytes=0,
    ) as gw:
        scheduler = gw.app.gateway.scheduler
        registry = gw.app.metrics.registry
        peak_queued = 0
        peak_window = 0.0

        async def watch() -> None:
            nonlocal peak_queued, peak_window
            while True:
                peak_queued = max(peak_queued, scheduler.queued)
                in_window = registry.get_sample_value(
                    "onespace_stream_window_items", {"method": "EmbedStream"}
                )
                peak_window = max(peak_window, in_window or 0.0)
                await asyncio.sleep(0.001)

        async def requests() -> AsyncIterator[embed_pb2.EmbedStreamRequest]:
            options = common_pb2.EmbedOptions(dimension=256)
            for n in range(total):
                yield embed_pb2.EmbedStreamRequest(
                    request_id=str(n), content=common_pb2.Content(text=f"item {n}"), options=options
                )

        watcher = asyncio.create_task(watch())
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        answered = 0
        ids = set()
        async for response in gw.embed.EmbedStream(requests()):
            assert response.WhichOneof("outcome") == "result", response.error.message
            ids.add(response.request_id)
            answered += 1
        watcher.cancel()
        rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        assert answered == total and len(ids) == total
        assert peak_queued <= window
        assert 0 < peak_window <= window
        assert sum(provider.calls) == total
        assert rss_growth_mb < 150, f"RSS grew by {rss_growth_mb:.0f} MB"


async def test_a_cancelled_stream_stops_its_pending_items(tmp_path: Path) -> None:
    gate = asyncio.Event()
    provider = ScriptedProvider(gate=gate)
    async with running_gateway(
        tmp_path, provider, concurrency_initial=1, concurrency_max=1, stream_window=32
    ) as gw:
        scheduler = gw.app.gateway.scheduler

        async def requests() -> AsyncIterator[embed_pb2.EmbedStreamRequest]:
            for n in range(32):
                yield embed_pb2.EmbedStreamRequest(
                    request_id=str(n), content=common_pb2.Content(text=f"c{n}")
                )
            await asyncio.Event().wait()  # keep the stream open

        call = gw.embed.EmbedStream(requests())
        await provider.started.wait()  # "c0" holds the only slot, at the gate
        await until(lambda: scheduler.queued == 31, "the other 31 items queued")
        call.cancel()
        await until(lambda: scheduler.queued == 0, "the queued items dropped")
        gate.set()
        # items go out in order: once a later one is answered, no dropped one was sent before it
        await gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(text="after")]))
        assert [i.content.text for i in provider.seen] == ["c0", "after"]
        dropped = gw.app.metrics.registry.get_sample_value(
            "onespace_items_dropped_total", {"reason": "cancelled"}
        )
        assert dropped == 31


async def test_deadline_exceeded_items_are_never_sent(tmp_path: Path) -> None:
    gate = asyncio.Event()
    provider = ScriptedProvider(gate=gate)
    async with running_gateway(tmp_path, provider, concurrency_initial=1, concurrency_max=1) as gw:
        blocker = asyncio.ensure_future(
            gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(text="b")]))
        )
        await provider.started.wait()  # "b" holds the only slot, at the gate
        late = [
            gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(text=f"late {i}")]), timeout=0.1)
            for i in range(5)
        ]
        outcomes = await asyncio.gather(*late, return_exceptions=True)
        gate.set()
        await blocker
        assert all(
            isinstance(o, grpc.aio.AioRpcError) and o.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            for o in outcomes
        )
        await gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(text="after")]))
        assert [i.content.text for i in provider.seen] == ["b", "after"]


async def test_a_thousand_concurrent_embeds_of_a_hundred_inputs_make_a_hundred_calls(tmp_path: Path) -> None:
    provider = ScriptedProvider(latency=0.05)
    async with running_gateway(tmp_path, provider) as gw:

        def request(i: int) -> embed_pb2.EmbedRequest:
            return embed_pb2.EmbedRequest(items=[common_pb2.Content(text=f"distinct input {i % 100}")])

        registry = gw.app.metrics.registry
        first = await asyncio.gather(*(gw.embed.Embed(request(i)) for i in range(1000)))
        assert len(provider.calls) == 100
        # the 900 repeats either joined an identical item in flight or, once it was done, hit the cache
        joins = registry.get_sample_value("onespace_dedup_joins_total") or 0.0
        hits = registry.get_sample_value("onespace_cache_requests_total", {"result": "hit"}) or 0.0
        assert joins > 0 and joins + hits == 900
        by_input: dict[int, list[float]] = {}
        for i, reply in enumerate(first):
            values = list(reply.results[0].embeddings[0].values)
            assert by_input.setdefault(i % 100, values) == values
        again = await asyncio.gather(*(gw.embed.Embed(request(i)) for i in range(1000)))
        assert len(provider.calls) == 100  # warm cache: zero provider calls
        assert all(r.results[0].cached for r in again)
        assert registry.get_sample_value("onespace_cache_requests_total", {"result": "hit"}) == hits + 1000


async def test_a_unary_requests_contents_are_embedded_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embed and Upsert of several contents wait for them as one group (no task per item); the
    request fails at a refused input, naming it, and stores nothing."""
    provider = RefusingProvider(max_batch_size=8)
    async with running_gateway(tmp_path, provider, max_batch_wait_ms=5) as gw:
        config = collections_pb2.CollectionConfig(name="g", dimension=256)
        await gw.collections.CreateCollection(collections_pb2.CreateCollectionRequest(config=config))
        groups = only_groups(gw, monkeypatch)
        texts = ["one", "two", "one", "three"]
        embedded = await gw.embed.Embed(
            embed_pb2.EmbedRequest(items=[common_pb2.Content(text=t) for t in texts])
        )
        vectors = [list(e.embeddings[0].values) for e in embedded.results]
        assert len(vectors) == 4 and vectors[0] == vectors[2] != vectors[1]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gw.embed.Embed(
                embed_pb2.EmbedRequest(items=[common_pb2.Content(text=t) for t in ("four", "a bad one")])
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (refused.value.details() or "").startswith("items[1].text:")
        raw = common_pb2.Vector(values=[1.0] + [0.0] * 255)
        items = [
            data_pb2.Item(id="a", content=common_pb2.Content(text="one")),
            data_pb2.Item(id="b", vector=raw),
            data_pb2.Item(id="c", content=common_pb2.Content(text="five")),
        ]
        await gw.data.Upsert(data_pb2.UpsertRequest(collection="g", items=items))
        bad = [*items[:2], data_pb2.Item(id="d", content=common_pb2.Content(text="bad too"))]
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await gw.data.Upsert(data_pb2.UpsertRequest(collection="g", items=bad))
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (failed.value.details() or "").startswith("items[2].content.text:")
        assert groups == [4, 2, 2, 2]  # contents only: the raw vector is not embedded
        got = await gw.data.Get(
            data_pb2.GetRequest(collection="g", ids=["a", "b", "c", "d"], include_vectors=True)
        )
        assert [i.id for i in got.items] == ["a", "b", "c"]
        assert list(got.items[0].vector) == pytest.approx(vectors[0], abs=2e-4)  # stored f16


@contextlib.asynccontextmanager
async def _one_call_at_a_time(
    tmp_path: Path, **settings: object
) -> AsyncIterator[tuple[Running, ScriptedProvider, asyncio.Event]]:
    """A gateway making one provider call at a time (no cache), each held until `gate` is set."""
    gate = asyncio.Event()
    provider = ScriptedProvider(gate=gate)
    async with running_gateway(
        tmp_path,
        provider,
        concurrency_initial=1,
        concurrency_min=1,
        concurrency_max=1,
        cache_bytes=0,
        **settings,
    ) as gw:
        yield gw, provider, gate


async def test_a_streams_window_in_bytes_stops_reading_it_and_a_unary_call_goes_first(tmp_path: Path) -> None:
    """A window of 32 items but 1,000 bytes, requests of ~300 bytes, one provider call at a time
    held at a gate: three are worked on (one at the gate, two queued) and the stream is not read
    further. A unary Embed sent then is embedded before the two queued stream items."""
    async with _one_call_at_a_time(tmp_path, stream_window=32, stream_window_bytes=1000) as (
        gw,
        provider,
        gate,
    ):
        scheduler = gw.app.gateway.scheduler
        value = gw.app.metrics.registry.get_sample_value
        requests = [
            embed_pb2.EmbedStreamRequest(
                request_id=str(n), content=common_pb2.Content(text=f"{n:03} " + "x" * 290)
            )
            for n in range(32)
        ]
        assert all(300 <= r.ByteSize() < 334 for r in requests)

        async def sent() -> AsyncIterator[embed_pb2.EmbedStreamRequest]:
            for request in requests:
                yield request

        answers = asyncio.ensure_future(_answers(gw.embed.EmbedStream(sent())))
        await provider.started.wait()
        await until(lambda: scheduler.queued == 2, "two stream items queued behind the gate")
        held = value("onespace_stream_window_bytes", {"method": "EmbedStream"})
        assert held is not None and 900 <= held <= 1000
        assert value("onespace_stream_window_items", {"method": "EmbedStream"}) == 3
        unary = asyncio.ensure_future(
            gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(text="interactive")]))
        )
        await until(lambda: scheduler.queued == 3, "the unary item queued")
        gate.set()
        assert len((await unary).results) == 1
        assert [r.request_id for r in await answers] == [str(n) for n in range(32)]
        texts = [i.content.text for i in provider.seen]
        assert texts[:4] == [
            requests[0].content.text,
            "interactive",
            requests[1].content.text,
            requests[2].content.text,
        ]
        assert value("onespace_stream_window_bytes", {"method": "EmbedStream"}) == 0


async def test_unary_calls_that_keep_the_provider_busy_do_not_stall_a_stream(tmp_path: Path) -> None:
    """One input a call, one call at a time held at a gate: a stream's window of 4 items (one at
    the gate, three queued), then 12 one-text Embed calls. Each run of 4 unary items (the
    `--interactive-burst` here) is followed by one of the stream's, not all 12 first."""
    async with _one_call_at_a_time(tmp_path, stream_window=4, interactive_burst=4) as (gw, provider, gate):
        scheduler = gw.app.gateway.scheduler

        async def sent() -> AsyncIterator[embed_pb2.EmbedStreamRequest]:
            for n in range(8):
                yield embed_pb2.EmbedStreamRequest(
                    request_id=str(n), content=common_pb2.Content(text=f"s{n}")
                )

        answers = asyncio.ensure_future(_answers(gw.embed.EmbedStream(sent())))
        await provider.started.wait()
        await until(lambda: scheduler.queued == 3, "three stream items queued behind the gate")
        unary = [
            asyncio.ensure_future(
                gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(text=f"u{n}")]))
            )
            for n in range(12)
        ]
        await until(lambda: scheduler.queued == 15, "the unary items queued")
        gate.set()
        assert all(len(r.results) == 1 for r in await asyncio.gather(*unary))
        assert [r.request_id for r in await answers] == [str(n) for n in range(8)]
        texts = [i.content.text for i in provider.seen]
        assert [n for n, t in enumerate(texts[:16]) if t.startswith("s")] == [0, 5, 10, 15], texts
        assert [t for t in texts if t.startswith("s")] == [f"s{n}" for n in range(8)]


async def _answers(call: AsyncIterable[embed_pb2.EmbedStreamResponse]) -> list[embed_pb2.EmbedStreamResponse]:
    return sorted([r async for r in call], key=lambda r: int(r.request_id))
