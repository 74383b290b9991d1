"""The CLI commands end to end against the in-process fake: output, exit codes, error lines."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from onespace_client import Client, item
from onespace_client import vector as vector_of
from onespace_client.cli import main
from onespace_client.v1 import collections_pb2, data_pb2, embed_pb2, search_pb2
from tests.unit.client.fake_gateway import FakeGateway

Capture = pytest.CaptureFixture[str]


def run(gateway: FakeGateway, *argv: str) -> int:
    return main([*argv, "--target", gateway.target])


def test_collections_lifecycle(gateway: FakeGateway, capsys: Capture) -> None:
    assert run(gateway, "collections", "list") == 0
    assert capsys.readouterr().out == "no collections\n"
    assert run(gateway, "collections", "create", "photos", "--dimension", "16", "--metric", "l2") == 0
    out = capsys.readouterr().out
    assert out.startswith("created collection photos\n")
    assert "metric           l2" in out and "dimension        16" in out
    assert run(gateway, "collections", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "MODEL", "DIM"]
    assert lines[2].split() == ["photos", "fake-model", "16", "16", "l2", "f16", "f16", "16/128/64", "4", "0"]
    assert run(gateway, "collections", "get", "photos", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["name"] == "photos" and data["config"]["metric"] == "METRIC_L2"
    assert run(gateway, "collections", "list", "--json") == 0
    assert [c["config"]["name"] for c in json.loads(capsys.readouterr().out)["collections"]] == ["photos"]
    assert run(gateway, "collections", "delete", "photos") == 0
    assert capsys.readouterr().out == "deleted collection photos\n"


def test_create_with_stored_dtype(gateway: FakeGateway, capsys: Capture) -> None:
    assert run(gateway, "collections", "create", "exact", "--stored-dtype", "f32", "--dtype", "i8") == 0
    assert "stored dtype     f32" in capsys.readouterr().out
    request = gateway.state.requests[-1]
    assert isinstance(request, collections_pb2.CreateCollectionRequest)
    assert request.config.stored_dtype == collections_pb2.STORED_DTYPE_F32
    assert request.config.dtype == collections_pb2.INDEX_DTYPE_I8
    assert run(gateway, "collections", "create", "plain") == 0
    assert gateway.state.requests[-1].config.stored_dtype == collections_pb2.STORED_DTYPE_UNSPECIFIED
    assert "max unindexed    server default" in capsys.readouterr().out
    assert gateway.state.requests[-1].config.max_unindexed_rows == 0


def test_create_for_a_bulk_load(gateway: FakeGateway, capsys: Capture) -> None:
    assert run(gateway, "collections", "create", "bulk", "--max-unindexed-rows", "200000") == 0
    assert "max unindexed    200000" in capsys.readouterr().out.splitlines()
    assert gateway.state.requests[-1].config.max_unindexed_rows == 200_000


def _items(gateway: FakeGateway, n: int) -> None:
    with Client(gateway.target) as client:
        client.upsert("c", [item(f"d{i}", [float(i + 1)] * 8, {"n": str(i)}) for i in range(n)])
        client.delete("c", [f"d{i}" for i in range(0, n, 2)])


def test_get_shows_storage_stats(gateway: FakeGateway, capsys: Capture) -> None:
    assert run(gateway, "collections", "create", "c") == 0
    _items(gateway, 10)
    capsys.readouterr()
    assert run(gateway, "collections", "get", "c") == 0
    out = capsys.readouterr().out
    for line in (
        "count             5",
        "items             5",
        "dead rows         5",
        "index tombstones  5",
        "unindexed rows    0",
        "disk bytes        9.2 KiB (9376 bytes)",
        "index bytes       2.0 KiB (2000 bytes)",
        "vector bytes      160 B",
        "log bytes         1.0 KiB (1024 bytes)",
        "seq               2",
        "checkpoint seq    0",
        "checkpoint time   never",
    ):
        assert line in out.splitlines(), line
    assert run(gateway, "collections", "get", "c", "--json") == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert stats["items"] == "5" and stats["dead_rows"] == "5" and stats["seq"] == "2"  # proto3 JSON
    assert stats["checkpoint_time"] == 0 and stats["disk_bytes"] == "9376"
    assert set(stats) == {
        "items", "dead_rows", "index_tombstones", "disk_bytes", "index_bytes", "vector_bytes", "seq",
        "checkpoint_seq", "checkpoint_time", "log_bytes", "unindexed_rows", "unindexed_limit",
    }  # fmt: skip


def test_checkpoint_and_compact(gateway: FakeGateway, capsys: Capture) -> None:
    assert run(gateway, "collections", "create", "c") == 0
    _items(gateway, 10)
    capsys.readouterr()
    assert run(gateway, "collections", "checkpoint", "c") == 0
    out = capsys.readouterr().out
    assert out.startswith("checkpointed the index of collection c at seq 2\n")
    assert "checkpoint time   2023-11-14 22:13:20 UTC" in out and "log bytes         0 B" in out
    assert isinstance(gateway.state.requests[-1], collections_pb2.CheckpointCollectionRequest)

    assert run(gateway, "collections", "compact", "c") == 0
    out = capsys.readouterr().out
    assert out.startswith("compacted collection c: reclaimed 5 dead rows and 5 index tombstones\n")
    assert "dead rows         0" in out and "items             5" in out
    assert isinstance(gateway.state.requests[-1], collections_pb2.CompactCollectionRequest)
    assert run(gateway, "collections", "compact", "c") == 0
    assert capsys.readouterr().out.startswith("compacted collection c: nothing to reclaim\n")

    assert run(gateway, "collections", "checkpoint", "c", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stats"]["checkpoint_seq"] == data["stats"]["seq"] == "2"
    assert run(gateway, "collections", "compact", "c", "--json") == 0
    assert json.loads(capsys.readouterr().out)["stats"]["dead_rows"] == "0"

    assert run(gateway, "collections", "compact", "nope") == 1
    assert capsys.readouterr().err == "error: NOT_FOUND: collection 'nope' not found\n"
    assert run(gateway, "collections", "checkpoint", "nope") == 1
    assert capsys.readouterr().err == "error: NOT_FOUND: collection 'nope' not found\n"


def test_grpc_errors_print_one_line_and_exit_1(gateway: FakeGateway, capsys: Capture) -> None:
    assert run(gateway, "collections", "get", "nope") == 1
    captured = capsys.readouterr()
    assert captured.err == "error: NOT_FOUND: collection 'nope' not found\n"
    assert captured.out == ""
    assert run(gateway, "embed", "--text", "throttle") == 1  # after the client's retries
    assert capsys.readouterr().err == "error: RESOURCE_EXHAUSTED: queue full, retry later\n"


def test_unreachable_target(capsys: Capture) -> None:
    assert main(["info", "--target", "127.0.0.1:1", "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: UNAVAILABLE: ") and err.count("\n") == 1
    assert "the gateway at 127.0.0.1:1 is unavailable" in err and "--target or ONESPACE_TARGET" in err


def test_embed_text_and_file(gateway: FakeGateway, tmp_path: Path, capsys: Capture) -> None:
    assert run(gateway, "embed", "--text", "hello", "--dimension", "4", "--purpose", "text_retrieval") == 0
    out = capsys.readouterr().out
    assert "model      fake-model" in out and "dimension  4" in out
    assert "queue 1.00 ms, provider 2.00 ms, total 4.00 ms" in out
    assert "text, norm 1.0000, 4 values" in out
    request = gateway.state.requests[-1]
    assert isinstance(request, embed_pb2.EmbedRequest) and request.items[0].text == "hello"
    assert request.options.purpose == 3
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG" * 10)
    assert run(gateway, "embed", "--image", str(image), "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["results"][0]["embeddings"][0]["values"]) == 8
    assert gateway.state.requests[-1].items[0].image == b"\x89PNG" * 10


def test_embed_missing_file(gateway: FakeGateway, tmp_path: Path, capsys: Capture) -> None:
    assert run(gateway, "embed", "--audio", str(tmp_path / "none.wav")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read ") and "none.wav" in err and "Traceback" not in err


def _seed(gateway: FakeGateway, tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("alpha", encoding="utf-8")
    (tmp_path / "docs" / "b.png").write_bytes(b"\x89PNG")
    assert run(gateway, "collections", "create", "c") == 0
    assert run(gateway, "ingest", "-c", "c", str(tmp_path / "docs"), "--metadata", "lang=en") == 0


def test_search_table_and_filters(gateway: FakeGateway, tmp_path: Path, capsys: Capture) -> None:
    _seed(gateway, tmp_path)
    capsys.readouterr()
    assert run(gateway, "search", "-c", "c", "--text", "q", "-k", "5", "--where", "lang=en") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RANK", "SCORE", "ID", "MODALITY", "METADATA"]
    assert lines[2].split()[:4] == ["1", "1.0000", "a.txt", "text"]
    assert lines[3].split()[:4] == ["2", "0.5000", "b.png", "image"]
    assert lines[-1].startswith("model fake-model, dimension 8, queue 1.00 ms")
    request = gateway.state.requests[-1]
    assert isinstance(request, search_pb2.SearchRequest)
    assert request.k == 5 and dict(request.filter.metadata) == {"lang": "en"}

    assert run(gateway, "search", "-c", "c", "--id", "a.txt", "--modality", "image", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in data["hits"]] == ["b.png"]

    vector = tmp_path / "q.npy"
    buffer = io.BytesIO()
    np.save(buffer, np.full(8, 0.25, dtype="f4"))
    vector.write_bytes(buffer.getvalue())
    assert run(gateway, "search", "-c", "c", "--vector-file", str(vector), "--dimension", "4") == 0
    assert list(vector_of(gateway.state.requests[-1].vector)) == [0.25] * 8
    assert "dimension 4" in capsys.readouterr().out

    (tmp_path / "bad.npy").write_bytes(b"nope")
    assert run(gateway, "search", "-c", "c", "--vector-file", str(tmp_path / "bad.npy")) == 2
    assert capsys.readouterr().err.startswith("error: bad vector file")


def test_search_where_conditions(gateway: FakeGateway, capsys: Capture) -> None:
    assert run(gateway, "collections", "create", "c") == 0

    with Client(gateway.target) as client:
        client.upsert(
            "c",
            [
                item("a", [1.0] * 8, {"lang": "en", "year": "1999"}),
                item("b", [1.0] * 8, {"lang": "fr", "year": "2005"}),
                item("c", [1.0] * 8, {"lang": "de", "year": "2015"}),
                item("d", [1.0] * 8, {"year": "n/a"}),
            ],
        )
    capsys.readouterr()

    def ids(*where: str) -> list[str]:
        argv = ["search", "-c", "c", "--id", "a", "--json"]
        for clause in where:
            argv += ["--where", clause]
        assert run(gateway, *argv) == 0, capsys.readouterr().err
        return [h["id"] for h in json.loads(capsys.readouterr().out)["hits"]]

    assert ids("lang=fr") == ["b"]
    assert ids("lang!=fr") == ["a", "c", "d"]  # d has no lang: it is not "fr"
    assert ids("lang=in:en,de") == ["a", "c"]
    assert ids("lang!=in:en,de") == ["b", "d"]
    assert ids("year>=2005") == ["b", "c"]  # "n/a" is not a number: never in a range
    assert ids("year>1999", "year<2015") == ["b"]
    assert ids("year<=1999") == ["a"]
    assert ids("lang=en", "year>2000") == []
    request = gateway.state.requests[-1]
    assert isinstance(request, search_pb2.SearchRequest)
    assert dict(request.filter.metadata) == {"lang": "en"}
    assert [(c.key, c.range.gt) for c in request.filter.conditions] == [("year", 2000.0)]

    before = len(gateway.state.requests)
    assert run(gateway, "search", "-c", "c", "--id", "a", "--where", "year>=soon") == 2
    captured = capsys.readouterr()
    assert captured.err == "error: --where 'year>=soon': expected a number after '>=', got 'soon'\n"
    assert captured.out == "" and len(gateway.state.requests) == before  # nothing was sent
    assert run(gateway, "search", "-c", "c", "--id", "a", "--where", "novalue") == 2
    assert capsys.readouterr().err.startswith("error: --where 'novalue': expected one of KEY=VALUE")


def test_ingest_folder_and_manifest_with_failures(
    gateway: FakeGateway, tmp_path: Path, capsys: Capture
) -> None:
    (tmp_path / "media" / "sub").mkdir(parents=True)
    (tmp_path / "media" / "a.txt").write_text("alpha", encoding="utf-8")
    (tmp_path / "media" / "sub" / "b.wav").write_bytes(b"RIFF....WAVE")
    (tmp_path / "media" / "bad.txt").write_bytes(b"\xff\xfe")  # not UTF-8: fails locally
    (tmp_path / "media" / "skip.pdf").write_bytes(b"%PDF")
    manifest = tmp_path / "list.jsonl"
    manifest.write_text(
        '{"id": "m1", "text": "from the manifest", "metadata": {"n": 1}}\n'
        '{"id": "bad-m2", "path": "media/a.txt"}\n'  # the fake fails ids starting with "bad"
        "{oops\n",
        encoding="utf-8",
    )
    assert run(gateway, "collections", "create", "c") == 0
    capsys.readouterr()
    code = run(gateway, "ingest", "-c", "c", str(tmp_path / "media"), str(manifest), "--id-prefix", "p/")
    captured = capsys.readouterr()
    assert code == 1
    summary = captured.out.strip()
    assert summary.startswith("ingested 3 items (3 failed) in ") and summary.endswith(" items/s)")
    err = captured.err.splitlines()
    assert "skipped 1 files with unsupported extensions" in err
    assert any(line.startswith("failed: p/bad.txt: ") and "utf-8" in line for line in err)
    assert "failed: bad-m2: INVALID_ARGUMENT: item.content: undecodable" in err
    assert any(line.startswith("failed: list.jsonl:3: invalid JSON") for line in err)
    stored = {r.item.id: r.item for r in gateway.state.requests if isinstance(r, data_pb2.IngestRequest)}
    assert set(stored) == {"p/a.txt", "p/sub/b.wav", "m1", "bad-m2"}
    assert stored["p/sub/b.wav"].metadata["modality"] == "audio"
    assert stored["p/a.txt"].content.text == "alpha"
    assert dict(stored["m1"].metadata) == {"n": "1"}


def test_ingest_progress_bar_on_a_tty(
    gateway: FakeGateway, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        (tmp_path / f"{n}.txt").write_text(f"text {n}", encoding="utf-8")
    assert run(gateway, "collections", "create", "c") == 0
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert run(gateway, "ingest", "-c", "c", str(tmp_path)) == 0
    captured = capsys.readouterr()
    assert "5/5" in captured.err
    assert captured.out.startswith("ingested 5 items (0 failed)")
    assert run(gateway, "ingest", "-c", "c", str(tmp_path), "--quiet") == 0
    assert "5/5" not in capsys.readouterr().err


def test_ingest_into_a_missing_collection_stops_before_sending(
    gateway: FakeGateway, tmp_path: Path, capsys: Capture
) -> None:
    for n in range(3):
        (tmp_path / f"{n}.txt").write_text("a", encoding="utf-8")
    assert run(gateway, "ingest", "-c", "nope", str(tmp_path)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "error: NOT_FOUND: collection 'nope' not found\n"
    assert not [r for r in gateway.state.requests if isinstance(r, data_pb2.IngestRequest)]


def test_ingest_missing_path(gateway: FakeGateway, tmp_path: Path, capsys: Capture) -> None:
    assert run(gateway, "ingest", "-c", "c", str(tmp_path / "nothing")) == 2
    assert capsys.readouterr().err.startswith("error: no such file or directory: ")
    assert gateway.state.requests == []


def test_info(gateway: FakeGateway, capsys: Capture) -> None:
    assert run(gateway, "info") == 0
    out = capsys.readouterr().out
    assert "provider       fake" in out and "default model  fake-model" in out
    assert "notice: answers are computed, not embedded" in out
    assert run(gateway, "info", "--json") == 0
    assert json.loads(capsys.readouterr().out)["models"][0]["dimensions"] == [8, 16]


def test_ingest_json_summary_groups_failures(gateway: FakeGateway, tmp_path: Path, capsys: Capture) -> None:
    manifest = tmp_path / "list.jsonl"
    manifest.write_text(
        '{"id": "ok1", "text": "one"}\n'
        '{"id": "bad1", "text": "two"}\n'  # the fake fails ids starting with "bad"
        '{"id": "bad2", "text": "three"}\n'
        '{"id": "ok2", "text": "four"}\n'
        "{oops\n",
        encoding="utf-8",
    )
    assert run(gateway, "collections", "create", "c") == 0
    capsys.readouterr()
    assert run(gateway, "ingest", "-c", "c", str(manifest), "--json") == 1
    captured = capsys.readouterr()
    assert captured.err == ""  # everything is in the JSON
    report = json.loads(captured.out)
    assert (report["collection"], report["sent"], report["stored"], report["failed"]) == ("c", 4, 2, 3)
    assert report["skipped"] == 0
    first, second = report["failures"]
    reason = "INVALID_ARGUMENT: item.content: undecodable"
    assert first == {"reason": reason, "count": 2, "ids": ["bad1", "bad2"]}
    assert second["count"] == 1 and second["ids"] == ["list.jsonl:5"]
    assert second["reason"].startswith("invalid JSON")
    assert report["elapsed_seconds"] >= 0 and report["items_per_second"] >= 0


def test_ingest_over_several_streams(gateway: FakeGateway, tmp_path: Path, capsys: Capture) -> None:
    manifest = tmp_path / "list.jsonl"
    lines = [f'{{"id": "t{n}", "text": "text {n}"}}\n' for n in range(40)]
    manifest.write_text("".join(lines), encoding="utf-8")
    assert run(gateway, "collections", "create", "c") == 0
    capsys.readouterr()
    assert run(gateway, "ingest", "-c", "c", str(manifest), "--streams", "3", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["sent"], report["stored"], report["failed"]) == (40, 40, 0)
    for _ in range(3):  # three streams, each ended on the server
        assert gateway.state.ingest_streams_ended.acquire(timeout=30)
    assert len(gateway.state.ingest_streams) == 3 and sum(gateway.state.ingest_streams) == 40
    with pytest.raises(SystemExit) as refused:
        run(gateway, "ingest", "-c", "c", str(manifest), "--streams", "0")
    assert refused.value.code == 2 and "--streams" in capsys.readouterr().err


def test_ingest_json_into_a_missing_collection(gateway: FakeGateway, tmp_path: Path, capsys: Capture) -> None:
    (tmp_path / "a.txt").write_text("a", encoding="utf-8")
    assert run(gateway, "ingest", "-c", "nope", str(tmp_path), "--json") == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "error: NOT_FOUND: collection 'nope' not found\n")


def test_info_prints_a_model_description_once(capsys: Capture) -> None:
    from onespace_client.cli.info import render
    from onespace_client.v1 import info_pb2

    described = info_pb2.ModelInfo(id="m", description="Offline featurizer. NOT semantic.")
    response = info_pb2.InfoResponse(
        provider="local", models=[described], notice="m: Offline featurizer. NOT semantic."
    )
    assert render(response).count("Offline featurizer") == 1
    assert "notice:" not in render(response)
    response.notice = "m: Offline featurizer. NOT semantic. Also: something else"
    assert render(response).endswith("notice: Also: something else")


def test_connection_options_before_the_command(gateway: FakeGateway, capsys: Capture) -> None:
    from onespace.cli import main as onespace_main

    for entry in (main, onespace_main):
        assert entry(["--target", gateway.target, "--timeout", "10", "info", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["provider"] == "fake"
