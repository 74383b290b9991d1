"""Recall on live traffic (`--recall-sample-budget`): searches a real gateway served are scanned
exactly in the background and their recall@k observed; checked against the test's own brute force
over the same stored vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onespace_client import AsyncClient, where
from onespace_client.v1 import collections_pb2, common_pb2, data_pb2
from tests.harness import Running, index_all, running_gateway

DIM = 256
K = 10


def _vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = (1.0 + np.arange(DIM)) ** -0.5  # front-loaded, as Matryoshka embeddings are
    centres = rng.standard_normal((40, DIM)) * scale
    rows = centres[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, DIM)) * scale
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


async def _starved_collection(gw: Running, data: np.ndarray) -> None:
    """A 16-d i8 prefix index (of 256) walked with ef 1 and no rerank margin: it misses true neighbours."""
    config = collections_pb2.CollectionConfig(
        name="r",
        dimension=DIM,
        index_dimension=16,
        dtype=collections_pb2.INDEX_DTYPE_I8,
        stored_dtype=collections_pb2.STORED_DTYPE_F32,
        rerank_factor=1,
        hnsw=collections_pb2.HnswParams(expansion_search=1),
    )
    await gw.collections.CreateCollection(collections_pb2.CreateCollectionRequest(config=config))
    for start in range(0, len(data), 250):
        items = [
            data_pb2.Item(
                id=f"i{n}", vector=common_pb2.Vector(f32=data[n].tobytes()), metadata={"half": str(n % 2)}
            )
            for n in range(start, min(start + 250, len(data)))
        ]
        await gw.data.Upsert(data_pb2.UpsertRequest(collection="r", items=items))
    await index_all(gw, "r")


async def test_sampled_searches_report_the_recall_a_brute_force_finds(tmp_path: Path) -> None:
    data = _vectors(3000, seed=1)
    async with running_gateway(tmp_path, recall_sample_budget=1.0) as gw:
        await _starved_collection(gw, data)
        sampler = gw.app.gateway.recall
        sample = gw.app.metrics.registry.get_sample_value
        labels = {"collection": "r"}
        async with AsyncClient(gw.target) as client:
            # a query the starved index answers imperfectly, by the test's own reckoning
            for query in _vectors(50, seed=2):
                hits = (await client.search("r", vector=query, k=K)).hits
                truth = {f"i{n}" for n in np.argsort(-(data @ query))[:K]}
                expected = len(truth & {h.id for h in hits}) / K
                if expected < 1.0:
                    break
            assert expected < 1.0, "every query found all its neighbours: the test could not fail"
            await sampler.settled()
            before = sampler.samples, sample("onespace_search_recall_count", labels) or 0.0
            assert before[1] == before[0]
            total_before = sample("onespace_search_recall_sum", labels) or 0.0
            for _ in range(200):  # each sample spaced by its own scan's time (a budget of 1 core)
                again = (await client.search("r", vector=query, k=K)).hits
                assert [h.id for h in again] == [h.id for h in hits]  # the same answer each time
                await sampler.settled()
                if sampler.samples >= before[0] + 5:
                    break
            taken = sampler.samples - before[0]
            assert taken >= 5, f"200 searches, {taken} samples"
            count = sample("onespace_search_recall_count", labels) - before[1]
            total = sample("onespace_search_recall_sum", labels) - total_before
            assert count == taken
            assert abs(total / count - expected) < 1e-9
            # a filter that reads metadata from disk is not sampled
            samples = sampler.samples
            for _ in range(20):
                await client.search("r", vector=query, k=K, conditions=[where("half").equals("1")])
                await sampler.settled()
            assert sampler.samples == samples


async def test_sampling_is_off_by_default(gateway: Running) -> None:
    await _starved_collection(gateway, _vectors(600, seed=3))
    async with AsyncClient(gateway.target) as client:
        for query in _vectors(20, seed=4):
            await client.search("r", vector=query, k=K)
    assert not gateway.app.gateway.recall.enabled and gateway.app.gateway.recall.samples == 0
    assert (
        gateway.app.metrics.registry.get_sample_value("onespace_search_recall_count", {"collection": "r"})
        is None
    )
