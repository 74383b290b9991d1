"""Rendering: tables, metadata abbreviation, vectors, and each command's readable output."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from onespace_client.cli import embed, info, search
from onespace_client.cli.collections import collection_rows, describe, human_bytes
from onespace_client.cli.format import abbreviate, l2_norm, message_dict, table, timings_text, vector_preview
from onespace_client.cli.vectors import load_vector, parse_npy
from onespace_client.v1 import collections_pb2, common_pb2, embed_pb2, search_pb2
from tests.unit.client.fake_gateway import INFO


def test_table_pads_and_aligns() -> None:
    text = table(("A", "NUMBER"), [["x", 1], ["longer", 12345]], right=(1,))
    assert text.splitlines() == [
        "A       NUMBER",
        "------  ------",
        "x            1",
        "longer   12345",
    ]


def test_abbreviate_sorts_and_cuts() -> None:
    assert abbreviate({"b": "2", "a": "1"}) == "a=1, b=2"
    cut = abbreviate({"path": "x" * 100}, width=20)
    assert len(cut) == 20 and cut.endswith("...")
    assert abbreviate({}) == ""


def test_timings_and_vectors() -> None:
    timings = common_pb2.Timings(
        queue_seconds=0.00012, provider_seconds=0.08, index_seconds=0.0004, total_seconds=0.0812
    )
    assert timings_text(timings) == "queue 0.12 ms, provider 80.00 ms, index 0.40 ms, total 81.20 ms"
    assert "index" not in timings_text(timings, index=False)
    assert vector_preview([0.5, -0.25, 1.0], 2) == "[0.5000, -0.2500, ...]"
    assert vector_preview([0.5], 2) == "[0.5000]"
    assert l2_norm([3.0, 4.0]) == 5.0


def test_search_render() -> None:
    response = search_pb2.SearchResponse(
        hits=[
            search_pb2.SearchHit(
                id="cat.jpg", score=0.91234, modality=common_pb2.MODALITY_IMAGE, metadata={"k": "v"}
            ),
            search_pb2.SearchHit(id="dog", score=0.5, modality=common_pb2.MODALITY_TEXT),
        ],
        model="m",
        dimension=256,
        timings=common_pb2.Timings(total_seconds=0.002),
    )
    lines = search.render(response).splitlines()
    assert lines[0].split() == ["RANK", "SCORE", "ID", "MODALITY", "METADATA"]
    assert lines[2].split() == ["1", "0.9123", "cat.jpg", "image", "k=v"]
    assert lines[3].split() == ["2", "0.5000", "dog", "text"]
    assert lines[4].startswith("model m, dimension 256, queue 0.00 ms") and lines[4].endswith("total 2.00 ms")
    empty = search.render(search_pb2.SearchResponse(model="m", dimension=8))
    assert empty.startswith("no results\n")


def test_embed_render() -> None:
    response = embed_pb2.EmbedResponse(model="m", dimension=4)
    result = response.results.add(cached=True)
    result.embeddings.add(
        values=[0.5, 0.5, 0.5, 0.5], type=common_pb2.EMBEDDING_TYPE_TEXT, truncated_char_length=9
    )
    text = embed.render(response, values=2)
    assert "model      m" in text and "dimension  4" in text
    assert "text, norm 1.0000, 4 values, cached, truncated at 9 chars" in text
    assert text.endswith("[0.5000, 0.5000, ...]")


def test_info_render() -> None:
    text = info.render(INFO)
    assert "provider       fake" in text
    row = next(line for line in text.splitlines() if line.startswith("fake-model "))
    assert row.split()[:4] == ["fake-model", "text", "image", "8*"]
    assert "25 MiB" in row
    assert "formats: image png" in text
    assert "server limits: 16 items/request, 64 MiB/request" in text
    assert text.endswith("notice: answers are computed, not embedded")


def test_collection_rows_and_description() -> None:
    config = collections_pb2.CollectionConfig(
        name="c", model="m", dimension=1024, index_dimension=256, metric=2, dtype=4, rerank_factor=4
    )
    config.hnsw.connectivity, config.hnsw.expansion_add, config.hnsw.expansion_search = 16, 128, 64
    collection = collections_pb2.Collection(config=config, count=3)
    assert collection_rows([collection]) == [["c", "m", 1024, 256, "ip", "i8", "-", "16/128/64", 4, 3]]
    config.stored_dtype = collections_pb2.STORED_DTYPE_F32
    collection = collections_pb2.Collection(config=config, count=3)
    assert collection_rows([collection])[0][6] == "f32"
    text = describe(collection)
    assert "index dimension  256" in text and "stored dtype     f32" in text
    assert "dead rows" not in text  # no stats: as CreateCollection and ListCollections answer


def test_description_with_stats() -> None:
    stats = collections_pb2.CollectionStats(
        items=3, dead_rows=2, index_tombstones=1, disk_bytes=3 << 20, index_bytes=1536, vector_bytes=512,
        seq=7, checkpoint_seq=5, checkpoint_time=1_700_000_000.5, log_bytes=0,
    )  # fmt: skip
    collection = collections_pb2.Collection(config=collections_pb2.CollectionConfig(name="c"), stats=stats)
    lines = describe(collection).splitlines()
    assert lines[-11:] == [
        "items             3",
        "dead rows         2",
        "index tombstones  1",
        "unindexed rows    0",
        "disk bytes        3.0 MiB (3145728 bytes)",
        "index bytes       1.5 KiB (1536 bytes)",
        "vector bytes      512 B",
        "log bytes         0 B",
        "seq               7",
        "checkpoint seq    5",
        "checkpoint time   2023-11-14 22:13:20 UTC",
    ]
    collection.stats.checkpoint_time = 0
    assert describe(collection).endswith("checkpoint time   never")


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 << 30, "5.0 GiB"), (3 << 50, "3072.0 TiB")],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_message_dict_shows_zero_fields() -> None:
    data = message_dict(collections_pb2.Collection(config=collections_pb2.CollectionConfig(name="c")))
    assert data["config"]["dimension"] == 0 and data["count"] == "0"  # type: ignore[index]
    json.dumps(data)


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<f2"])
def test_npy_vectors(tmp_path: Path, dtype: str) -> None:
    values = np.array([0.5, -1.0, 2.0], dtype=dtype)
    buffer = io.BytesIO()
    np.save(buffer, values.reshape(1, 3))
    (tmp_path / "q.npy").write_bytes(buffer.getvalue())
    assert load_vector(tmp_path / "q.npy") == [0.5, -1.0, 2.0]


def test_bad_npy_is_rejected() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 3), dtype="f4"))
    with pytest.raises(ValueError, match="shape"):
        parse_npy(buffer.getvalue())
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3, dtype="i4"))
    with pytest.raises(ValueError, match="dtype"):
        parse_npy(buffer.getvalue())
    with pytest.raises(ValueError, match="magic"):
        parse_npy(b"PK\x03\x04")


def test_json_and_text_vectors(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("[[1, 2.5]]")
    (tmp_path / "b.txt").write_text("1, 2\n3 4\n")
    (tmp_path / "c.json").write_text('{"v": 1}')
    (tmp_path / "d.txt").write_text("1 two")
    assert load_vector(tmp_path / "a.json") == [1.0, 2.5]
    assert load_vector(tmp_path / "b.txt") == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="list of numbers"):
        load_vector(tmp_path / "c.json")
    with pytest.raises(ValueError, match="two"):
        load_vector(tmp_path / "d.txt")


def test_the_tail_is_shown_with_the_bound_in_force() -> None:
    stats = collections_pb2.CollectionStats(items=3, unindexed_rows=120, unindexed_limit=43_008)
    collection = collections_pb2.Collection(config=collections_pb2.CollectionConfig(name="c"), stats=stats)
    assert "unindexed rows    120 (writes wait past 43008)" in describe(collection).splitlines()
