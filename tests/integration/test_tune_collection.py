"""TuneCollection over a real server: the cheapest search settings reaching a recall target, found
on the server's own exact top k, reported or applied (durably), and bad requests refused with the
field named and nothing changed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import numpy as np
import pytest

from onespace.index import Metric
from onespace_client import AsyncClient, OnespaceClientError, item
from onespace_client.cli import main as cli_main
from onespace_client.v1 import collections_pb2, common_pb2
from tests.harness import index_all, running_gateway
from tests.unit.index.helpers import mixture, reference_top

DIM = 256


async def load(client: AsyncClient, name: str, data: np.ndarray, **config: object) -> None:
    await client.create_collection(name, dimension=DIM, **config)  # type: ignore[arg-type]
    for start in range(0, len(data), 250):
        chunk = data[start : start + 250]
        await client.upsert(name, [item(f"d{start + i}", v) for i, v in enumerate(chunk)])


def recall_by_ids(data: np.ndarray, queries: np.ndarray, answers: list[list[str]]) -> float:
    """Mean recall@10 from the test helpers' float64 brute force, by ids: the test's own reference."""
    found = 0
    for q, ids in zip(queries, answers, strict=True):
        truth = {f"d{j}" for j in reference_top(data, q, Metric.COSINE, 10)}
        found += len(truth & set(ids))
    return found / (10 * len(queries))


async def test_tune_finds_reports_and_applies_the_cheapest_setting_reaching_the_target(
    tmp_path: Path,
) -> None:
    data = mixture(3000, DIM, seed=5, decay=0.5)
    queries = mixture(60, DIM, seed=7, decay=0.5)
    data_dir = tmp_path / "data"
    async with running_gateway(data_dir) as gw, AsyncClient(gw.target) as client:
        await load(client, "docs", data, index_dimension=32, dtype="i8")
        before = (await client.get_collection("docs")).config

        found = await client.tune_collection("docs", queries, target_recall=0.95, apply=False)
        tried = [(t.expansion_search, t.rerank_factor) for t in found.trials]
        assert tried[0] == (16, 1) and len(tried) > 1  # the cheapest first; it missed: the test can fail
        assert found.reached and found.trials[-1].recall >= 0.95
        assert all(t.recall < 0.95 for t in found.trials[:-1])
        assert all(t.micros_per_query > 0 for t in found.trials)
        assert found.collection.config == before == (await client.get_collection("docs")).config
        assert found.collection.stats.unindexed_rows == 0  # indexed before measuring

        # the reported recall is what callers get with those settings, by the test's own reference
        ef, rf = tried[-1]
        await client.update_collection("docs", expansion_search=ef, rerank_factor=rf)
        answers = await client.search_batch("docs", list(queries), k=10)
        served = recall_by_ids(data, queries, [[h.id for h in a.hits] for a in answers])
        assert served == pytest.approx(found.trials[-1].recall, abs=1e-9)
        await client.update_collection("docs", expansion_search=0, rerank_factor=0)

        applied = await client.tune_collection("docs", queries, target_recall=0.95)
        assert [(t.expansion_search, t.rerank_factor) for t in applied.trials] == tried
        config = applied.collection.config
        assert (config.hnsw.expansion_search, config.rerank_factor) == (ef, rf)
        assert (await client.get_collection("docs")).config == config

    async with running_gateway(data_dir) as gw, AsyncClient(gw.target) as client:
        assert (await client.get_collection("docs")).config == config  # durable, as UpdateCollection


async def test_a_target_out_of_reach_is_reported_and_nothing_is_applied(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "data") as gw, AsyncClient(gw.target) as client:
        await load(client, "coarse", mixture(1500, DIM, seed=5), index_dimension=8, dtype="i8")
        before = (await client.get_collection("coarse")).config
        result = await client.tune_collection("coarse", mixture(30, DIM, seed=8), target_recall=1.0)
        assert not result.reached and len(result.trials) == 10
        assert result.collection.config == before


async def test_bad_requests_are_refused_with_the_field_named_and_change_nothing(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "data") as gw, AsyncClient(gw.target) as client:
        await load(client, "docs", mixture(400, DIM, seed=5, decay=0.5), index_dimension=32, dtype="i8")
        await index_all(gw, "docs")
        before = (await client.get_collection("docs")).config
        q = mixture(3, DIM, seed=9)
        good = [common_pb2.Vector(f32=v.astype("<f4").tobytes()) for v in q]
        cases = [
            (dict(queries=good, target_recall=0.0), grpc.StatusCode.INVALID_ARGUMENT, "target_recall: "),
            (dict(queries=good, target_recall=1.5), grpc.StatusCode.INVALID_ARGUMENT, "target_recall: "),
            (
                dict(queries=[], target_recall=0.9),
                grpc.StatusCode.FAILED_PRECONDITION,
                "no queries given, and ",
            ),
            (
                dict(
                    queries=[good[0], common_pb2.Vector(f32=q[1][:10].astype("<f4").tobytes())],
                    target_recall=0.9,
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "queries[1].vector: ",
            ),
            (
                dict(queries=[common_pb2.Vector(f32=b"\0\0\0")], target_recall=0.9),
                grpc.StatusCode.INVALID_ARGUMENT,
                "queries[0].f32: ",
            ),
            (
                dict(queries=good, target_recall=0.9, k=100_000),
                grpc.StatusCode.INVALID_ARGUMENT,
                "k: ",
            ),
        ]
        for fields, code, prefix in cases:
            request = collections_pb2.TuneCollectionRequest(name="docs", apply=True, **fields)  # type: ignore[arg-type]
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gw.collections.TuneCollection(request)
            assert refused.value.code() is code, fields
            assert (refused.value.details() or "").startswith(prefix), refused.value.details()
        with pytest.raises(OnespaceClientError) as missing:
            await client.tune_collection("nope", q, target_recall=0.9)
        assert missing.value.code is grpc.StatusCode.NOT_FOUND
        await client.create_collection("empty", dimension=DIM)
        with pytest.raises(OnespaceClientError) as empty:
            await client.tune_collection("empty", q, target_recall=0.9)
        assert empty.value.code is grpc.StatusCode.FAILED_PRECONDITION and "empty" in empty.value.details
        assert (await client.get_collection("docs")).config == before


async def test_the_cli_tunes_from_a_file_of_queries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = mixture(3000, DIM, seed=5, decay=0.5)
    queries = mixture(60, DIM, seed=7, decay=0.5)
    npy, text, bad = tmp_path / "q.npy", tmp_path / "q.txt", tmp_path / "bad.txt"
    np.save(npy, queries.astype(np.float32))
    text.write_text("\n".join(" ".join(repr(float(x)) for x in row) for row in queries) + "\n")
    bad.write_text("0.1 0.2\n0.3 zebra\n")
    async with running_gateway(tmp_path / "data") as gw, AsyncClient(gw.target) as client:
        await load(client, "docs", data, index_dimension=32, dtype="i8")

        async def cli(*argv: str) -> tuple[int, str]:
            code = await asyncio.to_thread(cli_main, [*argv, "--target", gw.target])
            captured = capsys.readouterr()
            return code, captured.out + captured.err

        code, out = await cli(
            "collections", "tune", "docs", "--queries", str(npy), "--target-recall", "0.95", "--dry-run"
        )
        lines = out.splitlines()
        assert code == 0 and lines[0].split() == ["EF", "RERANK", "RECALL@10", "US/QUERY"], out
        assert lines[2].split()[:2] == ["16", "1"] and "(--dry-run: not applied)" in lines[-1]
        ef, rf = lines[-2].split()[:2]
        assert (await client.get_collection("docs")).config.hnsw.expansion_search == 64  # unchanged
        code, out = await cli(
            "collections", "tune", "docs", "--queries", str(text), "--target-recall", "0.95", "--json"
        )
        result = json.loads(out)
        assert code == 0 and result["reached"] and len(result["trials"]) == len(lines) - 3
        config = (await client.get_collection("docs")).config
        assert (str(config.hnsw.expansion_search), str(config.rerank_factor)) == (ef, rf)
        code, out = await cli("collections", "tune", "docs", "--queries", str(npy), "--target-recall", "1.0")
        assert code == 1 and out.endswith("no setting reached recall 1.0 on 60 queries; nothing changed\n")
        assert (await client.get_collection("docs")).config == config
        code, out = await cli("collections", "tune", "docs", "--queries", str(bad), "--target-recall", "0.9")
        assert code == 2 and f"--queries: {bad}:2: could not convert string to float: 'zebra'" in out
        code, out = await cli("collections", "tune", "docs", "--queries", str(npy), "--target-recall", "2")
        assert code == 1 and out == "error: INVALID_ARGUMENT: target_recall: must be in (0, 1], not 2.0\n"


async def test_without_queries_it_tunes_on_the_live_searches_the_recall_sampler_drew(tmp_path: Path) -> None:
    data = mixture(3000, DIM, seed=5, decay=0.5)
    async with (
        running_gateway(tmp_path / "data", recall_sample_budget=1.0) as gw,
        AsyncClient(gw.target) as client,
    ):
        await load(client, "docs", data, index_dimension=32, dtype="i8")
        await load(client, "other", data[:500], index_dimension=32, dtype="i8")
        await index_all(gw, "docs")
        sampler = gw.app.gateway.recall
        for q in mixture(400, DIM, seed=7, decay=0.5):  # each sample spaced by its scan's time
            await client.search("docs", vector=q, k=10)
            await sampler.settled()
            if sampler.samples >= 30:
                break
        drawn = sampler.samples
        assert drawn >= 30, f"400 searches, {drawn} samples"
        result = await client.tune_collection("docs", target_recall=0.95, apply=False)
        assert result.queries == drawn and result.reached
        assert (result.trials[0].expansion_search, result.trials[0].rerank_factor) == (16, 1)
        with pytest.raises(OnespaceClientError) as none:  # searched by nobody: nothing drawn
            await client.tune_collection("other", target_recall=0.95)
        assert none.value.code is grpc.StatusCode.FAILED_PRECONDITION
        assert "--recall-sample-budget" in none.value.details
        await client.delete_collection("docs")  # its sampled queries go with it
        await load(client, "docs", data[:500], index_dimension=32, dtype="i8")
        with pytest.raises(OnespaceClientError) as forgotten:
            await client.tune_collection("docs", target_recall=0.95)
        assert forgotten.value.code is grpc.StatusCode.FAILED_PRECONDITION
