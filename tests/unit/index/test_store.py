from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from onespace.errors import AlreadyExists, Internal, InvalidArgument, NotFound
from onespace.index import (
    Collection,
    CollectionConfig,
    CollectionStore,
    Filter,
    HnswParams,
    IndexDtype,
    Metric,
    Query,
    Record,
)
from onespace.index.persistence import MANIFEST_FILE, PREVIOUS_MANIFEST_FILE
from onespace.models import Modality
from tests.unit.index.helpers import mixture

MODALITIES = [None, Modality.TEXT, Modality.IMAGE]


def config(name: str = "docs", **changes: object) -> CollectionConfig:
    fields: dict[str, object] = {
        "name": name,
        "model": "m",
        "dimension": 48,
        "index_dimension": 24,
        "dtype": IndexDtype.F16,
        "hnsw": HnswParams(12, 64, 40),
        "rerank_factor": 3,
    }
    fields.update(changes)
    return CollectionConfig(**fields)  # type: ignore[arg-type]


def fill(c: Collection, n: int = 1200, seed: int = 0) -> np.ndarray:
    data = mixture(n, c.config.dimension, seed=seed, decay=0.5)
    c.upsert([Record(f"id{i}", v, MODALITIES[i % 3], {"g": str(i % 7)}) for i, v in enumerate(data)])
    return data


def queries(dim: int) -> list[Query]:
    qs = mixture(12, dim, seed=99, decay=0.5)
    out = [Query(q, k=8) for q in qs[:4]]
    out += [Query(q, k=8, dimension=12) for q in qs[4:6]]
    out += [Query(q, k=8, filter=Filter(metadata={"g": "3"})) for q in qs[6:9]]
    out += [Query(q, k=8, filter=Filter(modalities=frozenset({Modality.TEXT}))) for q in qs[9:]]
    return out


def answers(c: Collection) -> list[list[tuple[str, float, Modality | None, dict[str, str]]]]:
    return [[(h.id, h.score, h.modality, h.metadata) for h in hits] for hits in c.search_many(queries(48))]


def collection_dir(tmp_path: Path, name: str = "docs") -> Path:
    return tmp_path / "collections" / name


def reopen(tmp_path: Path) -> CollectionStore:
    store = CollectionStore(tmp_path)
    store.open()
    return store


def test_create_get_list_delete(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    created = store.create(config("b"))
    store.create(config("a", metric=Metric.L2))
    assert store.get("b") is created
    assert created.config.index_dimension == 24
    assert [c.name for c in store.list()] == ["a", "b"]
    with pytest.raises(AlreadyExists, match="collection 'a' already exists"):
        store.create(config("a"))
    store.delete("a")
    assert not collection_dir(tmp_path, "a").exists()
    with pytest.raises(NotFound, match="collection 'a' not found"):
        store.get("a")
    with pytest.raises(NotFound, match="collection 'a' not found"):
        store.delete("a")
    assert [c.name for c in reopen(tmp_path).list()] == ["b"]


def test_create_refuses_an_invalid_config_without_touching_disk(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    with pytest.raises(InvalidArgument) as info:
        store.create(config("x", index_dimension=100))
    assert info.value.field == "config.index_dimension"
    assert not collection_dir(tmp_path, "x").exists()


def test_created_but_never_saved_collection_survives_a_restart(tmp_path: Path) -> None:
    reopen(tmp_path).create(config("empty", metric=Metric.INNER_PRODUCT))
    again = reopen(tmp_path).get("empty")
    assert len(again) == 0
    assert again.config == config("empty", metric=Metric.INNER_PRODUCT).validated()


def test_save_and_reopen_gives_identical_results(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    c = store.create(config())
    data = fill(c)
    c.upsert([Record("id5", data[6], Modality.VIDEO, {"g": "new"})])
    c.delete([f"id{i}" for i in range(100, 200)])
    before = answers(c)
    assert store.save_all() == 1
    assert store.save_all() == 0  # nothing changed since
    loaded = reopen(tmp_path).get("docs")
    assert len(loaded) == len(c) == 1100
    assert answers(loaded) == before
    item = loaded.get(["id5"], include_vectors=True)[0]
    assert item is not None and item.modality is Modality.VIDEO and item.metadata == {"g": "new"}
    np.testing.assert_array_equal(loaded.vector("id5"), data[6])
    # New keys keep counting from where the saved collection stopped: nothing is reused.
    loaded.upsert([Record("fresh", data[7])])
    assert len(loaded) == 1101
    both = loaded.get(["id7", "fresh"], include_vectors=True)
    assert [i.id for i in both if i is not None] == ["id7", "fresh"]
    np.testing.assert_array_equal(loaded.vector("id7"), loaded.vector("fresh"))
    # HNSW over exact duplicates is approximate; a k=10 shortlist holds both (a reused key would not)
    assert {"fresh", "id7"} <= {h.id for h in loaded.search(Query(data[7], k=10))}


def test_corrupt_index_file_is_rebuilt_from_the_vectors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = reopen(tmp_path)
    fill(store.create(config()))
    store.save_all()
    before = answers(store.get("docs"))
    manifest = json.loads((collection_dir(tmp_path) / MANIFEST_FILE).read_text())
    index_file = collection_dir(tmp_path) / manifest["files"]["index"]["name"]
    raw = bytearray(index_file.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 4096] = np.random.default_rng(0).bytes(4096)
    index_file.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        loaded = reopen(tmp_path).get("docs")
    assert "rebuilding" in caplog.text
    assert len(loaded) == 1200
    assert loaded.dirty  # so the next save replaces the bad index file
    after = answers(loaded)
    # A rebuilt HNSW graph may shortlist differently, but every hit is still exactly scored.
    overlap = sum(len({h[0] for h in a} & {h[0] for h in b}) for a, b in zip(before, after, strict=True))
    assert overlap / sum(len(a) for a in before) >= 0.95


def test_missing_index_file_is_rebuilt(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    fill(store.create(config()))
    store.save_all()
    manifest = json.loads((collection_dir(tmp_path) / MANIFEST_FILE).read_text())
    (collection_dir(tmp_path) / manifest["files"]["index"]["name"]).unlink()
    loaded = reopen(tmp_path).get("docs")
    assert loaded.search(Query(loaded.vector("id3"), k=1))[0].id == "id3"
    assert loaded.usearch_calls == 1


def test_corrupt_vectors_fall_back_to_the_previous_snapshot(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    c = store.create(config())
    fill(c, n=300)
    store.save_all()
    c.delete(["id1"])
    store.save_all()
    manifest = json.loads((collection_dir(tmp_path) / MANIFEST_FILE).read_text())
    assert manifest["generation"] == 2 and manifest["count"] == 299
    vectors = collection_dir(tmp_path) / manifest["files"]["vectors"]["name"]
    raw = bytearray(vectors.read_bytes())
    raw[-5] ^= 0xFF
    vectors.write_bytes(bytes(raw))
    store = reopen(tmp_path)
    loaded = store.get("docs")
    assert len(loaded) == 300  # generation 1, before the delete
    assert loaded.get(["id1"])[0] is not None
    # Generation 1 is the commit point again; the next save builds on it and keeps it as fallback.
    assert json.loads((collection_dir(tmp_path) / MANIFEST_FILE).read_text())["generation"] == 1
    loaded.delete(["id2"])
    assert store.save_all() == 1
    previous = json.loads((collection_dir(tmp_path) / PREVIOUS_MANIFEST_FILE).read_text())
    assert previous["generation"] == 1
    assert len(reopen(tmp_path).get("docs")) == 299


def test_no_intact_snapshot_refuses_to_start(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    fill(store.create(config()), n=50)
    store.save_all()
    manifest = json.loads((collection_dir(tmp_path) / MANIFEST_FILE).read_text())
    (collection_dir(tmp_path) / manifest["files"]["items"]["name"]).write_text("{}")
    with pytest.raises(Internal, match="no intact snapshot"):
        reopen(tmp_path)


def test_only_two_generations_are_kept(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    c = store.create(config())
    data = fill(c, n=100)
    for i in range(4):
        c.upsert([Record(f"extra{i}", data[i])])
        store.save_all()
    names = {p.name for p in collection_dir(tmp_path).iterdir()}
    assert {"config.json", MANIFEST_FILE, PREVIOUS_MANIFEST_FILE} <= names
    assert len(names) == 3 + 6  # two generations of vectors, items and index files
    assert not any(name.endswith(".tmp") for name in names)
    assert len(reopen(tmp_path).get("docs")) == 104


def test_save_compacts_rows_and_rebuilds_an_index_full_of_tombstones(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    c = store.create(config())
    fill(c, n=1000)
    assert c.delete([f"id{i}" for i in range(500)]) == 500
    store.save_all()
    manifest = json.loads((collection_dir(tmp_path) / MANIFEST_FILE).read_text())
    assert manifest["count"] == 500
    assert manifest["index_tombstones"] == 0  # 500 removed of 500 present: rebuilt before saving
    loaded = reopen(tmp_path).get("docs")
    hits = loaded.search(Query(loaded.vector("id700"), k=10))
    assert hits[0].id == "id700" and all(int(h.id[2:]) >= 500 for h in hits)


def test_a_few_tombstones_are_kept_in_the_saved_index(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    c = store.create(config())
    data = fill(c, n=1000)
    c.delete([f"id{i}" for i in range(100)])
    store.save_all()
    manifest = json.loads((collection_dir(tmp_path) / MANIFEST_FILE).read_text())
    assert (manifest["count"], manifest["index_tombstones"]) == (900, 100)
    loaded = reopen(tmp_path).get("docs")
    for q in data[:20]:  # the deleted vectors themselves
        hits = loaded.search(Query(q, k=10))
        assert len(hits) == 10 and all(int(h.id[2:]) >= 100 for h in hits)
    # Tombstones loaded from disk still count towards the next rebuild.
    loaded.delete([f"id{i}" for i in range(100, 300)])
    loaded.compact()
    hits = loaded.search(Query(data[500], k=5))
    assert hits[0].id == "id500"


def test_deleted_collection_directory_is_gone_after_restart(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    fill(store.create(config("gone")), n=20)
    store.save_all()
    store.delete("gone")
    assert not collection_dir(tmp_path, "gone").exists()
    assert reopen(tmp_path).list() == []
    # The name can be used again, for a different config.
    fresh = reopen(tmp_path).create(config("gone", dimension=8, index_dimension=0))
    assert fresh.config.dimension == 8


def test_collection_emptied_by_deletes_saves_and_reopens(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    c = store.create(config())
    fill(c, n=40)
    c.delete([f"id{i}" for i in range(40)])
    store.save_all()
    loaded = reopen(tmp_path).get("docs")
    assert len(loaded) == 0
    assert loaded.search(Query(np.ones(48, dtype=np.float32), k=3)) == []
    loaded.upsert([Record("back", np.ones(48, dtype=np.float32))])
    assert [h.id for h in loaded.search(Query(np.ones(48, dtype=np.float32), k=3))] == ["back"]


def test_leftover_directory_without_config_does_not_block_create(tmp_path: Path) -> None:
    (collection_dir(tmp_path, "half") / "junk").mkdir(parents=True)
    store = reopen(tmp_path)
    assert store.list() == []
    store.create(config("half"))
    assert not (collection_dir(tmp_path, "half") / "junk").exists()
    assert [c.name for c in reopen(tmp_path).list()] == ["half"]


def test_unreadable_manifest_falls_back_and_the_fallback_survives_the_next_save(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    c = store.create(config())
    data = fill(c, n=100)
    store.save_all()
    c.upsert([Record("second", data[0])])
    store.save_all()
    (collection_dir(tmp_path) / MANIFEST_FILE).write_text("{not json")
    store = reopen(tmp_path)
    loaded = store.get("docs")
    assert len(loaded) == 100 and loaded.get(["second"]) == [None]
    loaded.upsert([Record("third", data[1])])
    store.save_all()
    names = {p.name for p in collection_dir(tmp_path).iterdir()}
    previous = json.loads((collection_dir(tmp_path) / PREVIOUS_MANIFEST_FILE).read_text())
    assert previous["generation"] == 1
    assert {entry["name"] for entry in previous["files"].values()} <= names
    again = reopen(tmp_path).get("docs")
    assert len(again) == 101 and again.get(["third"])[0] is not None
