"""Bad input gets a clear status naming the field and the reason, and nothing stored is lost."""

from __future__ import annotations

import math

import grpc
import pytest

from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, embed_pb2, search_pb2
from tests import media
from tests.harness import Running

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def expect(code: grpc.StatusCode, call: object, *fragments: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    assert err.value.code() == code, err.value.details()
    details = err.value.details() or ""
    for fragment in fragments:
        assert fragment in details, details
    return details


def embed(gw: Running, content: common_pb2.Content, **options: int) -> object:
    return gw.embed.Embed(embed_pb2.EmbedRequest(items=[content], options=common_pb2.EmbedOptions(**options)))


@pytest.fixture
async def stored(gateway: Running) -> Running:
    await gateway.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(name="keep", dimension=256)
        )
    )
    await gateway.data.Upsert(
        data_pb2.UpsertRequest(
            collection="keep",
            items=[
                data_pb2.Item(id="a", content=common_pb2.Content(text="alpha beta gamma")),
                data_pb2.Item(id="b", content=common_pb2.Content(image=media.png(1))),
            ],
        )
    )
    return gateway


async def assert_intact(gw: Running) -> None:
    got = await gw.collections.GetCollection(collections_pb2.GetCollectionRequest(name="keep"))
    assert got.collection.count == 2
    hits = await gw.search.Search(
        search_pb2.SearchRequest(collection="keep", content=common_pb2.Content(text="alpha beta gamma"), k=2)
    )
    assert hits.hits[0].id == "a" and hits.hits[0].score == pytest.approx(1.0, abs=1e-3)


async def test_bad_content(stored: Running) -> None:
    gw = stored
    await expect(INVALID, embed(gw, common_pb2.Content(text="")), "items[0].text", "empty")
    await expect(INVALID, embed(gw, common_pb2.Content(text="   ")), "items[0].text", "empty")
    await expect(
        INVALID,
        embed(gw, common_pb2.Content(text="x" * 9000, truncation_mode=common_pb2.TRUNCATION_MODE_NONE)),
        "items[0].text",
        "8192",
    )
    await expect(INVALID, embed(gw, common_pb2.Content(text="x" * 60_000)), "items[0].text", "50000")
    await expect(
        INVALID,
        embed(gw, common_pb2.Content(image=media.png(1), format="jpeg")),
        "items[0].image",
        "png",
        "jpeg",
    )
    await expect(
        INVALID, embed(gw, common_pb2.Content(image=b"BM" + bytes(100))), "items[0].image", "recognised"
    )
    await expect(
        INVALID, embed(gw, common_pb2.Content(image=media.png(1), format="tiff")), "items[0].format", "tiff"
    )
    await expect(INVALID, embed(gw, common_pb2.Content(audio=media.png(1))), "items[0].audio", "png")
    await expect(INVALID, embed(gw, common_pb2.Content(image=b"")), "items[0].image", "empty")
    await expect(INVALID, embed(gw, common_pb2.Content()), "items[0]", "set one of")
    truncated = media.png(2)[:60]
    await expect(INVALID, embed(gw, common_pb2.Content(image=truncated)), "image", "decode")
    await expect(INVALID, embed(gw, common_pb2.Content(audio=media.wav(440, seconds=31))), "audio", "30")
    await expect(INVALID, embed(gw, common_pb2.Content(text="ok"), dimension=512), "options.dimension", "512")
    await expect(INVALID, gw.embed.Embed(embed_pb2.EmbedRequest()), "items", "at least one")
    await expect(
        grpc.StatusCode.NOT_FOUND,
        gw.embed.Embed(
            embed_pb2.EmbedRequest(
                items=[common_pb2.Content(text="x")], options=common_pb2.EmbedOptions(model="no.such-model")
            )
        ),
        "options.model",
        "no.such-model",
    )
    await assert_intact(gw)


async def test_oversized_payload(stored: Running) -> None:
    big = media.png(1) + bytes(19_000_000)  # 25.3 MB after base64: over the inline limit
    await expect(INVALID, embed(stored, common_pb2.Content(image=big)), "items[0].image", "25000000")
    await assert_intact(stored)


async def test_bad_vectors_and_queries(stored: Running) -> None:
    gw = stored
    search = gw.search.Search
    await expect(
        INVALID,
        search(search_pb2.SearchRequest(collection="keep", vector=common_pb2.Vector(values=[0.1] * 100))),
        "vector",
        "100",
        "256",
    )
    await expect(
        INVALID,
        search(
            search_pb2.SearchRequest(
                collection="keep", vector=common_pb2.Vector(values=[math.nan] + [0.1] * 255)
            )
        ),
        "vector",
        "NaN",
    )
    await expect(
        INVALID,
        search(
            search_pb2.SearchRequest(collection="keep", vector=common_pb2.Vector(values=[0.1] * 256), k=5000)
        ),
        "k",
        "5000",
    )
    await expect(
        INVALID,
        search(search_pb2.SearchRequest(collection="keep", id="a", dimension=512)),
        "dimension",
        "512",
    )
    await expect(INVALID, search(search_pb2.SearchRequest(collection="keep")), "query")
    await expect(
        grpc.StatusCode.NOT_FOUND, search(search_pb2.SearchRequest(collection="keep", id="zzz")), "zzz"
    )
    await expect(
        grpc.StatusCode.NOT_FOUND, search(search_pb2.SearchRequest(collection="nope", id="a")), "nope"
    )
    upsert = gw.data.Upsert
    await expect(
        INVALID,
        upsert(
            data_pb2.UpsertRequest(
                collection="keep", items=[data_pb2.Item(id="a", vector=common_pb2.Vector(values=[0.5] * 10))]
            )
        ),
        "vector",
        "10",
    )
    await expect(
        INVALID,
        upsert(
            data_pb2.UpsertRequest(
                collection="keep",
                items=[
                    data_pb2.Item(id="c", content=common_pb2.Content(text="fine")),
                    data_pb2.Item(id="a", content=common_pb2.Content(text="")),
                ],
            )
        ),
        "items[1]",
        "empty",
    )
    await expect(
        INVALID,
        upsert(
            data_pb2.UpsertRequest(
                collection="keep",
                items=[data_pb2.Item(id="c", vector=common_pb2.Vector(values=[math.inf] * 256))],
            )
        ),
        "vector",
    )
    await expect(
        INVALID,
        upsert(data_pb2.UpsertRequest(collection="keep", items=[data_pb2.Item(id="c")])),
        "items[0].source",
    )
    await expect(
        grpc.StatusCode.NOT_FOUND,
        upsert(
            data_pb2.UpsertRequest(
                collection="nope", items=[data_pb2.Item(id="c", content=common_pb2.Content(text="x"))]
            )
        ),
        "nope",
    )
    await assert_intact(gw)


async def test_bad_collections(stored: Running) -> None:
    create = stored.collections.CreateCollection
    await expect(
        grpc.StatusCode.ALREADY_EXISTS,
        create(collections_pb2.CreateCollectionRequest(config=collections_pb2.CollectionConfig(name="keep"))),
        "keep",
    )
    await expect(
        INVALID,
        create(
            collections_pb2.CreateCollectionRequest(
                config=collections_pb2.CollectionConfig(name="big", dimension=256, index_dimension=1024)
            )
        ),
        "config.index_dimension",
        "1024",
    )
    await expect(
        INVALID,
        create(
            collections_pb2.CreateCollectionRequest(
                config=collections_pb2.CollectionConfig(name="odd", dimension=500)
            )
        ),
        "config.dimension",
        "500",
    )
    await expect(
        INVALID,
        create(
            collections_pb2.CreateCollectionRequest(
                config=collections_pb2.CollectionConfig(name="bulk", max_unindexed_rows=(1 << 20) + 1)
            )
        ),
        "config.max_unindexed_rows",
        "1048577 is larger than the maximum 1048576",
    )
    await expect(
        INVALID,
        create(
            collections_pb2.CreateCollectionRequest(config=collections_pb2.CollectionConfig(name="bad/name"))
        ),
        "config.name",
    )
    await expect(
        grpc.StatusCode.NOT_FOUND,
        stored.collections.DeleteCollection(collections_pb2.DeleteCollectionRequest(name="nope")),
        "nope",
    )
    await assert_intact(stored)


async def test_bad_stream_items_get_errors_and_the_stream_goes_on(stored: Running) -> None:
    async def requests():  # type: ignore[no-untyped-def]
        yield data_pb2.IngestRequest(
            request_id="1", collection="keep", item=data_pb2.Item(id="c", content=common_pb2.Content(text=""))
        )
        yield data_pb2.IngestRequest(
            request_id="2",
            collection="nope",
            item=data_pb2.Item(id="d", content=common_pb2.Content(text="x")),
        )
        yield data_pb2.IngestRequest(
            request_id="3",
            collection="keep",
            item=data_pb2.Item(id="e", content=common_pb2.Content(text="fine")),
        )

    acks = {a.request_id: a async for a in stored.data.Ingest(requests())}
    assert acks["1"].error.code == INVALID.value[0] and "item.content.text" in acks["1"].error.message
    assert acks["2"].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert acks["3"].stored


async def test_a_bad_query_fails_alone_not_its_batch(stored: Running) -> None:
    import asyncio

    good = [
        stored.search.Search(
            search_pb2.SearchRequest(
                collection="keep", content=common_pb2.Content(text="alpha beta gamma"), k=1
            )
        )
        for _ in range(5)
    ]
    zero = stored.search.Search(
        search_pb2.SearchRequest(collection="keep", vector=common_pb2.Vector(values=[0.0] * 256), k=1)
    )
    outcomes = await asyncio.gather(zero, *good, return_exceptions=True)
    assert isinstance(outcomes[0], grpc.aio.AioRpcError) and outcomes[0].code() == INVALID
    assert "vector" in (outcomes[0].details() or "")
    assert all(isinstance(o, search_pb2.SearchResponse) and o.hits[0].id == "a" for o in outcomes[1:])
