"""`onespace check DATA_DIR`: an offline, read-only verification of real data directories built with
CollectionStore, then damaged on purpose (a flipped vector byte, a truncated file, a corrupt index
checkpoint, a foreign format version, a mangled database)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from onespace.cli import main
from onespace.index import CollectionConfig, CollectionStore, Record, StoredDtype
from onespace.index.check import NotADataDir, check_data_dir
from onespace.index.sqlstore import DB_FILE
from onespace.index.vectorfile import SLOT_DTYPE
from onespace.models import Modality
from tests.unit.index.helpers import mixture

DIM = 16
N = 300


def build(path: Path, *, close: bool = True, checkpoint: bool = True) -> CollectionStore:
    """`docs` (f16, the default) with 300 items, 2 deleted; `exact` (f32) with 50; `empty`."""
    store = CollectionStore(path)
    store.open()
    docs = store.create(CollectionConfig(name="docs", model="m", dimension=DIM))
    data = mixture(N, DIM, seed=1)
    docs.upsert([Record(f"i{i}", v, Modality.TEXT, {"n": str(i)}) for i, v in enumerate(data)])
    docs.delete(["i298", "i299"])
    exact = store.create(
        CollectionConfig(name="exact", model="m", dimension=DIM, stored_dtype=StoredDtype.F32)
    )
    exact.upsert([Record(f"e{i}", v, Modality.IMAGE) for i, v in enumerate(mixture(50, DIM, seed=2))])
    store.create(CollectionConfig(name="empty", model="m", dimension=DIM))
    if checkpoint:
        store.checkpoint_all()
    if close:
        store.close()
    return store


def collection_dir(path: Path, name: str = "docs") -> Path:
    return path / "collections" / name


def snapshot(path: Path) -> dict[str, tuple[str, float]]:
    """Every file under `path`: its sha256 and mtime."""
    return {
        str(p.relative_to(path)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def row_bytes(dtype: StoredDtype) -> int:
    return DIM * (2 if dtype is StoredDtype.F16 else 4)


def test_a_clean_data_dir_passes_and_nothing_is_modified(tmp_path: Path) -> None:
    build(tmp_path)
    before = snapshot(tmp_path)
    report = check_data_dir(tmp_path)
    assert report.ok and report.exit_code == 0 and report.warnings == []
    docs, empty, exact = report.collections
    assert (docs.name, docs.items, docs.rows, docs.dead_rows) == ("docs", 298, N, 2)
    assert (docs.stored_dtype, docs.dimension, docs.errors, docs.warnings) == ("f16", DIM, [], [])
    assert docs.seq == 2 and docs.checkpoint_seq == 2 and docs.disk_bytes > 0
    assert (exact.items, exact.rows, exact.dead_rows, exact.stored_dtype) == (50, 50, 0, "f32")
    assert (empty.items, empty.rows, empty.ok) == (0, 0, True)
    assert snapshot(tmp_path) == before  # not even a -wal or -shm file appeared


def test_a_crashed_store_with_its_wal_still_holding_commits_passes(tmp_path: Path) -> None:
    store = build(tmp_path, close=False, checkpoint=False)  # as after kill -9: the WAL holds it all
    assert (collection_dir(tmp_path) / (DB_FILE + "-wal")).stat().st_size > 0
    report = check_data_dir(tmp_path)
    docs = report.collections[0]
    assert report.ok and (docs.items, docs.rows, docs.checkpoint_seq) == (298, N, None)
    store.close()


@pytest.mark.parametrize(
    ("name", "dtype", "item"), [("docs", StoredDtype.F16, "i7"), ("exact", StoredDtype.F32, "e7")]
)
def test_a_flipped_byte_in_a_committed_row_is_a_crc_mismatch(
    tmp_path: Path, name: str, dtype: StoredDtype, item: str
) -> None:
    build(tmp_path)
    vectors = next(collection_dir(tmp_path, name).glob("vectors-*.bin"))
    raw = bytearray(vectors.read_bytes())
    raw[7 * row_bytes(dtype) + 3] ^= 0x40  # row 7 holds the 8th item written
    vectors.write_bytes(bytes(raw))
    report = check_data_dir(tmp_path)
    assert report.exit_code == 1
    reports = {c.name: c for c in report.collections}
    assert [c.name for c in report.collections if not c.ok] == [name]
    (error,) = reports[name].errors
    assert error.startswith("crc32 mismatch in 1 of ") and repr(item) in error


def test_a_flipped_byte_in_a_dead_row_is_not_an_error(tmp_path: Path) -> None:
    build(tmp_path)
    vectors = next(collection_dir(tmp_path).glob("vectors-*.bin"))
    raw = bytearray(vectors.read_bytes())
    raw[299 * row_bytes(StoredDtype.F16)] ^= 0xFF  # i299 was deleted: nothing reads the row
    vectors.write_bytes(bytes(raw))
    assert check_data_dir(tmp_path).ok


def test_a_truncated_vector_file_is_reported(tmp_path: Path) -> None:
    build(tmp_path)
    vectors = next(collection_dir(tmp_path).glob("vectors-*.bin"))
    with open(vectors, "r+b") as f:
        f.truncate(250 * row_bytes(StoredDtype.F16) + 5)  # rows 0..249 intact, the rest gone
    report = check_data_dir(tmp_path)
    assert report.exit_code == 1
    docs = report.collections[0]
    assert not docs.ok and report.collections[1].ok
    assert any(f"{vectors.name} holds 250 of the 300 committed rows" in e for e in docs.errors)
    assert any(e.startswith("48 live items have no row") and "'i250'" in e for e in docs.errors)
    assert (docs.rows, docs.dead_rows) == (N, 0)  # the 2 dead rows were among the lost ones


def test_a_missing_slots_file_is_reported(tmp_path: Path) -> None:
    build(tmp_path)
    slots = next(collection_dir(tmp_path).glob("slots-*.bin"))
    slots.unlink()
    (docs, *_) = check_data_dir(tmp_path).collections
    assert docs.errors[0] == f"{slots.name} is missing"
    assert docs.errors[1].startswith("298 live items have no row") and len(docs.errors) == 2


def test_slot_records_out_of_order_or_with_another_modality_are_reported(tmp_path: Path) -> None:
    build(tmp_path)
    path = next(collection_dir(tmp_path).glob("slots-*.bin"))
    slots = np.fromfile(path, dtype=SLOT_DTYPE)
    slots["code"][3] = 2  # an image, says the slot; SQLite says text
    slots["key"][[10, 11]] = slots["key"][[11, 10]]
    slots.tofile(path)
    errors = " | ".join(check_data_dir(tmp_path).collections[0].errors)
    assert "1 rows have another modality" in errors and "'i3'" in errors
    assert "keys are not strictly increasing (1 places, first at row 11)" in errors


def test_a_corrupt_index_checkpoint_is_only_a_warning(tmp_path: Path) -> None:
    build(tmp_path)
    index = next(collection_dir(tmp_path).glob("index-*.usearch"))
    raw = bytearray(index.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    index.write_bytes(bytes(raw))
    report = check_data_dir(tmp_path)
    assert report.ok and report.exit_code == 0
    docs = report.collections[0]
    assert docs.checkpoint_seq is None
    assert docs.warnings == [
        f"index checkpoint unusable: {index.name} does not match its sha256; "
        "the index is rebuilt from the vectors on start"
    ]


def test_a_missing_index_file_and_leftover_files_are_warnings(tmp_path: Path) -> None:
    build(tmp_path)
    directory = collection_dir(tmp_path)
    next(directory.glob("index-*.usearch")).unlink()
    (directory / "vectors-000002.bin").write_bytes(b"half a compaction")
    (tmp_path / "staging" / "new-abc").mkdir(parents=True)
    (tmp_path / "collections" / "stray").mkdir()
    report = check_data_dir(tmp_path)
    assert report.ok
    warnings = report.collections[0].warnings
    assert any("index-000000000002.usearch is missing" in w for w in warnings)
    assert any("unfinished compaction" in w and "vectors-000002.bin" in w for w in warnings)
    assert any(w.startswith("staging/ holds leftovers") for w in report.warnings)
    assert "collections/stray has no config.json; the server ignores it" in report.warnings


def test_an_unknown_format_version_is_corruption(tmp_path: Path) -> None:
    build(tmp_path)
    db = sqlite3.connect(collection_dir(tmp_path) / DB_FILE)
    db.execute("UPDATE meta SET value = 99 WHERE name = 'format'")
    db.commit()
    db.close()
    docs = check_data_dir(tmp_path).collections[0]
    assert docs.errors == ["items.sqlite has storage format 99; this onespace reads format 2"]


def test_a_mangled_database_fails(tmp_path: Path) -> None:
    build(tmp_path)
    db = collection_dir(tmp_path) / DB_FILE
    raw = bytearray(db.read_bytes())
    page = 4096
    assert len(raw) > 3 * page
    raw[2 * page : 3 * page] = b"\x5a" * page  # a whole b-tree page of garbage
    db.write_bytes(bytes(raw))
    report = check_data_dir(tmp_path)
    assert report.exit_code == 1
    assert any(DB_FILE in e for e in report.collections[0].errors)


def test_an_integrity_check_failure_is_corruption(tmp_path: Path) -> None:
    build(tmp_path)
    db = sqlite3.connect(collection_dir(tmp_path) / DB_FILE)
    db.execute("PRAGMA writable_schema=ON")  # the index's b-tree no longer matches its definition
    db.execute(
        "UPDATE sqlite_master SET sql = 'CREATE INDEX items_seq ON items(id)' WHERE name = 'items_seq'"
    )
    db.commit()
    db.close()
    (error,) = check_data_dir(tmp_path).collections[0].errors
    assert error.startswith("items.sqlite failed integrity_check: row 1 missing from index items_seq; ")
    assert error.endswith(" (and more)")
    assert check_data_dir(tmp_path, quick=True).ok  # quick_check does not compare indexes to tables


def test_a_config_naming_another_collection_is_corruption(tmp_path: Path) -> None:
    build(tmp_path)
    config = collection_dir(tmp_path) / "config.json"
    data = json.loads(config.read_text("utf-8"))
    config.write_text(json.dumps({**data, "name": "other"}), encoding="utf-8")
    assert (
        "config.json names collection 'other', not 'docs'" in check_data_dir(tmp_path).collections[0].errors
    )


def test_not_a_data_dir(tmp_path: Path) -> None:
    with pytest.raises(NotADataDir, match="no such directory"):
        check_data_dir(tmp_path / "nope")
    with pytest.raises(NotADataDir, match="has no collections/ directory"):
        check_data_dir(tmp_path)


def test_cli_clean_corrupt_json_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    build(data)
    assert main(["check", str(data)]) == 0
    out = capsys.readouterr().out
    assert "collection docs: ok\n  298 items, 300 rows, 2 dead rows, seq 2, index checkpoint seq 2" in out
    assert out.rstrip().endswith("checked 3 collections in " + str(data) + ": 0 corrupt, 0 with warnings")

    vectors = next(collection_dir(data).glob("vectors-*.bin"))
    raw = bytearray(vectors.read_bytes())
    raw[0] ^= 1
    vectors.write_bytes(bytes(raw))
    assert main(["check", str(data), "--quick"]) == 1
    out = capsys.readouterr().out
    assert "collection docs: CORRUPT" in out and "  error: crc32 mismatch in 1 of 298 live rows" in out

    assert main(["check", str(data), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    docs = report["collections"][0]
    assert (docs["name"], docs["ok"], docs["items"], docs["rows"], docs["dead_rows"]) == (
        "docs",
        False,
        298,
        300,
        2,
    )
    assert docs["errors"][0].startswith("crc32 mismatch") and report["collections"][1]["ok"] is True

    assert main(["check", str(tmp_path / "missing")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"error: no such directory: {tmp_path / 'missing'}\n"
    with pytest.raises(SystemExit) as usage:
        main(["check"])
    assert usage.value.code == 2
