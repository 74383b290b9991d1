"""AsyncClient and Client against the in-process fake: what goes on the wire, what comes back."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from onespace_client import AsyncClient, Client, OnespaceClientError, content, item, where
from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, embed_pb2, search_pb2
from tests.unit.client.fake_gateway import CHECKPOINT_TIME, FakeGateway


async def test_embed_sends_items_and_options(gateway: FakeGateway, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG" + b"x" * 96)
    async with AsyncClient(gateway.target) as client:
        response = await client.embed(
            ["hello", image, content.text("abc")], model="m1", dimension=4, purpose="text_retrieval"
        )
    request = gateway.state.requests[-1]
    assert isinstance(request, embed_pb2.EmbedRequest)
    assert [i.WhichOneof("kind") for i in request.items] == ["text", "image", "text"]
    assert len(request.items[1].image) == 100
    assert request.options.model == "m1"
    assert request.options.dimension == 4
    assert request.options.purpose == common_pb2.EMBEDDING_PURPOSE_TEXT_RETRIEVAL
    assert not request.options.HasField("normalize")
    assert response.model == "m1" and response.dimension == 4
    first = response.results[0].embeddings[0].values
    assert len(first) == 4
    assert math.isclose(sum(v * v for v in first), 1.0, rel_tol=1e-5)
    # vector[0] is proportional to the payload length: 5 for "hello" vs 100 image bytes
    assert response.results[1].embeddings[0].values[0] > first[0]


async def test_embed_unset_options_stay_unset(gateway: FakeGateway) -> None:
    async with AsyncClient(gateway.target) as client:
        response = await client.embed(["x"], normalize=False)
    request = gateway.state.requests[-1]
    assert not request.options.HasField("dimension")
    assert request.options.purpose == common_pb2.EMBEDDING_PURPOSE_UNSPECIFIED
    assert request.options.HasField("normalize") and request.options.normalize is False
    assert response.results[0].embeddings[0].values[0] == 1.0  # not normalized: len("x")


async def test_embed_rejects_a_bare_string(gateway: FakeGateway) -> None:
    async with AsyncClient(gateway.target) as client:
        with pytest.raises(TypeError):
            await client.embed("hello")  # type: ignore[arg-type]


async def test_errors_keep_status_details_and_pushback(gateway: FakeGateway) -> None:
    async with AsyncClient(gateway.target) as client:
        with pytest.raises(OnespaceClientError) as bad:
            await client.embed(["boom"])
        with pytest.raises(OnespaceClientError) as busy:
            await client.embed(["throttle"])
    assert bad.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "boom" in bad.value.details
    assert bad.value.retry_pushback_ms is None
    assert isinstance(bad.value.__cause__, grpc.aio.AioRpcError)
    assert busy.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert busy.value.retry_pushback_ms == 250
    assert str(busy.value) == "RESOURCE_EXHAUSTED: queue full, retry later"


async def test_unreachable_server_is_unavailable() -> None:
    async with AsyncClient("127.0.0.1:1", timeout=5) as client:
        with pytest.raises(OnespaceClientError) as failure:
            await client.info()
    assert failure.value.code is grpc.StatusCode.UNAVAILABLE


async def test_embed_stream_assigns_ids_and_reports_item_errors(gateway: FakeGateway) -> None:
    own = embed_pb2.EmbedStreamRequest(request_id="mine", content=content.text("abcd"))
    own.options.dimension = 3

    async def source() -> AsyncIterator[embed_pb2.EmbedStreamRequest | str]:
        for value in ("a", "boom", own, "ccc"):
            yield value

    async with AsyncClient(gateway.target) as client:
        responses = [r async for r in client.embed_stream(source(), dimension=5, max_in_flight=2)]
    by_id = {r.request_id: r for r in responses}
    assert set(by_id) == {"0", "1", "mine", "3"}
    assert by_id["1"].WhichOneof("outcome") == "error"
    assert by_id["1"].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert len(by_id["0"].result.embeddings[0].values) == 5
    assert by_id["mine"].dimension == 3  # its own options win
    assert own.request_id == "mine" and own.options.dimension == 3  # the caller's message is untouched


async def test_streams_pack_the_items_that_are_ready_into_frames(gateway: FakeGateway) -> None:
    async with AsyncClient(gateway.target) as client:
        await client.create_collection("docs")
        acks = [
            a
            async for a in client.ingest(
                "docs", [item(f"d{n}", f"t{n}") for n in range(150)], max_in_flight=200
            )
        ]
        packed = list(gateway.state.frame_sizes)
        gateway.state.frame_sizes.clear()
        big = [common_pb2.Content(image=bytes(600_000)) for _ in range(3)]  # two do not fit in a 1 MiB frame
        answers = [r async for r in client.embed_stream(big)]
        large = list(gateway.state.frame_sizes)
        gateway.state.frame_sizes.clear()
        single = [r async for r in client.embed_stream(["a", "b"], packed=False)]
    assert len(acks) == 150 and sum(packed) == 150
    assert max(packed) == 64 and len(packed) < 150  # ready items share a frame, up to 64
    assert large == [1, 1, 1] and len(answers) == 3
    assert len(single) == 2 and gateway.state.frame_sizes == []  # one message per item: EmbedStream


async def test_ingest_bounds_items_in_flight_and_acks_each(gateway: FakeGateway) -> None:
    gateway.state.ack_delay = 0.002
    produced: list[int] = []

    def items() -> Iterator[data_pb2.Item]:
        for n in range(40):
            produced.append(n)
            yield item(f"bad-{n}" if n % 10 == 9 else f"doc-{n}", f"text {n}", {"n": str(n)})

    async with AsyncClient(gateway.target) as client:
        await client.create_collection("docs")
        acks = [a async for a in client.ingest("docs", items(), max_in_flight=4)]
        stored = await client.get_collection("docs")
        got = await client.get("docs", ["doc-0", "nope"], include_vectors=True)
    assert len(acks) == 40
    assert sorted(int(a.request_id) for a in acks) == list(range(40))
    failed = [a.id for a in acks if a.HasField("error")]
    assert failed == ["bad-9", "bad-19", "bad-29", "bad-39"]
    assert stored.count == 36
    assert 1 < gateway.state.ingest_max_outstanding <= 4
    requests = [r for r in gateway.state.requests if isinstance(r, data_pb2.IngestRequest)]
    assert {r.collection for r in requests} == {"docs"}
    assert [i.id for i in got.items] == ["doc-0"] and list(got.missing_ids) == ["nope"]
    assert got.items[0].metadata["n"] == "0" and len(got.items[0].vector) == 8


async def test_ingest_surfaces_the_source_error_not_a_cancellation(gateway: FakeGateway) -> None:
    def items() -> Iterator[data_pb2.Item]:
        yield item("one", "text")
        raise RuntimeError("disk on fire")

    async with AsyncClient(gateway.target) as client:
        await client.create_collection("docs")
        with pytest.raises(RuntimeError, match="disk on fire"):
            async for _ in client.ingest("docs", items()):
                pass


async def test_ingest_stream_error_carries_the_status(gateway: FakeGateway) -> None:
    async with AsyncClient(gateway.target) as client:
        with pytest.raises(OnespaceClientError) as failure:
            async for _ in client.ingest("missing", [item("a", "x")]):
                pass
    assert failure.value.code is grpc.StatusCode.NOT_FOUND


async def test_leaving_a_stream_early_cancels_it(gateway: FakeGateway) -> None:
    async def endless() -> AsyncIterator[data_pb2.Item]:
        n = 0
        while True:
            yield item(f"doc-{n}", "x")
            n += 1

    async with AsyncClient(gateway.target) as client:
        await client.create_collection("docs")
        stream = client.ingest("docs", endless(), max_in_flight=8)
        async for ack in stream:
            if ack.request_id == "20":
                break
        await stream.aclose()  # type: ignore[attr-defined]
        assert await asyncio.to_thread(gateway.state.ingest_ended.wait, 30)  # the server saw it end
        count = (await client.get_collection("docs")).count
    assert 20 <= count <= 40


async def test_ingest_over_several_streams_keeps_each_ids_items_in_order(gateway: FakeGateway) -> None:
    gateway.state.ack_delay = 0.001
    ids = [f"doc-{k}" for k in range(8)]
    items = [item(ids[n % 8], f"text {n}", {"n": str(n)}) for n in range(80)]  # each id 10 times
    async with AsyncClient(gateway.target) as client:
        await client.create_collection("docs")
        acks = [a async for a in client.ingest("docs", items, max_in_flight=4, streams=3)]
        got = await client.get("docs", ids)
    assert sorted(int(a.request_id) for a in acks) == list(range(80))  # the position, across streams
    assert all(a.stored for a in acks)
    streams = gateway.state.ingest_streams
    assert len(streams) == 3 and sum(streams) == 80
    assert sum(1 for received in streams if received) >= 2  # the ids spread over the streams
    assert 1 <= gateway.state.ingest_max_outstanding <= 4  # each stream within its window
    # one id's items went on one stream, in order: its last one is what is stored
    assert {i.id: i.metadata["n"] for i in got.items} == {ids[k]: str(72 + k) for k in range(8)}


async def test_ingest_over_several_streams_fails_as_one_stream_does(gateway: FakeGateway) -> None:
    def failing() -> Iterator[data_pb2.Item]:
        yield from (item(f"doc-{n}", "text") for n in range(5))
        raise RuntimeError("disk on fire")

    async with AsyncClient(gateway.target) as client:
        await client.create_collection("docs")
        with pytest.raises(RuntimeError, match="disk on fire"):
            async for _ in client.ingest("docs", failing(), streams=2):
                pass
        with pytest.raises(OnespaceClientError) as missing:
            async for _ in client.ingest("missing", [item(f"a{n}", "x") for n in range(10)], streams=2):
                pass
        with pytest.raises(ValueError, match="streams must be at least 1"):
            async for _ in client.ingest("docs", [item("a", "x")], streams=0):
                pass
    assert missing.value.code is grpc.StatusCode.NOT_FOUND


async def test_leaving_an_ingest_over_several_streams_early_cancels_each(gateway: FakeGateway) -> None:
    produced = 0

    async def endless() -> AsyncIterator[data_pb2.Item]:
        nonlocal produced
        while True:
            produced += 1
            yield item(f"doc-{produced}", "x")

    async with AsyncClient(gateway.target) as client:
        await client.create_collection("docs")
        stream = client.ingest("docs", endless(), max_in_flight=8, streams=2)
        acked = 0
        async for _ in stream:
            acked += 1
            if acked == 20:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        for _ in range(2):  # the server saw both streams end
            assert await asyncio.to_thread(gateway.state.ingest_streams_ended.acquire, True, 30)
        count = (await client.get_collection("docs")).count
    assert len(gateway.state.ingest_streams) == 2
    # read ahead of the acks taken, per stream: its window, the one waiting for a slot in it, its
    # queue, two answers on their way (to the merge, in it); and the one the dealer holds
    assert 20 <= count <= produced <= 20 + 2 * (8 + 1 + 8 + 2) + 1


async def test_collections_upsert_search_delete(gateway: FakeGateway) -> None:
    async with AsyncClient(gateway.target) as client:
        created = await client.create_collection(
            "mixed", dimension=8, index_dimension=4, metric="l2", dtype="i8", connectivity=8, rerank_factor=2
        )
        upserted = await client.upsert(
            "mixed",
            [
                item("t", "a text", {"lang": "en"}),
                item("i", content.image(b"\x89PNG...."), {"lang": "en"}),
                item("v", [0.5] * 8, {"lang": "fr"}),
            ],
        )
        listed = await client.list_collections()
        by_text = await client.search(
            "mixed", text="query", k=5, modalities=["image"], metadata={"lang": "en"}
        )
        by_id = await client.search("mixed", id="t", dimension=4)
        by_vector = await client.search("mixed", vector=[0.1] * 8, purpose="generic_retrieval")
        deleted = await client.delete("mixed", ["t", "zzz"])
        await client.delete_collection("mixed")
        remaining = await client.list_collections()
    request = gateway.state.requests[0]
    assert request.config.metric == 3 and request.config.dtype == 4 and request.config.hnsw.connectivity == 8
    assert created.config.index_dimension == 4 and created.config.rerank_factor == 2
    assert upserted.upserted == 3
    assert [c.config.name for c in listed] == ["mixed"] and listed[0].count == 3
    assert [h.id for h in by_text.hits] == ["i"]
    text_request = next(r for r in gateway.state.requests if isinstance(r, search_pb2.SearchRequest))
    assert text_request.content.text == "query" and text_request.k == 5
    assert list(text_request.filter.modalities) == [common_pb2.MODALITY_IMAGE]
    assert by_id.dimension == 4 and len(by_id.hits) == 3
    assert len(by_vector.hits) == 3
    assert deleted == 1
    assert remaining == []


async def test_stored_dtype_checkpoint_and_compact(gateway: FakeGateway) -> None:
    async with AsyncClient(gateway.target) as client:
        exact = await client.create_collection("exact", stored_dtype="F32")
        default = await client.create_collection("half")
        enum = await client.create_collection("enum", stored_dtype=collections_pb2.STORED_DTYPE_F16)
        with pytest.raises(ValueError, match="unknown stored dtype 'f64'; expected one of: f16, f32"):
            await client.create_collection("bad", stored_dtype="f64")
        await client.upsert("exact", [item(f"v{i}", [0.5] * 8) for i in range(4)])
        await client.upsert("exact", [item("v0", [0.25] * 8)])
        await client.delete("exact", ["v1"])
        before = await client.get_collection("exact")
        checkpointed = await client.checkpoint_collection("exact")
        compacted = await client.compact_collection("exact")
        with pytest.raises(OnespaceClientError) as missing:
            await client.compact_collection("nope")
    sent = [r for r in gateway.state.requests if isinstance(r, collections_pb2.CreateCollectionRequest)]
    assert [r.config.stored_dtype for r in sent] == [
        collections_pb2.STORED_DTYPE_F32,
        collections_pb2.STORED_DTYPE_UNSPECIFIED,
        collections_pb2.STORED_DTYPE_F16,
    ]
    assert exact.config.stored_dtype == collections_pb2.STORED_DTYPE_F32
    assert default.config.stored_dtype == enum.config.stored_dtype == collections_pb2.STORED_DTYPE_F16
    assert before.HasField("stats") and (before.stats.items, before.stats.seq) == (3, 3)
    assert (before.stats.dead_rows, before.stats.checkpoint_seq, before.stats.checkpoint_time) == (2, 0, 0.0)
    assert checkpointed.stats.checkpoint_seq == checkpointed.stats.seq == 3
    assert checkpointed.stats.checkpoint_time == CHECKPOINT_TIME
    assert (compacted.stats.dead_rows, compacted.stats.index_tombstones, compacted.count) == (0, 0, 3)
    assert missing.value.code is grpc.StatusCode.NOT_FOUND
    requests = [type(r).__name__ for r in gateway.state.requests[-3:]]
    assert requests == ["CheckpointCollectionRequest", "CompactCollectionRequest", "CompactCollectionRequest"]


async def test_search_conditions_go_on_the_wire(gateway: FakeGateway) -> None:
    async with AsyncClient(gateway.target) as client:
        await client.create_collection("c")
        await client.upsert(
            "c",
            [
                item("a", [1.0] * 8, {"lang": "en", "year": "1999"}),
                item("b", content.image(b"\x89PNG"), {"lang": "fr", "year": "2005"}),
                item("c", "text", {"year": "2015"}),
            ],
        )
        found = await client.search(
            "c",
            id="a",
            metadata={"lang": "fr"},
            modalities=["image"],
            conditions=[where("year").range(gt=2000, lte=2005), where("lang").not_in(["en"])],
        )
        absent = await client.search("c", id="a", conditions=[where("lang").not_equals("en")])
        listed = await client.search("c", id="a", conditions=(where("year").in_(["1999", "2015"]),))
    requests = [r for r in gateway.state.requests if isinstance(r, search_pb2.SearchRequest)]
    first = requests[0].filter
    assert dict(first.metadata) == {"lang": "fr"} and list(first.modalities) == [common_pb2.MODALITY_IMAGE]
    assert [c.WhichOneof("test") for c in first.conditions] == ["range", "not_in"]
    assert first.conditions[0].range.gt == 2000 and not first.conditions[0].range.HasField("gte")
    assert [h.id for h in found.hits] == ["b"]
    assert [h.id for h in absent.hits] == ["b", "c"]
    assert [h.id for h in listed.hits] == ["a", "c"]


async def test_search_needs_exactly_one_query(gateway: FakeGateway) -> None:
    async with AsyncClient(gateway.target) as client:
        with pytest.raises(ValueError, match="exactly one"):
            await client.search("c")
        with pytest.raises(ValueError, match="text, id"):
            await client.search("c", text="a", id="b")


async def test_info(gateway: FakeGateway) -> None:
    async with AsyncClient(gateway.target) as client:
        info = await client.info()
    assert info.provider == "fake" and info.models[0].dimensions == [8, 16]


def test_sync_client_mirrors_the_async_one(gateway: FakeGateway) -> None:
    with Client(gateway.target) as client:
        client.create_collection("docs")
        acks = list(client.ingest("docs", (item(f"d{n}", f"text {n}") for n in range(10)), max_in_flight=3))
        spread = list(client.ingest("docs", (item(f"s{n}", "x") for n in range(10)), streams=2))
        responses = list(client.embed_stream(iter(["a", "bb"])))
        hits = client.search("docs", text="q", k=3)
        response = client.embed(["hello"], dimension=2)
        with pytest.raises(OnespaceClientError) as failure:
            client.get_collection("nope")
        assert client.delete("docs", ["d0"]) == 1
        assert client.get("docs", ["d1"]).items[0].id == "d1"
        assert client.info().default_model == "fake-model"
        exact = client.create_collection("exact", stored_dtype="f32")
        client.upsert("exact", [item("x", [1.0] * 8, {"n": "1"}), item("y", [1.0] * 8, {"n": "2"})])
        filtered = client.search("exact", id="x", conditions=[where("n").range(gte=2)])
        later = [where("n").range(gte=2)]
        batch = client.search_batch("exact", [[1.0] * 8, [0.5] * 8], k=1, conditions=later)
        sent = next(r for r in gateway.state.requests if isinstance(r, search_pb2.SearchBatchRequest))
        checkpointed = client.checkpoint_collection("exact")
        client.delete("exact", ["x"])
        compacted = client.compact_collection("exact")
        tuned = client.update_collection("exact", rerank_factor=3, max_unindexed_rows=0)
        tuning = gateway.state.requests[-1]
    assert sorted(int(a.request_id) for a in spread) == list(range(10)) and all(a.stored for a in spread)
    assert exact.config.stored_dtype == collections_pb2.STORED_DTYPE_F32
    assert [h.id for h in filtered.hits] == ["y"]
    assert [[h.id for h in r.hits] for r in batch] == [["y"], ["y"]]
    assert [(q.collection, q.k, q.vector.f32, q.filter.conditions[0].key) for q in sent.queries] == [
        ("exact", 1, struct.pack("<8f", *[1.0] * 8), "n"),
        ("exact", 1, struct.pack("<8f", *[0.5] * 8), "n"),
    ]
    assert checkpointed.stats.checkpoint_seq == 1 and compacted.stats.items == 1
    assert isinstance(tuning, collections_pb2.UpdateCollectionRequest)
    # None is left unset; 0 is sent (it means the server default)
    assert [f.name for f, _ in tuning.ListFields()] == ["name", "rerank_factor", "max_unindexed_rows"]
    assert tuned.config.rerank_factor == 3 and tuned.stats.items == 1
    assert compacted.stats.dead_rows == 0
    assert all(a.stored for a in acks) and len(acks) == 10
    assert sorted(r.request_id for r in responses) == ["0", "1"]
    assert len(hits.hits) == 3
    assert len(response.results[0].embeddings[0].values) == 2
    assert failure.value.code is grpc.StatusCode.NOT_FOUND
    client.close()  # idempotent


def test_sync_client_stream_can_be_abandoned(gateway: FakeGateway) -> None:
    with Client(gateway.target) as client:
        client.create_collection("docs")
        stream = client.ingest("docs", (item(f"d{n}", "x") for n in range(1000)), max_in_flight=4)
        first = next(stream)
        stream.close()  # type: ignore[attr-defined]
        assert first.request_id in {"0", "1", "2", "3"}
        assert client.get_collection("docs").count < 1000
