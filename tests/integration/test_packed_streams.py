"""EmbedStreamPacked and IngestPacked against a real gateway: each item answered on its own as in
the one-item streams, per-item errors, frames over the limit and undecodable frames, the window
counted in items, and the Python client's packing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from onespace_client import AsyncClient, item
from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, embed_pb2
from tests.harness import Running, only_groups, running_gateway
from tests.scripted import RefusingProvider, ScriptedProvider

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def embed_frame(*texts: str, start: int = 0) -> embed_pb2.EmbedStreamPackedRequest:
    return embed_pb2.EmbedStreamPackedRequest(
        requests=[
            embed_pb2.EmbedStreamRequest(request_id=str(start + n), content=common_pb2.Content(text=t))
            for n, t in enumerate(texts)
        ]
    )


def vector_frame(collection: str, count: int) -> data_pb2.IngestPackedRequest:
    """`count` distinct 256-d raw vectors for `collection`, ids i0, i1, ..."""
    return data_pb2.IngestPackedRequest(
        requests=[
            data_pb2.IngestRequest(
                request_id=str(n), collection=collection, item=item(f"i{n}", [float(n + 1)] * 256)
            )
            for n in range(count)
        ]
    )


async def frames_of(*frames: Any) -> AsyncIterator[Any]:
    for frame in frames:
        yield frame


async def rest_of(call: Any) -> list[Any]:
    """Every answer left on a packed stream read with `read()` (grpc.aio forbids mixing in `async for`)."""
    answers: list[Any] = []
    while (frame := await call.read()) is not grpc.aio.EOF:
        answers.extend(frame.responses)
    return answers


async def test_each_packed_item_is_answered_like_the_one_item_stream(gateway: Running) -> None:
    texts = ["alpha", "", "gamma", "delta", "epsilon"]  # "" is a bad item: its own error
    packed: dict[str, embed_pb2.EmbedStreamResponse] = {}
    frames = 0
    async for answer in gateway.embed.EmbedStreamPacked(
        frames_of(embed_frame(*texts[:3]), embed_frame(*texts[3:], start=3))
    ):
        frames += 1
        packed.update({r.request_id: r for r in answer.responses})
    assert frames <= len(texts) and set(packed) == {str(n) for n in range(5)}

    async def singles() -> AsyncIterator[embed_pb2.EmbedStreamRequest]:
        for request in [*embed_frame(*texts).requests]:
            yield request

    alone = {r.request_id: r async for r in gateway.embed.EmbedStream(singles())}
    assert packed["1"].error.code == INVALID.value[0] and "content" in packed["1"].error.message
    for n in (0, 2, 3, 4):
        key = str(n)
        assert list(packed[key].result.embeddings[0].values) == list(alone[key].result.embeddings[0].values)
    value = gateway.app.metrics.registry.get_sample_value
    assert value("onespace_stream_items_total", {"method": "EmbedStreamPacked", "outcome": "OK"}) == 4
    assert (
        value("onespace_stream_items_total", {"method": "EmbedStreamPacked", "outcome": "INVALID_ARGUMENT"})
        == 1
    )


async def test_a_frame_over_the_item_limit_ends_the_stream_after_the_frames_before_it(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "data", max_items_per_request=4) as gw:
        got: list[embed_pb2.EmbedStreamResponse] = []
        # the bad frame goes last: a write after the server ended the stream can make the asyncio
        # client report INTERNAL instead of the server's status (grpc/grpc#36066)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            async for answer in gw.embed.EmbedStreamPacked(
                frames_of(embed_frame("a", "b"), embed_frame("c", "d", "e", "f", "g", start=2))
            ):
                got.extend(answer.responses)
    assert failed.value.code() is INVALID
    assert (failed.value.details() or "").startswith(
        "frames[1].requests: 5 items exceeds the limit of 4 per frame; the stream stops here"
    )
    assert sorted(r.request_id for r in got) == ["0", "1"] and all(r.HasField("result") for r in got)


async def test_an_undecodable_frame_ends_the_stream_naming_the_frame(gateway: Running) -> None:
    call = gateway.channel.stream_stream(
        "/onespace.v1.EmbedService/EmbedStreamPacked",
        request_serializer=lambda b: b,
        response_deserializer=embed_pb2.EmbedStreamPackedResponse.FromString,
    )
    got: list[embed_pb2.EmbedStreamResponse] = []
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        async for answer in call(frames_of(embed_frame("a", "b").SerializeToString(), b"\xff\xff\xff")):
            got.extend(answer.responses)
    assert failed.value.code() is INVALID
    assert (failed.value.details() or "").startswith(
        "frames[1]: cannot decode onespace.v1.EmbedStreamPackedRequest: "
    )
    assert sorted(r.request_id for r in got) == ["0", "1"]


async def test_packed_ingest_stores_every_item_and_acks_each(gateway: Running) -> None:
    await gateway.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(name="p", dimension=256)
        )
    )

    def ingest(n: int) -> data_pb2.IngestRequest:
        vector = common_pb2.Vector(values=[float(n + 1)] * 256)
        item_id = f"bad/{'x' * 300}" if n == 3 else f"i{n}"  # an id over 256 bytes: that item's error
        return data_pb2.IngestRequest(
            request_id=str(n), collection="p", item=data_pb2.Item(id=item_id, vector=vector)
        )

    frames = [data_pb2.IngestPackedRequest(requests=[ingest(n) for n in range(s, s + 4)]) for s in (0, 4)]
    acks = {
        a.request_id: a
        async for frame in gateway.data.IngestPacked(frames_of(*frames))
        for a in frame.responses
    }
    assert set(acks) == {str(n) for n in range(8)}
    assert acks["3"].error.code == INVALID.value[0]
    assert all(acks[str(n)].stored for n in range(8) if n != 3)
    stored = await gateway.data.Get(data_pb2.GetRequest(collection="p", ids=[f"i{n}" for n in range(8)]))
    assert [i.id for i in stored.items] == [f"i{n}" for n in range(8) if n != 3]


async def test_the_window_counts_items_not_frames(tmp_path: Path) -> None:
    """A window of 4 with frames of 3: four items reach the provider, the fifth waits for room."""
    provider = ScriptedProvider(gate=asyncio.Event())
    async with running_gateway(tmp_path / "data", provider, stream_window=4, cache_bytes=0) as gw:
        frames = [embed_frame(*(f"w{n}" for n in range(s, s + 3)), start=s) for s in range(0, 30, 3)]
        answers: list[embed_pb2.EmbedStreamResponse] = []

        async def consume() -> None:
            async for answer in gw.embed.EmbedStreamPacked(frames_of(*frames)):
                answers.extend(answer.responses)

        task = asyncio.ensure_future(consume())
        window = gw.app.metrics.stream_window.labels("EmbedStreamPacked")
        async with asyncio.timeout(10):
            while len(provider.calls) < 4:
                await asyncio.sleep(0)
        for _ in range(200):  # let everything that could run run: no fifth item is taken
            await asyncio.sleep(0)
        assert len(provider.calls) == 4 and window._value.get() == 4
        provider.gate.set()  # type: ignore[union-attr]
        await task
    assert sorted(int(a.request_id) for a in answers) == list(range(30))


async def test_the_client_packs_what_is_ready_and_answers_item_by_item(gateway: Running) -> None:
    async with AsyncClient(gateway.target) as client:
        await client.create_collection("c", dimension=256)
        items = [item(f"i{n}", [float(n + 1)] * 256) for n in range(300)]
        acks = [a async for a in client.ingest("c", items, max_in_flight=128)]
        assert sorted(int(a.request_id) for a in acks) == list(range(300)) and all(a.stored for a in acks)
        texts = [f"text {n}" for n in range(100)]
        answers = [r async for r in client.embed_stream(texts)]
        one_by_one = [r async for r in client.embed_stream(texts, packed=False)]
    assert sorted(int(r.request_id) for r in answers) == list(range(100))
    by_id = {r.request_id: list(r.result.embeddings[0].values) for r in one_by_one}
    assert all(list(r.result.embeddings[0].values) == by_id[r.request_id] for r in answers)
    value = gateway.app.metrics.registry.get_sample_value
    assert value("onespace_stream_items_total", {"method": "IngestPacked", "outcome": "OK"}) == 300
    assert value("onespace_stream_items_total", {"method": "EmbedStreamPacked", "outcome": "OK"}) == 100
    assert value("onespace_stream_items_total", {"method": "EmbedStream", "outcome": "OK"}) == 100


async def test_the_client_spreads_an_ingest_over_streams_each_id_in_order(gateway: Running) -> None:
    ids = [f"v{k}" for k in range(6)]
    async with AsyncClient(gateway.target) as client:
        await client.create_collection("c", dimension=256)
        items = [item(ids[n % 6], [float(n + 1)] * 256, {"n": str(n)}) for n in range(120)]  # 20 an id
        acks = [a async for a in client.ingest("c", items, max_in_flight=8, streams=3)]
        got = await client.get("c", ids)
    assert sorted(int(a.request_id) for a in acks) == list(range(120)) and all(a.stored for a in acks)
    assert {i.id: i.metadata["n"] for i in got.items} == {ids[k]: str(114 + k) for k in range(6)}
    value = gateway.app.metrics.registry.get_sample_value
    assert value("onespace_stream_items_total", {"method": "IngestPacked", "outcome": "OK"}) == 120
    assert value("onespace_stream_duration_seconds_count", {"method": "IngestPacked", "code": "OK"}) == 3


async def test_packed_vectors_are_stored_a_group_at_a_time_each_answered_on_its_own(gateway: Running) -> None:
    """A frame's raw vectors go as one write per group, but each item keeps its own outcome: bad
    vectors, bad ids and unknown collections are refused alone, a repeated id keeps its last
    vector, and content items in between are embedded and stored as usual."""
    await gateway.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(name="g", dimension=256)
        )
    )

    def vector_item(n: int, values: list[float], *, item_id: str = "", collection: str = "g") -> Any:
        return data_pb2.IngestRequest(
            request_id=str(n),
            collection=collection,
            item=data_pb2.Item(id=item_id or f"v{n}", vector=common_pb2.Vector(values=values)),
        )

    good = [float(i % 7 + 1) for i in range(256)]
    requests = [
        vector_item(0, good),
        vector_item(1, [*good[:255], float("nan")]),  # NaN: refused
        vector_item(2, good[:5]),  # wrong length: refused
        data_pb2.IngestRequest(  # 7 bytes are no float32 array: refused before validation
            request_id="3",
            collection="g",
            item=data_pb2.Item(id="v3", vector=common_pb2.Vector(f32=b"1234567")),
        ),
        vector_item(4, good, item_id="dup"),
        data_pb2.IngestRequest(
            request_id="5",
            collection="g",
            item=data_pb2.Item(id="t5", content=common_pb2.Content(text="five")),
        ),
        vector_item(6, [-x for x in good], item_id="dup"),  # the same id again: this one stays
        vector_item(7, good, collection="nowhere"),  # its collection does not exist
        vector_item(8, good, item_id="x" * 300),  # an id over 256 bytes
        vector_item(9, good),
    ]
    value = gateway.app.metrics.registry.get_sample_value
    commits_before = value("onespace_commit_items_count", {"collection": "g"}) or 0.0
    acks = {
        a.request_id: a
        async for frame in gateway.data.IngestPacked(
            frames_of(data_pb2.IngestPackedRequest(requests=requests))
        )
        for a in frame.responses
    }
    assert set(acks) == {str(n) for n in range(10)}
    assert {n for n, a in acks.items() if a.stored} == {"0", "4", "5", "6", "9"}
    errors = {n: (a.error.code, a.error.message) for n, a in acks.items() if not a.stored}
    assert errors["1"][0] == INVALID.value[0] and errors["1"][1].startswith("item.vector: contains NaN")
    assert errors["2"][1].startswith("item.vector: length 5 does not match")
    assert errors["3"][1].startswith("item.vector.f32: is 7 bytes")
    assert errors["7"][0] == grpc.StatusCode.NOT_FOUND.value[0] and "nowhere" in errors["7"][1]
    assert errors["8"][1].startswith("item.id: ")
    got = await gateway.data.Get(
        data_pb2.GetRequest(collection="g", ids=["v0", "dup", "t5", "v9", "v1"], include_vectors=True)
    )
    assert [i.id for i in got.items] == ["v0", "dup", "t5", "v9"] and list(got.missing_ids) == ["v1"]
    dup = next(i for i in got.items if i.id == "dup")
    assert list(dup.vector) == pytest.approx([-x for x in good], rel=1e-3)  # stored f16
    # the whole frame is one group (up to 16 items), the content item included: one commit
    commits = (value("onespace_commit_items_count", {"collection": "g"}) or 0.0) - commits_before
    assert commits == 1
    assert value("onespace_stream_items_total", {"method": "IngestPacked", "outcome": "OK"}) == 5
    assert (
        value("onespace_stream_items_total", {"method": "IngestPacked", "outcome": "INVALID_ARGUMENT"}) == 4
    )
    assert value("onespace_stream_items_total", {"method": "IngestPacked", "outcome": "NOT_FOUND"}) == 1


async def test_a_frame_of_vectors_is_one_write_per_group(gateway: Running) -> None:
    """16 vectors in one frame (the default window of 256 makes groups of 64): one commit, not one
    per item."""
    await gateway.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(name="w", dimension=256)
        )
    )
    assert gateway.app.settings.stream_window == 256
    frame = vector_frame("w", 16)
    acks = [a async for f in gateway.data.IngestPacked(frames_of(frame)) for a in f.responses]
    assert len(acks) == 16 and all(a.stored for a in acks)
    value = gateway.app.metrics.registry.get_sample_value
    assert value("onespace_commit_items_count", {"collection": "w"}) == 1
    assert value("onespace_commit_items_sum", {"collection": "w"}) == 16


async def test_a_frame_of_contents_is_embedded_together_and_written_as_it_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Content items of a group are embedded together (one wait; identical texts once) and
    stored one write per set of embeddings that came back together (the vector item in the
    first), yet each keeps its own outcome: a text refused before embedding, one the provider
    refuses (named under `item.content`), the rest stored and searchable."""
    provider = RefusingProvider()
    async with running_gateway(tmp_path / "data", provider) as gw:
        await gw.collections.CreateCollection(
            collections_pb2.CreateCollectionRequest(config=collections_pb2.CollectionConfig(name="c"))
        )
        texts = ["same", "same", "same", "a bad text", "", *(f"text {n}" for n in range(5, 15))]
        requests = [
            data_pb2.IngestRequest(
                request_id=str(n),
                collection="c",
                item=data_pb2.Item(id=f"t{n}", content=common_pb2.Content(text=t)),
            )
            for n, t in enumerate(texts)
        ]
        requests.append(
            data_pb2.IngestRequest(request_id="15", collection="c", item=item("v15", [1.0] * 256))
        )
        frame = data_pb2.IngestPackedRequest(requests=requests)
        groups = only_groups(gw, monkeypatch)
        acks = {a.request_id: a async for f in gw.data.IngestPacked(frames_of(frame)) for a in f.responses}
        value = gw.app.metrics.registry.get_sample_value
        writes = sum(1 for n, embedded in enumerate(groups.waves) if embedded or n == 0)
        assert value("onespace_commit_items_count", {"collection": "c"}) == writes
        assert value("onespace_commit_items_sum", {"collection": "c"}) == 14
        got = await gw.data.Get(data_pb2.GetRequest(collection="c", ids=["t0", "t2", "t14", "v15", "t3"]))
    assert set(acks) == {str(n) for n in range(16)}
    assert {n for n, a in acks.items() if not a.stored} == {"3", "4"}
    assert acks["3"].error.code == INVALID.value[0]
    assert acks["3"].error.message == "item.content.text: 'a bad text' is refused by the provider"
    assert acks["4"].error.message.startswith("item.content.text: ")
    assert [i.content.text for i in provider.seen].count("same") == 1  # three items, one embedding
    assert groups == [14]  # the 15 contents but the empty text, in one call
    assert [i.id for i in got.items] == ["t0", "t2", "t14", "v15"] and list(got.missing_ids) == ["t3"]
    assert all(i.modality == common_pb2.MODALITY_TEXT for i in got.items[:3])


async def test_a_frame_of_embeds_is_one_wait_each_answered_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EmbedStreamPacked groups: one embed_many per group, repeated texts embedded once, and per
    item its own options (normalize, format), answer or error, as the one-item stream gives."""
    provider = RefusingProvider()
    async with running_gateway(tmp_path / "data", provider) as gw:
        frame = embed_frame("same", "same", "a bad text", "other", "same")
        frame.requests[1].options.normalize = False
        frame.requests[3].options.vector_format = common_pb2.VECTOR_FORMAT_F32
        frame.requests[4].options.dimension = 7  # not offered: refused before embedding
        groups = only_groups(gw, monkeypatch)
        packed = {
            r.request_id: r async for f in gw.embed.EmbedStreamPacked(frames_of(frame)) for r in f.responses
        }
        monkeypatch.undo()

        async def singles() -> AsyncIterator[embed_pb2.EmbedStreamRequest]:
            for request in frame.requests:
                yield request

        alone = {r.request_id: r async for r in gw.embed.EmbedStream(singles())}
    assert groups == [4]
    assert [i.content.text for i in provider.seen].count("same") == 1
    assert packed["2"].error.message == "content.text: 'a bad text' is refused by the provider"
    assert packed["4"].error.code == INVALID.value[0] and packed["4"].error.message.startswith(
        "options.dimension"
    )
    for key in ("0", "1", "3"):
        assert packed[key].result.embeddings == alone[key].result.embeddings  # (those came from the cache)
        assert packed[key].dimension == alone[key].dimension == 256
    assert packed["3"].result.embeddings[0].f32 and not packed["3"].result.embeddings[0].values


async def test_fsync_always_still_commits_each_packed_vector_on_its_own(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "data", fsync="always") as gw:
        await gw.collections.CreateCollection(
            collections_pb2.CreateCollectionRequest(
                config=collections_pb2.CollectionConfig(name="a", dimension=256)
            )
        )
        frame = vector_frame("a", 6)
        acks = [a async for f in gw.data.IngestPacked(frames_of(frame)) for a in f.responses]
        assert len(acks) == 6 and all(a.stored for a in acks)
        value = gw.app.metrics.registry.get_sample_value
        assert value("onespace_commit_items_count", {"collection": "a"}) == 6


async def test_a_slow_item_holds_back_no_other_answer_of_its_group(tmp_path: Path) -> None:
    """A group's answers go out as they finish: while one item's embedding is held (a call
    backing off after a throttle, say), the rest of its group are answered (EmbedStreamPacked),
    and stored and acked (IngestPacked); the held item is answered once it is back."""
    gate = asyncio.Event()
    provider = ScriptedProvider(gate=gate, gated_text="slow")
    async with running_gateway(tmp_path / "data", provider) as gw:
        await gw.collections.CreateCollection(
            collections_pb2.CreateCollectionRequest(config=collections_pb2.CollectionConfig(name="c"))
        )
        embeds = gw.embed.EmbedStreamPacked(frames_of(embed_frame("one", "slow", "two", "three")))
        ingest = gw.data.IngestPacked(
            frames_of(
                data_pb2.IngestPackedRequest(
                    requests=[
                        data_pb2.IngestRequest(
                            request_id=str(n),
                            collection="c",
                            item=data_pb2.Item(id=t, content=common_pb2.Content(text=t)),
                        )
                        for n, t in enumerate(["four", "slow", "five"])
                    ]
                )
            )
        )
        answered: dict[str, embed_pb2.EmbedStreamResponse] = {}
        acked: dict[str, data_pb2.IngestResponse] = {}
        async with asyncio.timeout(60):  # a guard only: without answers in parts this waits for the gate
            while len(answered) < 3:
                answered.update((r.request_id, r) for r in (await embeds.read()).responses)
            while len(acked) < 2:
                acked.update((a.request_id, a) for a in (await ingest.read()).responses)
            stored = await gw.data.Get(data_pb2.GetRequest(collection="c", ids=["four", "five", "slow"]))
        assert not gate.is_set()
        assert set(answered) == {"0", "2", "3"} and all(r.HasField("result") for r in answered.values())
        assert set(acked) == {"0", "2"} and all(a.stored for a in acked.values())
        assert [i.id for i in stored.items] == ["four", "five"] and list(stored.missing_ids) == ["slow"]
        gate.set()
        answered.update((r.request_id, r) for r in await rest_of(embeds))
        acked.update((a.request_id, a) for a in await rest_of(ingest))
        assert answered["1"].HasField("result") and acked["1"].stored
        got = await gw.data.Get(data_pb2.GetRequest(collection="c", ids=["slow"]))
        assert [i.id for i in got.items] == ["slow"]
