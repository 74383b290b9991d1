"""SearchBatch and packed float32 vectors on the wire, against a real gateway over a real channel."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from onespace_client import AsyncClient, OnespaceClientError, item, vector, where
from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, embed_pb2, search_pb2
from tests.harness import Running, index_all

DIM = 256
F32 = common_pb2.VECTOR_FORMAT_F32


def vectors(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def packed(v: np.ndarray) -> common_pb2.Vector:
    return common_pb2.Vector(f32=v.astype("<f4").tobytes())


@pytest.fixture
async def filled(gateway: Running) -> tuple[Running, np.ndarray]:
    data = vectors(400, seed=1)
    await gateway.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(
                name="v", dimension=DIM, stored_dtype=collections_pb2.STORED_DTYPE_F32
            )
        )
    )
    items = [
        data_pb2.Item(id=f"i{n}", vector=packed(row), metadata={"n": str(n)}) for n, row in enumerate(data)
    ]
    for start in range(0, len(items), 200):
        await gateway.data.Upsert(data_pb2.UpsertRequest(collection="v", items=items[start : start + 200]))
    await index_all(gateway, "v")  # the tests compare searches made one after another
    return gateway, data


async def test_a_batch_answers_like_single_searches_in_order(filled: tuple[Running, np.ndarray]) -> None:
    gw, data = filled
    queries = vectors(40, seed=2)
    requests = [
        search_pb2.SearchRequest(collection="v", vector=packed(q), k=1 + n % 7, dimension=DIM - 16 * (n % 3))
        for n, q in enumerate(queries)
    ]
    requests.append(search_pb2.SearchRequest(collection="v", id="i5", k=3))
    batch = await gw.search.SearchBatch(search_pb2.SearchBatchRequest(queries=requests))
    assert len(batch.results) == len(requests)
    for request, answer in zip(requests, batch.results, strict=True):
        alone = await gw.search.Search(request)
        assert [(h.id, h.score) for h in answer.hits] == [(h.id, h.score) for h in alone.hits]
        assert len(answer.hits) == request.k and answer.dimension == (request.dimension or DIM)
    exact = np.argsort(-(data @ queries[0]))[:1]
    assert batch.results[0].hits[0].id == f"i{exact[0]}"
    assert batch.results[-1].hits[0].id == "i5"


async def test_a_bad_query_fails_the_batch_naming_it(filled: tuple[Running, np.ndarray]) -> None:
    gw, _ = filled
    good = search_pb2.SearchRequest(collection="v", vector=packed(vectors(1, seed=3)[0]))
    cases = [
        (
            search_pb2.SearchRequest(collection="v", vector=common_pb2.Vector(f32=b"\0" * 10)),
            "queries[1].vector.f32",
            "whole number",
        ),
        (
            search_pb2.SearchRequest(collection="v", vector=packed(np.ones(DIM + 1))),
            "queries[1].vector",
            f"length {DIM + 1}",
        ),
        (
            search_pb2.SearchRequest(collection="v", vector=packed(np.full(DIM, np.nan))),
            "queries[1].vector",
            "NaN",
        ),
        (
            search_pb2.SearchRequest(collection="v", vector=packed(np.ones(DIM)), k=5000),
            "queries[1].k",
            "outside",
        ),
        (
            search_pb2.SearchRequest(collection="v", vector=packed(np.ones(DIM)), vector_format=9),
            "queries[1].vector_format",
            "unknown",
        ),
        (search_pb2.SearchRequest(collection="v"), "queries[1].query", "set one of"),
        (
            search_pb2.SearchRequest(
                collection="v", vector=common_pb2.Vector(values=[1.0] * DIM, f32=b"\0" * 4 * DIM)
            ),
            "queries[1].vector",
            "not both",
        ),
    ]
    for bad, field, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.search.SearchBatch(search_pb2.SearchBatchRequest(queries=[good, bad, good]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.value.details())
        assert field in (err.value.details() or "") and reason in (err.value.details() or ""), (
            err.value.details()
        )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        missing = search_pb2.SearchRequest(collection="nope", vector=packed(np.ones(DIM)))
        await gw.search.SearchBatch(search_pb2.SearchBatchRequest(queries=[good, missing]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "queries[1]" in (err.value.details() or "")
    for count in (0, 257):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.search.SearchBatch(search_pb2.SearchBatchRequest(queries=[good] * count))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "queries" in (
            err.value.details() or ""
        )
    got = await gw.data.Get(data_pb2.GetRequest(collection="v", ids=["i0"]))
    assert got.items[0].metadata["n"] == "0"  # nothing stored was touched


async def test_packed_and_float_forms_carry_the_same_vectors(filled: tuple[Running, np.ndarray]) -> None:
    gw, data = filled
    floats = search_pb2.SearchRequest(
        collection="v", vector=common_pb2.Vector(values=data[7].tolist()), k=3, include_vectors=True
    )
    fast = search_pb2.SearchRequest(
        collection="v", vector=packed(data[7]), k=3, include_vectors=True, vector_format=F32
    )
    slow_hits, fast_hits = (await gw.search.Search(floats)).hits, (await gw.search.Search(fast)).hits
    assert [h.id for h in slow_hits] == [h.id for h in fast_hits] and fast_hits[0].id == "i7"
    assert (
        not fast_hits[0].vector
        and fast_hits[0].vector_f32
        and slow_hits[0].vector
        and not slow_hits[0].vector_f32
    )
    np.testing.assert_array_equal(vector(fast_hits[0]), data[7])
    np.testing.assert_array_equal(vector(slow_hits[0]), data[7])
    got = await gw.data.Get(
        data_pb2.GetRequest(collection="v", ids=["i9"], include_vectors=True, vector_format=F32)
    )
    np.testing.assert_array_equal(vector(got.items[0]), data[9])
    content = [common_pb2.Content(text="the same text")]
    as_floats = await gw.embed.Embed(embed_pb2.EmbedRequest(items=content))
    as_bytes = await gw.embed.Embed(
        embed_pb2.EmbedRequest(items=content, options=common_pb2.EmbedOptions(vector_format=F32))
    )
    a, b = as_floats.results[0].embeddings[0], as_bytes.results[0].embeddings[0]
    assert a.values and not a.f32 and b.f32 and not b.values
    np.testing.assert_array_equal(vector(a), vector(b))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.embed.Embed(
            embed_pb2.EmbedRequest(items=content, options=common_pb2.EmbedOptions(vector_format=7))
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "options.vector_format" in (
        err.value.details() or ""
    )


async def test_the_client_sends_and_reads_packed_vectors(filled: tuple[Running, np.ndarray]) -> None:
    gw, data = filled
    async with AsyncClient(gw.target) as client:
        await client.upsert("v", [item("np", data[3] * 2)])  # a numpy array, packed by the client
        hits = (await client.search("v", vector=data[3], k=2, include_vectors=True)).hits
        assert {h.id for h in hits} == {"np", "i3"} and all(h.vector_f32 for h in hits)
        np.testing.assert_allclose(vector(hits[0]), data[3] * (2 if hits[0].id == "np" else 1), rtol=1e-6)
        embedded = (await client.embed(["some text"])).results[0].embeddings[0]
        assert embedded.f32 and len(vector(embedded)) == len(embedded.f32) // 4


async def test_the_client_searches_a_matrix_in_one_call(filled: tuple[Running, np.ndarray]) -> None:
    """`AsyncClient.search_batch` takes a 2-D array (or a list of vectors) and gives what one
    `search` per row gives, in order, with the shared filter, k and dimension."""
    gw, data = filled
    queries = vectors(24, seed=5)
    async with AsyncClient(gw.target) as client:
        batch = await client.search_batch("v", queries, k=4, include_vectors=True)
        alone = [await client.search("v", vector=q, k=4, include_vectors=True) for q in queries]
        listed = await client.search_batch("v", [q.tolist() for q in queries[:3]], k=4)
        few = await client.search_batch(
            "v", queries[:5], k=50, dimension=128, conditions=[where("n").range(lt=100)]
        )
        with pytest.raises(ValueError, match="2-D"):
            await client.search_batch("v", queries[0])
        with pytest.raises(ValueError, match="2-D"):
            await client.search_batch("v", queries[0].tolist())
        with pytest.raises(OnespaceClientError) as too_long:
            await client.search_batch("v", np.ones((2, DIM + 1), dtype=np.float32))
        with pytest.raises(OnespaceClientError) as unknown:
            await client.search_batch("nope", queries[:2])
    assert len(batch) == len(queries)
    pairs = [[(h.id, h.score) for h in r.hits] for r in batch]
    assert pairs == [[(h.id, h.score) for h in r.hits] for r in alone]
    assert [[h.id for h in r.hits] for r in listed] == [[h.id for h in r.hits] for r in alone[:3]]
    np.testing.assert_array_equal(vector(batch[0].hits[0]), data[int(batch[0].hits[0].id[1:])])
    assert all(r.dimension == 128 and len(r.hits) == 50 for r in few)
    assert all(int(h.id[1:]) < 100 for r in few for h in r.hits)
    assert too_long.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "queries[0].vector" in too_long.value.details and f"length {DIM + 1}" in too_long.value.details
    assert unknown.value.code is grpc.StatusCode.NOT_FOUND


async def test_short_searches_run_on_the_event_loop_and_filters_that_read_metadata_on_a_thread(
    filled: tuple[Running, np.ndarray],
) -> None:
    """A collection's first search runs on a thread and is timed; once its searches are known to
    be short, unfiltered ones run on the event loop (`search_inline_ms`), with the same exact
    answers; a search whose filter reads metadata from SQLite always goes to a thread."""
    gw, data = filled
    sample = gw.app.metrics.registry.get_sample_value

    def calls(runs_on: str) -> float:
        labels = {"collection": "v", "runs_on": runs_on}
        return sample("onespace_search_index_calls_total", labels) or 0.0

    queries = vectors(12, seed=6)
    answers: list[tuple[np.ndarray, list[str]]] = []
    async with AsyncClient(gw.target) as client:

        async def search(q: np.ndarray) -> None:
            answers.append((q, [h.id for h in (await client.search("v", vector=q, k=5)).hits]))

        for n in range(200):  # the first on a thread; then as soon as the estimate allows
            await search(queries[n % len(queries)])
            if calls("event_loop"):
                break
        assert calls("thread") >= 1 and calls("event_loop") == 1, "200 searches, none on the event loop"
        for q in queries:  # where each runs depends on its timing: a stalled one goes to a thread
            await search(q)
        before = calls("thread"), calls("event_loop")
        below_100 = [where("n").range(lt=100)]
        filtered = [await client.search("v", vector=q, k=5, conditions=below_100) for q in queries[:3]]
        assert (calls("thread"), calls("event_loop")) == (before[0] + 3, before[1])
    for q, ids in answers:
        assert ids == [f"i{n}" for n in np.argsort(-(data @ q))[:5]]
    for q, answer in zip(queries, filtered, strict=False):
        assert [h.id for h in answer.hits] == [f"i{n}" for n in np.argsort(-(data[:100] @ q))[:5]]
