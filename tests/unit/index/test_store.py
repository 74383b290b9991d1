"""The durable store: what is acknowledged survives a crash (no close), torn and corrupt files are
recovered from with a log line, create/delete are atomic, compaction gives space back."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from onespace.errors import AlreadyExists, Internal, InvalidArgument, NotFound
from onespace.index import (
    CollectionConfig,
    CollectionStore,
    HnswParams,
    Metric,
    Query,
    Record,
    StoredDtype,
    maintenance,
)
from onespace.index.checkpoint import CHECKPOINT_FILE
from onespace.index.sqlstore import DB_FILE
from onespace.models import Modality
from tests.unit.index.helpers import mixture

DIM = 32


def config(name: str = "docs", **changes: object) -> CollectionConfig:
    # A wide search beam: these tests compare results across reopen, where a rebuilt graph is
    # another approximation; with it every item reliably finds itself first.
    values: dict[str, object] = {
        "index_dimension": 16,
        "stored_dtype": StoredDtype.F32,
        "hnsw": HnswParams(expansion_search=512),
        **changes,
    }
    return CollectionConfig(name=name, model="m", dimension=DIM, **values)  # type: ignore[arg-type]


def opened(path: Path) -> CollectionStore:
    store = CollectionStore(path)
    store.open()
    return store


def fill(c: object, n: int = 300, offset: int = 0) -> np.ndarray:
    data = mixture(n, DIM, seed=offset + 1)
    c.upsert(  # type: ignore[attr-defined]
        [Record(f"i{offset + i}", v, Modality.TEXT, {"n": str(i % 10)}) for i, v in enumerate(data)]
    )
    return data


def answers(store: CollectionStore, data: np.ndarray, name: str = "docs") -> list[list[str]]:
    c = store.get(name)
    return [[h.id for h in c.search(Query(q, k=5))] for q in data[:20]]


def test_create_get_list_delete(tmp_path: Path) -> None:
    store = opened(tmp_path)
    created = store.create(config("b"))
    store.create(config("a", metric=Metric.L2))
    assert store.get("b") is created
    assert [c.name for c in store.list()] == ["a", "b"]
    with pytest.raises(AlreadyExists):
        store.create(config("a"))
    store.delete("a")
    with pytest.raises(NotFound):
        store.get("a")
    with pytest.raises(NotFound):
        store.delete("a")
    assert not (tmp_path / "collections" / "a").exists()


def test_create_refuses_an_invalid_config_without_touching_disk(tmp_path: Path) -> None:
    store = opened(tmp_path)
    with pytest.raises(InvalidArgument, match=r"config\.index_dimension"):
        store.create(config("x", index_dimension=100))
    assert list((tmp_path / "collections").iterdir()) == []


def test_every_acknowledged_write_survives_a_crash_without_close(tmp_path: Path) -> None:
    store = opened(tmp_path)
    c = store.create(config())
    data = fill(c)
    c.delete(["i3", "i4"])
    c.upsert([Record("i5", data[7], Modality.IMAGE, {"n": "x"})])
    expected = answers(store, data)
    # No checkpoint, no close: a second store opens the same files, as a restart after kill -9.
    before = time.time()
    again = opened(tmp_path)
    assert len(again.get("docs")) == 298
    stats = again.stats(again.get("docs"))  # rebuilt, not saved: the maintainer's clock runs from the start
    assert stats.changes_since_checkpoint == 298 and stats.unsaved_since >= before
    assert again.get("docs").get(["i3", "i4"]) == [None, None]
    item = again.get("docs").get(["i5"], include_vectors=True)[0]
    assert item is not None and item.modality is Modality.IMAGE and item.metadata == {"n": "x"}
    np.testing.assert_array_equal(item.vector, data[7])
    assert [a[0] for a in answers(again, data)] == [a[0] for a in expected]
    assert expected[7][:2] in (["i5", "i7"], ["i7", "i5"])  # i5 now holds i7's vector


def test_checkpoint_then_more_writes_are_replayed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = opened(tmp_path)
    c = store.create(config())
    data = fill(c)
    assert store.checkpoint_all() == 1
    assert store.checkpoint_all() == 0  # nothing changed since
    more = fill(c, n=50, offset=300)
    c.delete(["i0"])
    before = time.time()
    with caplog.at_level(logging.INFO):
        again = opened(tmp_path)
    assert "50 added and 1 removed since replayed" in caplog.text
    assert len(again.get("docs")) == 349
    # Replayed at every start until a checkpoint holds them: unsaved, their clock from this start.
    stats = again.stats(again.get("docs"))
    assert stats.changes_since_checkpoint == 51 and stats.unsaved_since >= before
    saved = opened(tmp_path / "saved")
    fill(saved.create(config()))
    saved.checkpoint_all()
    reopened = opened(tmp_path / "saved")
    stats = reopened.stats(reopened.get("docs"))
    assert (stats.changes_since_checkpoint, stats.unsaved_since) == (0, 0.0)
    assert [h.id for h in again.get("docs").search(Query(more[3], k=1))] == ["i303"]
    assert answers(again, data)[1][0] == "i1"


def test_corrupt_checkpoint_is_rebuilt_from_the_vectors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = opened(tmp_path)
    data = fill(store.create(config()))
    store.checkpoint_all()
    expected = answers(store, data)
    index_file = next((tmp_path / "collections" / "docs").glob("index-*.usearch"))
    raw = bytearray(index_file.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\xff" * 64
    index_file.write_bytes(bytes(raw))
    with caplog.at_level(logging.INFO):
        again = opened(tmp_path)
    assert "does not match its checksum" in caplog.text and "index rebuilt from 300" in caplog.text
    # A rebuilt graph is another approximation: each item still finds itself first.
    assert [a[0] for a in answers(again, data)] == [a[0] for a in expected] == [f"i{i}" for i in range(20)]


def test_missing_index_file_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = opened(tmp_path)
    data = fill(store.create(config()))
    store.checkpoint_all()
    next((tmp_path / "collections" / "docs").glob("index-*.usearch")).unlink()
    with caplog.at_level(logging.INFO):
        again = opened(tmp_path)
    assert "checkpoint unusable" in caplog.text
    assert answers(again, data)[0][0] == "i0"


def test_truncated_vector_file_drops_only_the_lost_items(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = opened(tmp_path)
    c = store.create(config())
    data = fill(c)
    directory = tmp_path / "collections" / "docs"
    vectors = next(directory.glob("vectors-*.bin"))
    with open(vectors, "r+b") as f:
        f.truncate(250 * DIM * 4 + 10)  # rows 0..249 intact, the rest gone
    with caplog.at_level(logging.INFO):
        again = opened(tmp_path)
    assert "holds 250 of 300 committed rows; dropping the 50 items" in caplog.text
    recovered = again.get("docs")
    assert len(recovered) == 250
    assert recovered.get(["i249", "i250"])[1] is None
    np.testing.assert_array_equal(recovered.vector("i249"), data[249])
    # Hits are named from the rebuilt slot arrays: the survivors as before, the dropped never.
    hit = recovered.search(Query(data[249], k=1))[0]
    assert (hit.id, hit.metadata, hit.modality) == ("i249", {"n": "9"}, Modality.TEXT)
    named = {h.id for q in data[240:300] for h in recovered.search(Query(q, k=5))}
    assert named and all(int(i[1:]) < 250 for i in named)
    recovered.upsert([Record("after", data[0])])  # and it keeps working
    assert len(opened(tmp_path).get("docs")) == 251


def test_wal_left_mid_transaction_is_ignored(tmp_path: Path) -> None:
    store = opened(tmp_path)
    fill(store.create(config()))
    wal = tmp_path / "collections" / "docs" / (DB_FILE + "-wal")
    with open(wal, "ab") as f:  # a torn frame: what a crash mid-commit leaves
        f.write(b"\x37\x7f\x06\x82" + b"\x00" * 4000)
    assert len(opened(tmp_path).get("docs")) == 300


def test_unknown_format_version_is_a_clear_error(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.create(config())
    store.close()
    db = sqlite3.connect(tmp_path / "collections" / "docs" / DB_FILE)
    db.execute("UPDATE meta SET value = 99 WHERE name = 'format'")
    db.commit()
    db.close()
    with pytest.raises(Internal, match="storage format 99; this onespace reads format 2"):
        opened(tmp_path)


def test_leftovers_of_a_crashed_create_or_delete_are_cleaned(tmp_path: Path) -> None:
    store = opened(tmp_path)
    fill(store.create(config()))
    (tmp_path / "staging" / "half-abc").mkdir(parents=True)
    (tmp_path / "trash" / "gone-abc").mkdir(parents=True)
    again = opened(tmp_path)
    assert [c.name for c in again.list()] == ["docs"]
    assert not (tmp_path / "staging").exists() and not (tmp_path / "trash").exists()


def test_deleted_collection_is_gone_after_restart_and_the_name_reusable(tmp_path: Path) -> None:
    store = opened(tmp_path)
    fill(store.create(config("gone")), n=20)
    store.delete("gone")
    again = opened(tmp_path)
    assert again.list() == []
    assert len(again.create(config("gone"))) == 0


def test_compaction_returns_disk_and_keeps_every_live_item(tmp_path: Path) -> None:
    store = opened(tmp_path)
    c = store.create(config())
    data = fill(c, n=4000)
    c.delete([f"i{i}" for i in range(0, 4000, 2)])
    directory = tmp_path / "collections" / "docs"
    rows_before = maintenance.stats(c).dead_slots
    assert rows_before == 2000
    assert maintenance.compact(c)
    after = maintenance.stats(c)
    assert (after.dead_slots, after.index_tombstones, after.items) == (0, 0, 2000)
    assert len(list(directory.glob("vectors-*.bin"))) == 1
    np.testing.assert_array_equal(c.vector("i1"), data[1])
    assert c.search(Query(data[3], k=1))[0].id == "i3"
    again = opened(tmp_path)
    assert len(again.get("docs")) == 2000
    assert again.get("docs").search(Query(data[3], k=1))[0].id == "i3"


def test_f16_storage_rounds_and_refuses_values_it_cannot_hold(tmp_path: Path) -> None:
    store = opened(tmp_path)
    c = store.create(config(stored_dtype=StoredDtype.F16))
    v = mixture(1, DIM)[0]
    c.upsert([Record("a", v)])
    np.testing.assert_allclose(c.vector("a"), v, rtol=1e-3, atol=1e-3)
    big = v.copy()
    big[0] = 1e6
    with pytest.raises(InvalidArgument, match="exceeds the f16 range"):
        c.upsert([Record("b", big)])
    assert len(c) == 1
    assert (tmp_path / "collections" / "docs" / CHECKPOINT_FILE).exists() is False


def test_background_checkpoints_are_built_from_the_files_and_replayed_from(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = opened(tmp_path)
    empty = store.create(config("empty"))
    assert store.checkpoint(empty)  # nothing committed yet: an empty index
    c = store.create(config())
    data = fill(c)
    assert store.checkpoint(c)  # the first one: built from every stored vector in a child process
    assert c.checkpoint is not None and c.checkpoint.seq == c.seq and c.checkpoint.count == 300
    more = fill(c, n=100, offset=300)
    c.delete([f"i{i}" for i in range(0, 300, 3)])
    c.upsert([Record("i1", data[2], Modality.IMAGE)])
    assert store.checkpoint(c)  # the previous checkpoint plus the changes since
    assert c.checkpoint.seq == c.seq and c.checkpoint.count == len(c) == 300
    assert not store.checkpoint(c)  # nothing changed since
    with caplog.at_level(logging.INFO):
        again = opened(tmp_path)
    assert "0 added and 0 removed since replayed" in caplog.text
    reopened = again.get("docs")
    assert len(reopened) == 300 and len(again.get("empty")) == 0
    assert reopened.get(["i0", "i3"]) == [None, None]
    assert reopened.search(Query(more[5], k=1))[0].id == "i305"
    assert {h.id for h in reopened.search(Query(data[2], k=2))} == {"i1", "i2"}


def test_a_handle_held_across_a_delete_gives_not_found_to_stats_and_maintenance(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from onespace.engine.maintenance import Maintainer
    from onespace.metrics import Metrics

    store = opened(tmp_path)
    held = store.create(config())
    fill(held, 10)

    class Stale:  # a maintenance round that listed the collection just before the delete
        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        def list(self) -> list[object]:
            return [held]

    store.delete("docs")
    with pytest.raises(NotFound, match="'docs' not found"):
        store.stats(held)
    Maintainer(Stale(), Metrics(), interval=1, max_age=1, changes=1).run_once()  # type: ignore[arg-type]
    assert "Traceback" not in caplog.text
    store.close()


def test_hits_are_named_and_described_alike_after_replace_delete_compaction_and_restart(
    tmp_path: Path,
) -> None:
    """Hits take ids and modalities from memory and metadata from SQLite only for items that have
    some: every way the slot arrays are rebuilt (appends, kills, compaction, reopen, a reopen that
    drops items whose vectors were lost) must name each hit as `get` does."""
    store = opened(tmp_path)
    c = store.create(config())
    data = mixture(2000, DIM, seed=5)
    c.upsert(
        [
            Record(
                f"i{i}", v, Modality.TEXT if i % 2 else Modality.IMAGE, {"n": str(i)} if i % 3 == 0 else {}
            )
            for i, v in enumerate(data)
        ]
    )
    # Replacements: metadata taken away from i0, given to i1, changed on i3; i4 deleted.
    c.upsert(
        [
            Record("i0", data[0], Modality.AUDIO),
            Record("i1", data[1], Modality.TEXT, {"new": "yes"}),
            Record("i3", data[3], None, {"n": "changed"}),
        ]
    )
    c.delete([f"i{i}" for i in range(4, 2000, 2)])

    def check(collection: object) -> None:
        seen = set()
        for q in data[:12]:
            for hit in collection.search(Query(q, k=5)):  # type: ignore[attr-defined]
                item = collection.get([hit.id])[0]  # type: ignore[attr-defined]
                assert item is not None, hit.id
                assert (hit.id, hit.metadata, hit.modality) == (item.id, item.metadata, item.modality)
                seen.add(hit.id)
        own = {i: collection.search(Query(data[i], k=1))[0] for i in (0, 1, 3, 9)}  # type: ignore[attr-defined]
        assert (own[0].id, own[0].metadata, own[0].modality) == ("i0", {}, Modality.AUDIO)
        assert (own[1].id, own[1].metadata, own[1].modality) == ("i1", {"new": "yes"}, Modality.TEXT)
        assert (own[3].id, own[3].metadata, own[3].modality) == ("i3", {"n": "changed"}, None)
        assert (own[9].id, own[9].metadata, own[9].modality) == ("i9", {"n": "9"}, Modality.TEXT)
        assert "i4" not in seen and len(seen) > 12

    check(c)
    assert maintenance.compact(c, force=True)
    assert maintenance.stats(c).dead_slots == 0
    check(c)
    store.close()
    check(opened(tmp_path).get("docs"))
