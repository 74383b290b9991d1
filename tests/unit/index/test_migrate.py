"""A data directory written by storage format 1 (snapshots) is migrated on open, nothing lost."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from onespace.errors import Internal
from onespace.index import CollectionStore, Query, StoredDtype
from onespace.index.migrate import BACKUP_DIR
from onespace.models import Modality
from tests.unit.index.helpers import mixture


def _entry(path: Path, data: bytes) -> dict[str, object]:
    path.write_bytes(data)
    return {"name": path.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def write_format_1(root: Path, name: str, vectors: np.ndarray) -> Path:
    """The files format 1 wrote at shutdown (config without stored_dtype, one generation)."""
    directory = root / "collections" / name
    directory.mkdir(parents=True)
    config = {
        "name": name,
        "model": "m",
        "dimension": vectors.shape[1],
        "index_dimension": 8,
        "metric": "cos",
        "dtype": "f16",
        "hnsw": {"connectivity": 16, "expansion_add": 128, "expansion_search": 64},
        "rerank_factor": 4,
    }
    (directory / "config.json").write_text(json.dumps(config))
    buffer = io.BytesIO()
    np.save(buffer, vectors)
    n = len(vectors)
    items = {
        "ids": [f"v{i}" for i in range(n)],
        "keys": list(range(n)),
        "modalities": [2 if i % 2 else 1 for i in range(n)],
        "metadata": [{"i": str(i)} for i in range(n)],
    }
    files = {
        "vectors": _entry(directory / "vectors-000001.npy", buffer.getvalue()),
        "items": _entry(directory / "items-000001.json", json.dumps(items).encode()),
        "index": _entry(directory / "index-000001.usearch", b"not read by the migration"),
    }
    manifest = {
        "format": 1,
        "generation": 1,
        "count": n,
        "next_key": n,
        "index_tombstones": 0,
        "files": files,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def test_format_1_collection_is_migrated_exactly_and_the_old_files_kept(tmp_path: Path) -> None:
    vectors = mixture(200, 16, seed=4) * 1000.0  # beyond f16's precision: must come back exactly
    write_format_1(tmp_path, "old", vectors)
    store = CollectionStore(tmp_path)
    store.open()
    c = store.get("old")
    assert len(c) == 200 and c.config.stored_dtype is StoredDtype.F32
    item = c.get(["v7"], include_vectors=True)[0]
    assert item is not None and item.metadata == {"i": "7"}
    assert item.modality is Modality.IMAGE  # code 2 in format 1
    np.testing.assert_array_equal(item.vector, vectors[7])
    assert c.search(Query(vectors[9], k=1))[0].id == "v9"
    assert (tmp_path / BACKUP_DIR / "old" / "manifest.json").exists()
    store.close()
    again = CollectionStore(tmp_path)  # a second start finds format 2 and migrates nothing
    again.open()
    assert len(again.get("old")) == 200


def test_interrupted_migration_is_undone_and_rerun(tmp_path: Path) -> None:
    vectors = mixture(50, 16, seed=5)
    directory = write_format_1(tmp_path, "old", vectors)
    (tmp_path / BACKUP_DIR).mkdir()
    directory.rename(tmp_path / BACKUP_DIR / "old")  # the crash: old moved away, new not yet in place
    store = CollectionStore(tmp_path)
    store.open()
    assert len(store.get("old")) == 50


def test_format_1_without_an_intact_snapshot_refuses_to_start(tmp_path: Path) -> None:
    directory = write_format_1(tmp_path, "old", mixture(10, 16))
    (directory / "vectors-000001.npy").write_bytes(b"garbage")
    with pytest.raises(Internal, match="no intact format-1 snapshot"):
        CollectionStore(tmp_path).open()
    assert (directory / "manifest.json").exists()  # nothing was touched
