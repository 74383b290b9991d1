"""The storage engine through gRPC on a real in-process server, driven by the typed client: stats,
checkpoint and compaction, stored dtypes, metadata conditions and how malformed ones are refused;
then the CLI against the same server, and `onespace check` on the data directory it leaves."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from onespace.index.check import check_data_dir
from onespace_client import AsyncClient, OnespaceClientError, item, vector, where
from onespace_client.cli import main as cli_main
from onespace_client.v1 import collections_pb2, common_pb2, search_pb2
from tests.harness import Running, index_all, running_gateway

DIM = 256


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


async def test_stats_checkpoint_and_compaction(gateway: Running) -> None:
    data = vectors(200)
    async with AsyncClient(gateway.target) as client:
        await client.create_collection("docs", dimension=DIM)
        for start in (0, 100):
            await client.upsert(
                "docs", [item(f"d{i}", data[i].tolist(), {"n": str(i)}) for i in range(start, start + 100)]
            )
        got = await client.get_collection("docs")
        stats = got.stats
        assert got.HasField("stats") and got.count == stats.items == 200
        assert stats.seq >= 2 and stats.dead_rows == 0 and stats.index_tombstones == 0
        assert stats.vector_bytes == 200 * DIM * 2  # f16 rows
        assert stats.disk_bytes >= stats.vector_bytes and stats.index_bytes > 0

        before = time.time()
        checkpointed = (await client.checkpoint_collection("docs")).stats
        assert checkpointed.checkpoint_seq == checkpointed.seq == stats.seq
        assert before - 5 <= checkpointed.checkpoint_time <= time.time() + 5
        again = (await client.checkpoint_collection("docs")).stats  # nothing changed: a no-op
        assert (again.checkpoint_seq, again.checkpoint_time) == (
            checkpointed.seq,
            checkpointed.checkpoint_time,
        )

        await index_all(gateway, "docs")  # so that every removal leaves a tombstone
        gone = [f"d{i}" for i in range(0, 200, 2)]
        assert await client.delete("docs", gone) == 100
        deleted = (await client.get_collection("docs")).stats
        assert (deleted.items, deleted.dead_rows, deleted.index_tombstones) == (100, 100, 100)
        assert deleted.seq > checkpointed.checkpoint_seq

        compacted = await client.compact_collection("docs")
        after = compacted.stats
        assert (compacted.count, after.items, after.dead_rows, after.index_tombstones) == (100, 100, 0, 0)
        assert after.vector_bytes == 100 * DIM * 2
        live = [f"d{i}" for i in range(1, 200, 2)]
        got_items = await client.get("docs", live + gone[:3], include_vectors=True)
        assert [i.id for i in got_items.items] == live and list(got_items.missing_ids) == gone[:3]
        for i in range(1, 200, 2):
            hits = await client.search("docs", vector=data[i].tolist(), k=1)
            assert [h.id for h in hits.hits] == [f"d{i}"]
        assert [h.id for h in (await client.search("docs", id="d7", k=1)).hits] == ["d7"]
        assert (await client.get_collection("docs")).stats.dead_rows == 0

        registry = gateway.app.metrics.registry
        labels = {"collection": "docs"}
        assert (registry.get_sample_value("onespace_commit_items_sum", labels) or 0) >= 300  # 200 in, 100 out
        assert (registry.get_sample_value("onespace_commit_duration_seconds_count", labels) or 0) >= 3
        assert (registry.get_sample_value("onespace_checkpoint_duration_seconds_count", labels) or 0) >= 1
        assert registry.get_sample_value("onespace_compactions_total", labels) == 1
        assert (registry.get_sample_value("onespace_checkpoint_timestamp_seconds", labels) or 0) >= before - 5

        with pytest.raises(OnespaceClientError) as missing:
            await client.checkpoint_collection("nope")
        assert missing.value.code is grpc.StatusCode.NOT_FOUND
        with pytest.raises(OnespaceClientError) as missing:
            await client.compact_collection("nope")
        assert missing.value.code is grpc.StatusCode.NOT_FOUND


async def test_stored_dtype_f32_is_exact_and_f16_is_close(gateway: Running) -> None:
    data = vectors(20, seed=3) * 3.0
    async with AsyncClient(gateway.target) as client:
        exact = await client.create_collection("exact", dimension=DIM, stored_dtype="f32")
        half = await client.create_collection("half", dimension=DIM)
        assert exact.config.stored_dtype == collections_pb2.STORED_DTYPE_F32
        assert half.config.stored_dtype == collections_pb2.STORED_DTYPE_F16  # the default, filled in
        listed = {c.config.name: c.config.stored_dtype for c in await client.list_collections()}
        assert listed == {"exact": collections_pb2.STORED_DTYPE_F32, "half": collections_pb2.STORED_DTYPE_F16}
        for name in ("exact", "half"):
            await client.upsert(name, [item(f"v{i}", v.tolist()) for i, v in enumerate(data)])
        ids = [f"v{i}" for i in range(20)]
        stored = {
            name: np.array([vector(i) for i in (await client.get(name, ids, include_vectors=True)).items])
            for name in ("exact", "half")
        }
        hit = (await client.search("exact", vector=data[4].tolist(), k=1, include_vectors=True)).hits[0]
        assert (await client.get_collection("exact")).stats.vector_bytes == 20 * DIM * 4
    np.testing.assert_array_equal(stored["exact"].astype(np.float32), data)
    np.testing.assert_allclose(stored["half"], data, rtol=1e-3, atol=1e-3)
    assert not np.array_equal(stored["half"].astype(np.float32), data)  # it really is rounded
    assert hit.id == "v4"
    np.testing.assert_array_equal(vector(hit), data[4])


async def test_a_bulk_load_collection_keeps_its_tail_bound_and_reports_its_tail(gateway: Running) -> None:
    """`max_unindexed_rows` goes through CreateCollection, ListCollections and GetCollection; the
    rows a streamed ingest leaves to the indexer are in `stats.unindexed_rows` and searchable, and
    `stats.unindexed_limit` is the bound in force (the default one where none was set)."""
    data = vectors(3000, seed=4)
    async with AsyncClient(gateway.target) as client:
        created = await client.create_collection("bulk", dimension=DIM, max_unindexed_rows=500_000)
        assert created.config.max_unindexed_rows == 500_000
        plain = await client.create_collection("plain", dimension=DIM)
        assert plain.config.max_unindexed_rows == 0  # the server's default, left unset
        listed = {c.config.name: c.config.max_unindexed_rows for c in await client.list_collections()}
        assert listed == {"bulk": 500_000, "plain": 0}
        acks = [a async for a in client.ingest("bulk", [item(f"b{i}", v) for i, v in enumerate(data)])]
        assert sum(a.HasField("stored") for a in acks) == 3000
        bulk = (await client.get_collection("bulk")).stats
        assert 0 <= bulk.unindexed_rows <= 3000 and bulk.unindexed_limit == 500_000
        # the default bound follows the index dimension: 16,384 x 1224 / (256 + 200), in 1,024s
        assert (await client.get_collection("plain")).stats.unindexed_limit == 43_008
        hits = (await client.search("bulk", vector=data[2999].tolist(), k=1)).hits
        assert [h.id for h in hits] == ["b2999"]
        await index_all(gateway, "bulk")  # the background indexer drains the tail
        checkpointed = await client.checkpoint_collection("bulk")
        assert checkpointed.stats.unindexed_rows == 0 and checkpointed.stats.items == 3000
        assert checkpointed.config.max_unindexed_rows == 500_000


async def test_update_collection_tunes_search_without_a_rebuild(tmp_path: Path) -> None:
    """UpdateCollection changes expansion_search, rerank_factor and max_unindexed_rows: the
    response, GetCollection and ListCollections show it, the next search walks the graph by it,
    a restart keeps it; unset fields stay, 0 restores the default; bad values and unknown names are
    refused with the field named, changing nothing."""
    data = vectors(500, seed=6)
    data_dir = tmp_path / "data"
    async with running_gateway(data_dir) as gw, AsyncClient(gw.target) as client:
        await client.create_collection("docs", dimension=DIM, index_dimension=64, dtype="i8")
        for start in (0, 250):
            chunk = data[start : start + 250]
            await client.upsert("docs", [item(f"d{start + i}", v.tolist()) for i, v in enumerate(chunk)])
        await index_all(gw, "docs")
        usearch = gw.app.gateway.store.get("docs").index._index  # type: ignore[attr-defined]
        assert usearch.expansion_search == 64

        tuned = await client.update_collection("docs", expansion_search=24, rerank_factor=2)
        config = tuned.config
        assert (config.hnsw.expansion_search, config.rerank_factor, config.max_unindexed_rows) == (24, 2, 0)
        assert (config.index_dimension, config.dtype, config.hnsw.connectivity) == (
            64,
            collections_pb2.INDEX_DTYPE_I8,
            16,
        )
        assert tuned.stats.items == 500 and usearch.expansion_search == 24
        assert (await client.get_collection("docs")).config == config
        assert [c.config for c in await client.list_collections()] == [config]
        hits = await client.search("docs", vector=data[7].tolist(), k=5)
        assert hits.hits[0].id == "d7" and len(hits.hits) == 5

        bulk = await client.update_collection("docs", max_unindexed_rows=200_000)  # the rest stays
        assert (bulk.config.hnsw.expansion_search, bulk.config.rerank_factor) == (24, 2)
        assert bulk.stats.unindexed_limit == 200_000

        for bad, field in (  # each beside a good change, which must not land either
            ({"expansion_search": 5000, "rerank_factor": 3}, "expansion_search"),
            ({"rerank_factor": 101, "expansion_search": 30}, "rerank_factor"),
            ({"max_unindexed_rows": 1 << 21, "expansion_search": 30}, "max_unindexed_rows"),
        ):
            with pytest.raises(OnespaceClientError) as refused:
                await client.update_collection("docs", **bad)
            assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT
            assert refused.value.details.startswith(f"{field}: ")
        with pytest.raises(OnespaceClientError) as missing:
            await client.update_collection("nope", expansion_search=30)
        assert missing.value.code is grpc.StatusCode.NOT_FOUND
        with pytest.raises(OnespaceClientError) as malformed:
            await client.update_collection("../docs", expansion_search=30)
        assert malformed.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert malformed.value.details.startswith("name: ")
        assert (await client.get_collection("docs")).config == bulk.config  # nothing changed

    async with running_gateway(data_dir) as gw, AsyncClient(gw.target) as client:
        restarted = await client.get_collection("docs")
        assert restarted.config == bulk.config and restarted.stats.items == 500
        usearch = gw.app.gateway.store.get("docs").index._index  # type: ignore[attr-defined]
        assert usearch.expansion_search == 24
        reset = await client.update_collection(
            "docs", expansion_search=0, rerank_factor=0, max_unindexed_rows=0
        )
        assert (reset.config.hnsw.expansion_search, reset.config.rerank_factor) == (64, 4)
        assert reset.config.max_unindexed_rows == 0 and usearch.expansion_search == 64
        hits = await client.search("docs", vector=data[9].tolist(), k=5)
        assert hits.hits[0].id == "d9"


@pytest.fixture
async def tagged(gateway: Running) -> Running:
    """Raw-vector items (no modality) and text items, with metadata that tests every edge."""
    rows = {
        "v1": {"lang": "en", "year": "1999"},
        "v2": {"lang": "fr", "year": "2005"},
        "v3": {"lang": "de", "year": "2015"},
        "v4": {"year": "n/a"},  # not a number: never in a range
        "v5": {"year": "1e3"},  # 1000
        "v6": {"year": "inf"},  # not finite: never in a range
        "v7": {"lang": "en", "year": "-3.5"},
    }
    texts = {
        "t1": {"lang": "en", "year": "2005"},
        "t2": {"lang": "fr", "year": "2010"},
        "t3": {},
    }
    data = vectors(len(rows), seed=9)
    async with AsyncClient(gateway.target) as client:
        await client.create_collection("tags", dimension=DIM)
        await client.upsert("tags", [item(i, data[n].tolist(), m) for n, (i, m) in enumerate(rows.items())])
        await client.upsert("tags", [item(i, f"text number {i}", m) for i, m in texts.items()])
    return gateway


async def found(client: AsyncClient, **filters: object) -> set[str]:
    response = await client.search("tags", vector=[1.0] * DIM, k=50, **filters)  # type: ignore[arg-type]
    return {h.id for h in response.hits}


async def test_filter_conditions(tagged: Running) -> None:
    everything = {"v1", "v2", "v3", "v4", "v5", "v6", "v7", "t1", "t2", "t3"}
    async with AsyncClient(tagged.target) as client:
        assert await found(client) == everything
        assert await found(client, conditions=[where("lang").equals("en")]) == {"v1", "v7", "t1"}
        # not_equals and not_in also match the items that lack the key (v4, v5, v6, t3)
        assert await found(client, conditions=[where("lang").not_equals("en")]) == {
            "v2", "v3", "v4", "v5", "v6", "t2", "t3",
        }  # fmt: skip
        assert await found(client, conditions=[where("lang").in_(["fr", "de"])]) == {"v2", "v3", "t2"}
        assert await found(client, conditions=[where("lang").not_in(["en", "fr"])]) == {
            "v3", "v4", "v5", "v6", "t3",
        }  # fmt: skip
        assert await found(client, conditions=[where("nope").equals("x")]) == set()
        assert await found(client, conditions=[where("nope").not_equals("x")]) == everything

        year = where("year")
        assert await found(client, conditions=[year.range(gt=2005)]) == {"v3", "t2"}
        assert await found(client, conditions=[year.range(gte=2005)]) == {"v2", "v3", "t1", "t2"}
        assert await found(client, conditions=[year.range(lt=2005)]) == {"v1", "v5", "v7"}
        assert await found(client, conditions=[year.range(lte=1999)]) == {"v1", "v5", "v7"}
        assert await found(client, conditions=[year.range(gt=1999, lt=2015)]) == {"v2", "t1", "t2"}
        assert await found(client, conditions=[year.range(gte=1999, lte=2015)]) == {
            "v1",
            "v2",
            "v3",
            "t1",
            "t2",
        }
        assert await found(client, conditions=[year.range(gte=-4, lt=0)]) == {"v7"}
        assert await found(client, conditions=[year.range(gt=2005, lt=2005)]) == set()  # empty, not an error

        # AND: conditions with each other, with the metadata map and with modalities
        both = [where("lang").in_(["en", "fr"]), year.range(gte=2005)]
        assert await found(client, conditions=both) == {"v2", "t1", "t2"}
        assert await found(client, conditions=both, modalities=["text"]) == {"t1", "t2"}
        assert await found(client, conditions=both, modalities=["text"], metadata={"lang": "fr"}) == {"t2"}
        assert await found(client, conditions=[year.range(lt=3000)], modalities=["text"]) == {"t1", "t2"}
        assert (
            await found(client, conditions=[where("lang").equals("en"), where("lang").equals("fr")]) == set()
        )
        assert await found(client, conditions=[where("lang").not_equals("en")], modalities=["image"]) == set()
        by_id = await client.search("tags", id="v2", k=50, conditions=[where("lang").equals("fr")])
        assert {h.id for h in by_id.hits} == {"v2", "t2"}


def raw_search(gw: Running, *conditions: search_pb2.Condition) -> object:
    return gw.search.Search(
        search_pb2.SearchRequest(
            collection="tags",
            vector=common_pb2.Vector(values=[1.0] * DIM),
            filter=search_pb2.Filter(conditions=list(conditions)),
        )
    )


@pytest.mark.parametrize(
    ("conditions", "field", "reason"),
    [
        ([search_pb2.Condition(key="lang")], "filter.conditions[0].test", "set one of"),
        (
            [search_pb2.Condition(key="y", range=search_pb2.Range(gt=1, gte=2))],
            "filter.conditions[0].range",
            "gt or gte",
        ),
        (
            [search_pb2.Condition(key="y", range=search_pb2.Range(lt=1, lte=2))],
            "filter.conditions[0].range",
            "lt or lte",
        ),
        (
            [search_pb2.Condition(key="y", range=search_pb2.Range())],
            "filter.conditions[0].range",
            "at least one",
        ),
        (
            [
                search_pb2.Condition(key="lang", equals="en"),
                search_pb2.Condition(key="y", range=search_pb2.Range(gte=10, lt=1)),
            ],
            "filter.conditions[1].range",
            "above the upper bound",
        ),
        (
            [search_pb2.Condition(key="y", range=search_pb2.Range(gt=float("nan")))],
            "filter.conditions[0].range",
            "gt must be a finite number, got nan",
        ),
        (  # an infinite bound is not "no bound": refused, not read as "any number"
            [search_pb2.Condition(key="y", range=search_pb2.Range(gte=float("-inf")))],
            "filter.conditions[0].range",
            "gte must be a finite number, got -inf",
        ),
        (
            [search_pb2.Condition(key="y", range=search_pb2.Range(gt=1, lte=float("inf")))],
            "filter.conditions[0].range",
            "lte must be a finite number, got inf",
        ),
        ([search_pb2.Condition(key="", equals="x")], "filter.conditions[0].key", "bytes"),
        (
            [search_pb2.Condition(key="lang", not_in=search_pb2.StringList())],
            "filter.conditions[0]",
            "at least one value",
        ),
        ([search_pb2.Condition(key="k", equals="x")] * 17, "filter.conditions", "at most 16"),
    ],
)
async def test_malformed_conditions_are_invalid_arguments_naming_the_field(
    tagged: Running, conditions: list[search_pb2.Condition], field: str, reason: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await raw_search(tagged, *conditions)  # type: ignore[misc]
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    details = error.value.details() or ""
    assert details.startswith(f"{field}") and reason in details, details


async def test_an_empty_in_list_is_refused(tagged: Running) -> None:
    condition = search_pb2.Condition(key="lang")
    getattr(condition, "in").SetInParent()  # `in` set, with no values
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await raw_search(tagged, condition)  # type: ignore[misc]
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.value.details() or "").startswith("filter.conditions[0]")


async def test_cli_against_the_real_server_then_check_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    async with running_gateway(data_dir) as gw:

        async def cli(*argv: str) -> tuple[int, str]:
            code = await asyncio.to_thread(cli_main, [*argv, "--target", gw.target])
            captured = capsys.readouterr()
            return code, captured.out + captured.err

        code, out = await cli(
            "collections", "create", "c", "--dimension", "256", "--stored-dtype", "f32",
            "--max-unindexed-rows", "50000",
        )  # fmt: skip
        assert code == 0 and "stored dtype     f32" in out and "max unindexed    50000" in out
        async with AsyncClient(gw.target) as client:
            data = vectors(10, seed=5)
            await client.upsert("c", [item(f"i{n}", v.tolist(), {"n": str(n)}) for n, v in enumerate(data)])
            await client.delete("c", ["i0", "i1"])
        code, out = await cli("collections", "get", "c")
        assert code == 0 and "dead rows         2" in out and "checkpoint time   never" in out
        lines = [line.split() for line in out.splitlines()]
        assert ["max", "unindexed", "50000"] in lines
        assert any(line[:2] == ["unindexed", "rows"] and line[2].isdigit() for line in lines)
        code, out = await cli("collections", "create", "big", "--max-unindexed-rows", "2000000")
        assert code == 1 and out == (
            "error: INVALID_ARGUMENT: config.max_unindexed_rows: 2000000 is larger than the maximum 1048576\n"
        )
        code, out = await cli(
            "search", "-c", "c", "--id", "i5", "-k", "20", "--where", "n>=5", "--where", "n!=in:7,8"
        )
        assert code == 0 and sorted(line.split()[2] for line in out.splitlines()[2:-1]) == ["i5", "i6", "i9"]
        code, out = await cli("search", "-c", "c", "--id", "i5", "--where", "n>=x")
        assert (code, out) == (2, "error: --where 'n>=x': expected a number after '>=', got 'x'\n")
        code, out = await cli(
            "collections", "update", "c", "--expansion-search", "40", "--max-unindexed-rows", "0"
        )
        assert code == 0 and out.startswith("updated collection c\n")
        assert "expansion_search 40" in out and "max unindexed     server default" in out
        code, out = await cli("collections", "update", "c", "--rerank-factor", "500")
        assert (code, out) == (
            1,
            "error: INVALID_ARGUMENT: rerank_factor: 500 is larger than the maximum 100\n",
        )
        code, out = await cli("collections", "update", "c", "--rerank-factor", "6", "--json")
        config = json.loads(out)["config"]
        assert code == 0 and (config["rerank_factor"], config["hnsw"]["expansion_search"]) == (6, 40)
        code, out = await cli("collections", "checkpoint", "c")
        assert code == 0 and out.startswith("checkpointed the index of collection c at seq 2\n")
        code, out = await cli("collections", "compact", "c", "--json")
        assert code == 0 and json.loads(out)["stats"]["dead_rows"] == "0"

        live = await asyncio.to_thread(check_data_dir, data_dir)  # the server still running
        assert live.ok and (live.collections[0].items, live.collections[0].dead_rows) == (8, 0)
    report = check_data_dir(data_dir)  # stopped: checkpointed and closed
    (c,) = report.collections
    assert report.ok and (c.name, c.items, c.rows, c.dead_rows, c.stored_dtype) == ("c", 8, 8, 0, "f32")
    assert c.checkpoint_seq == c.seq and c.warnings == []


@pytest.mark.parametrize(("policy", "synchronous"), [("batch", 2), ("always", 2), ("off", 0)])
async def test_fsync_policy_reaches_the_store(tmp_path: Path, policy: str, synchronous: int) -> None:
    """`--fsync off` really skips fsync (SQLite synchronous=OFF, no vector-file fsync); the
    durable policies keep synchronous=FULL."""
    async with running_gateway(tmp_path, fsync=policy) as running, AsyncClient(running.target) as client:
        await client.create_collection("docs", dimension=DIM)
        await client.upsert("docs", [item("a", vectors(1)[0].tolist(), {})])
        collection = running.app.gateway.store.get("docs")
        assert collection.durable is (policy != "off")  # type: ignore[attr-defined]
        sql = collection.sql  # type: ignore[attr-defined]
        assert sql.writer.execute("PRAGMA synchronous").fetchone()[0] == synchronous
