"""The whole path: create a collection, stream-ingest a mixed catalog, search it every way, delete,
restart on the same data dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, search_pb2
from tests.harness import Running, running_gateway
from tests.integration.catalog import MODALITY, catalog


async def _requests(collection: str, items: list[data_pb2.Item]) -> AsyncIterator[data_pb2.IngestRequest]:
    for n, item in enumerate(items):
        yield data_pb2.IngestRequest(request_id=f"r{n}", collection=collection, item=item)


async def create_and_ingest(gw: Running, name: str = "media", **config: int) -> list[data_pb2.Item]:
    await gw.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(config=collections_pb2.CollectionConfig(name=name, **config))
    )
    items = catalog()
    acks = [ack async for ack in gw.data.Ingest(_requests(name, items))]
    assert sorted(a.request_id for a in acks) == sorted(f"r{n}" for n in range(len(items)))
    failed = [(a.id, a.error.message) for a in acks if a.WhichOneof("outcome") != "stored"]
    assert failed == []
    return items


async def search(gw: Running, **kwargs: object) -> search_pb2.SearchResponse:
    return await gw.search.Search(search_pb2.SearchRequest(collection="media", **kwargs))  # type: ignore[arg-type]


async def test_ingest_then_search_each_item_by_its_own_content(gateway: Running) -> None:
    items = await create_and_ingest(gateway, index_dimension=256)
    got = await gateway.collections.GetCollection(collections_pb2.GetCollectionRequest(name="media"))
    assert got.collection.count == len(items)
    assert got.collection.config.dimension == 3072 and got.collection.config.index_dimension == 256
    for item in items:
        response = await search(gateway, content=item.content, k=3)
        assert response.hits[0].id == item.id, item.id
        assert response.hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert response.hits[0].modality == MODALITY[item.id[0]]
        assert response.model and response.dimension == 3072
        assert response.timings.total_seconds > 0 and response.timings.index_seconds > 0


async def test_filters_by_modality_and_metadata(gateway: Running) -> None:
    await create_and_ingest(gateway)
    query = common_pb2.Content(text="cats purr in the sun")
    for modality in MODALITY.values():
        response = await search(gateway, content=query, k=20, filter=search_pb2.Filter(modalities=[modality]))
        assert response.hits and {h.modality for h in response.hits} == {modality}
    response = await search(gateway, content=query, k=20, filter=search_pb2.Filter(metadata={"kind": "tone"}))
    assert sorted(h.id for h in response.hits) == ["a-440", "a-880"]
    response = await search(
        gateway, content=query, k=20, filter=search_pb2.Filter(metadata={"kind": "text", "lang": "fr"})
    )
    assert list(response.hits) == []


async def test_search_by_vector_by_id_and_at_a_smaller_dimension(gateway: Running) -> None:
    await create_and_ingest(gateway, index_dimension=384)
    by_id = await search(gateway, id="t-dogs", k=2)
    assert by_id.hits[0].id == "t-dogs"
    stored = await gateway.data.Get(
        data_pb2.GetRequest(collection="media", ids=["t-dogs"], include_vectors=True)
    )
    vector = list(stored.items[0].vector)
    assert len(vector) == 3072
    by_vector = await search(gateway, vector=common_pb2.Vector(values=vector), k=1)
    assert by_vector.hits[0].id == "t-dogs"
    small = await search(gateway, vector=common_pb2.Vector(values=vector[:256]), k=1, dimension=256)
    assert small.hits[0].id == "t-dogs" and small.dimension == 256
    assert small.hits[0].score == pytest.approx(1.0, abs=1e-3)


async def test_shared_words_rank_closer(gateway: Running) -> None:
    await create_and_ingest(gateway)
    response = await search(
        gateway,
        content=common_pb2.Content(text="the dogs bark at the mail carrier"),
        k=4,
        filter=search_pb2.Filter(modalities=[common_pb2.MODALITY_TEXT]),
    )
    assert response.hits[0].id == "t-dogs"


async def test_delete_removes_items_from_results_and_upsert_replaces(gateway: Running) -> None:
    items = await create_and_ingest(gateway)
    deleted = await gateway.data.Delete(data_pb2.DeleteRequest(collection="media", ids=["t-cats", "nope"]))
    assert deleted.deleted == 1
    response = await search(gateway, content=items[0].content, k=20)
    assert "t-cats" not in [h.id for h in response.hits]
    got = await gateway.data.Get(data_pb2.GetRequest(collection="media", ids=["t-cats", "t-dogs"]))
    assert list(got.missing_ids) == ["t-cats"] and got.items[0].id == "t-dogs"
    # upsert replaces: t-dogs now holds the rain text
    await gateway.data.Upsert(
        data_pb2.UpsertRequest(
            collection="media",
            items=[
                data_pb2.Item(
                    id="t-dogs",
                    content=common_pb2.Content(text="heavy rain flooded the narrow streets"),
                    metadata={"kind": "replaced"},
                )
            ],
        )
    )
    got = await gateway.data.Get(data_pb2.GetRequest(collection="media", ids=["t-dogs"]))
    assert got.items[0].metadata["kind"] == "replaced"
    count = await gateway.collections.GetCollection(collections_pb2.GetCollectionRequest(name="media"))
    assert count.collection.count == len(items) - 1


async def test_items_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_gateway(data) as gw:
        items = await create_and_ingest(gw, index_dimension=256)
        await gw.data.Delete(data_pb2.DeleteRequest(collection="media", ids=["a-880"]))
    async with running_gateway(data) as gw:
        listed = await gw.collections.ListCollections(collections_pb2.ListCollectionsRequest())
        assert [c.config.name for c in listed.collections] == ["media"]
        assert listed.collections[0].count == len(items) - 1
        for item in items:
            response = await search(gw, content=item.content, k=1)
            if item.id == "a-880":
                assert response.hits[0].id != "a-880"
            else:
                assert response.hits[0].id == item.id
                assert response.hits[0].metadata == item.metadata


async def test_collections_list_get_delete(gateway: Running) -> None:
    for name in ("b", "a"):
        await gateway.collections.CreateCollection(
            collections_pb2.CreateCollectionRequest(
                config=collections_pb2.CollectionConfig(name=name, dimension=256)
            )
        )
    listed = await gateway.collections.ListCollections(collections_pb2.ListCollectionsRequest())
    assert sorted(c.config.name for c in listed.collections) == ["a", "b"]
    a = listed.collections[0].config
    assert a.metric == collections_pb2.METRIC_COSINE and a.dtype == collections_pb2.INDEX_DTYPE_F16
    assert a.hnsw.connectivity == 16 and a.rerank_factor >= 1
    await gateway.collections.DeleteCollection(collections_pb2.DeleteCollectionRequest(name="a"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.collections.GetCollection(collections_pb2.GetCollectionRequest(name="a"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
