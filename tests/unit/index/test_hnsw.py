from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from onespace.errors import Internal
from onespace.index import CollectionConfig, HnswParams, IndexDtype, Metric
from onespace.index.hnsw import HnswIndex


def cfg(**changes: object) -> CollectionConfig:
    base = CollectionConfig(name="h", model="m", dimension=16, index_dimension=8, dtype=IndexDtype.F32)
    return replace(base, **changes).validated()  # type: ignore[arg-type]


def saved(tmp_path: Path, n: int = 50) -> tuple[Path, np.ndarray]:
    keys = np.arange(10, 10 + n, dtype=np.uint64)
    index = HnswIndex.build(cfg(), keys, np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32))
    path = tmp_path / "i.usearch"
    index.save(path)
    return path, keys


def test_batch_search_is_one_call_and_sliced_by_counts() -> None:
    index = HnswIndex.build(cfg(), np.arange(3, dtype=np.uint64), np.eye(3, 8, dtype=np.float32))
    found = index.search(np.eye(4, 8, dtype=np.float32), 10, threads=1)
    assert index.search_calls == 1
    assert [len(keys) for keys in found] == [3, 3, 3, 3]
    assert [int(keys[0]) for keys in found[:3]] == [0, 1, 2]
    single = index.search(np.eye(1, 8, dtype=np.float32), 10, threads=1)
    assert len(single) == 1 and len(single[0]) == 3
    for n in (4, 1):  # usearch answers one query without a batch: padded the same way
        keys, counts = index.search_matrix(np.eye(n, 8, dtype=np.float32), 10, threads=1)
        assert keys.shape == (n, 10) and counts.tolist() == [3] * n


def test_a_search_during_a_long_add_does_not_wait_for_all_of_it() -> None:
    """usearch makes a search wait for the add call in progress; adds go in short slices, so a
    search issued while a big add runs answers while that add is still going."""
    config = cfg(dimension=32, index_dimension=32)
    data = np.random.default_rng(1).normal(size=(10_000, 32)).astype(np.float32)
    index = HnswIndex.build(config, np.arange(1000, dtype=np.uint64), data[:1000])
    started = threading.Event()
    adder = threading.Thread(
        target=lambda: (started.set(), index.add(np.arange(1000, 10_000, dtype=np.uint64), data[1000:]))
    )
    adder.start()
    started.wait()
    while len(index) == 1000:  # the add has linked its first slice
        pass
    found = index.search(data[:1], 1, threads=1)
    still_adding = len(index) < 10_000
    adder.join()
    assert int(found[0][0]) == 0 and still_adding
    assert len(index) == 10_000


def test_remove_counts_tombstones() -> None:
    index = HnswIndex.build(cfg(), np.arange(5, dtype=np.uint64), np.eye(5, 8, dtype=np.float32))
    index.remove([1, 2, 99])
    assert (len(index), index.tombstones) == (3, 2)


def test_load_roundtrip(tmp_path: Path) -> None:
    path, keys = saved(tmp_path)
    loaded = HnswIndex.load_file(cfg(), path, tombstones=4)
    assert (len(loaded), loaded.tombstones) == (50, 4)
    found = loaded.search(np.eye(1, 8, dtype=np.float32), 1, threads=1)[0]
    assert int(found[0]) in set(keys.tolist())


@pytest.mark.parametrize(
    "changes",
    [
        {"metric": Metric.INNER_PRODUCT},  # usearch's load would silently keep the wrong metric
        {"dtype": IndexDtype.F16},
        {"index_dimension": 4},
        {"hnsw": HnswParams(connectivity=8)},
    ],
)
def test_load_refuses_a_file_that_does_not_match_the_config(
    tmp_path: Path, changes: dict[str, object]
) -> None:
    path, _ = saved(tmp_path)
    with pytest.raises(Internal):
        HnswIndex.load_file(cfg(**changes), path, tombstones=0)


def test_garbage_file_is_internal(tmp_path: Path) -> None:
    path = tmp_path / "bad.usearch"
    path.write_bytes(b"not an index at all" * 10)
    with pytest.raises(Internal):
        HnswIndex.load_file(cfg(), path, tombstones=0)
