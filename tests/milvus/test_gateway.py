"""End to end: a real in-process gateway on 127.0.0.1:0 whose collections live in Milvus
(milvus-lite), driven over a real gRPC channel by the typed client; then a second gateway on the
same database (a restart, or another replica) serves the same data."""

# ruff: noqa: E402  (the imports follow the check that the `milvus` extra is installed)
from __future__ import annotations

from tests.milvus.conftest import skip_without_milvus

skip_without_milvus()

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from onespace.app import App
from onespace.milvus import MilvusBackend
from onespace_client import AsyncClient, OnespaceClientError, item, vector, where
from tests import harness

DIM = 256


@contextlib.asynccontextmanager
async def milvus_gateway(tmp_path: Path) -> AsyncIterator[tuple[App, MilvusBackend]]:
    """`App.build` with `--store milvus --milvus-uri <file>.db` (milvus-lite in process)."""
    settings = harness.test_settings(
        tmp_path / "data", store="milvus", milvus_uri=str(tmp_path / "milvus.db")
    )
    app = App.build(settings)
    backend = app.gateway.store
    assert isinstance(backend, MilvusBackend)
    await app.start()
    try:
        yield app, backend
    finally:
        await app.stop()


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


async def test_upsert_search_get_delete_over_grpc(tmp_path: Path) -> None:
    data = vectors(40)
    meta = {i: {"lang": ("en", "fr")[i % 2], "year": str(1990 + i)} for i in range(40)}
    meta[3]["year"] = "n/a"
    async with milvus_gateway(tmp_path) as (app, backend), AsyncClient(f"127.0.0.1:{app.port}") as client:
        created = await client.create_collection("docs", dimension=DIM, index_dimension=64)
        assert created.config.index_dimension == 64
        await client.upsert("docs", [item(f"v{i}", data[i].tolist(), meta[i]) for i in range(40)])
        await client.upsert(
            "docs", [item("t1", "a text item, embedded by the local provider", {"lang": "en"})]
        )
        assert (await client.get_collection("docs")).count == 41
        assert [c.config.name for c in await client.list_collections()] == ["docs"]

        hits = (await client.search("docs", vector=data[7].tolist(), k=3)).hits
        assert hits[0].id == "v7" and hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert [h.id for h in (await client.search("docs", id="v9", k=1)).hits] == ["v9"]
        assert (await client.search("docs", vector=data[7].tolist(), k=3, dimension=32)).hits[0].id == "v7"
        french = await client.search(
            "docs", vector=data[7].tolist(), k=50, conditions=[where("lang").equals("fr")]
        )
        assert {h.id for h in french.hits} == {f"v{i}" for i in range(1, 40, 2)}
        recent = await client.search(
            "docs", vector=data[0].tolist(), k=50, conditions=[where("year").range(gte=2025)]
        )
        assert {h.id for h in recent.hits} == {f"v{i}" for i in range(35, 40)}
        texts = await client.search("docs", vector=data[0].tolist(), k=50, modalities=["text"])
        assert [h.id for h in texts.hits] == ["t1"]
        old = await client.search(
            "docs", vector=data[0].tolist(), k=50, conditions=[where("year").range(lt=1994)]
        )
        assert {h.id for h in old.hits} == {"v0", "v1", "v2"}  # v3's "n/a" is not a number

        got = await client.get("docs", ["v5", "missing", "t1"], include_vectors=True)
        assert [i.id for i in got.items] == ["v5", "t1"] and list(got.missing_ids) == ["missing"]
        np.testing.assert_allclose(vector(got.items[0]), data[5], rtol=1e-3, atol=1e-3)  # f16 stored
        assert dict(got.items[0].metadata) == meta[5]

        assert await client.delete("docs", ["v5", "v6", "missing"]) == 2
        assert (await client.get("docs", ["v5"])).missing_ids == ["v5"]
        assert "v5" not in {h.id for h in (await client.search("docs", vector=data[5].tolist(), k=5)).hits}
        assert (await client.get_collection("docs")).count == 39
        assert app.gateway.store is backend and backend.get("docs").searches >= 6

    async with milvus_gateway(tmp_path) as (app, _), AsyncClient(f"127.0.0.1:{app.port}") as client:
        assert (await client.get_collection("docs")).count == 39
        assert (await client.search("docs", vector=data[8].tolist(), k=1)).hits[0].id == "v8"
        await client.delete_collection("docs")
        with pytest.raises(OnespaceClientError) as gone:
            await client.search("docs", vector=data[8].tolist(), k=1)
        assert gone.value.code is grpc.StatusCode.NOT_FOUND
        assert await client.list_collections() == []
