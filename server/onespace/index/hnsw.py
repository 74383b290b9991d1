"""The usearch HNSW index over a collection's Matryoshka prefixes, behind a small typed wrapper.

The wrapper is where usearch's sharp edges are handled (see docs/usearch.md): dtype and
metric are always explicit, batch results are always sliced by `counts`, a loaded file is checked
against the config and the expected count before use, and usearch exceptions become `Internal`.
It counts search calls so batching can be observed, and removals so the owner knows when a
rebuild is worth it (usearch never reclaims removed slots).

Not thread-safe: the owning collection holds its lock around every call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
from usearch.index import BatchMatches, Index

from onespace.errors import Internal
from onespace.index.config import CollectionConfig
from onespace.index.matryoshka import prefix

__all__ = ["HnswIndex"]

Keys = npt.NDArray[np.uint64]
ADD_SLICE = 32  # rows per usearch add call: a search on the same index waits for the call in progress


@contextmanager
def _usearch_errors(action: str) -> Iterator[None]:
    try:
        yield
    except (RuntimeError, ValueError, MemoryError, AssertionError, OverflowError) as exc:
        raise Internal(f"usearch failed to {action}: {exc}") from exc


def _new_index(config: CollectionConfig) -> Index:
    return Index(
        ndim=config.index_dimension,
        metric=config.metric.value,
        dtype=config.dtype.value,
        connectivity=config.hnsw.connectivity,
        expansion_add=config.hnsw.expansion_add,
        expansion_search=config.hnsw.expansion_search,
    )


class HnswIndex:
    def __init__(self, config: CollectionConfig, index: Index | None = None, tombstones: int = 0) -> None:
        self._config = config
        self._index = _new_index(config) if index is None else index
        # usearch keeps ef on the index, not per call; a search with another ef (a tuning trial)
        # sets it and puts it back, so searches hold this lock (usearch runs them one at a time
        # anyway)
        self._searching = threading.Lock()
        self.search_calls = 0
        self.tombstones = tombstones  # removed slots still held by usearch

    def __len__(self) -> int:
        return len(self._index)

    @classmethod
    def build(cls, config: CollectionConfig, keys: Keys, prefixes: npt.NDArray[np.float32]) -> HnswIndex:
        """A fresh index holding exactly these keys (a rebuild drops every tombstone)."""
        index = cls(config)
        index.add(keys, prefixes)
        return index

    def add(self, keys: Keys, prefixes: npt.NDArray[np.float32]) -> None:
        """Add vectors, linked one thread at a time.

        usearch 2.26's parallel add occasionally leaves a node unreachable: no search finds it,
        at any ef, until the graph is rebuilt (seen with 300 vectors as with 50k, in bulk and in
        small batches; never with one thread). An acknowledged item that search cannot find is a
        lost write to its user, so correctness wins over the (at most cores-fold) faster build.

        A search of this index waits for an add call in progress to end (usearch 2.26's Python
        binding: a search issued during a 2,048-row add waited 1.2-2.8 s, during 64-row adds at
        most 74 ms), so the rows go in slices of `ADD_SLICE` (~0.2 ms per call, 1-2% at 256-d).
        Between slices the adding thread yields. Without it, a search woken when a slice released
        the index's mutex likely lost it again to the next slice, now and then for the whole add:
        the test of a search during a long add failed once in CI and 2 times in 65 runs here; with
        the yield it passed 100 runs of 100.
        """
        if len(keys) == 0:
            return
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        prefixes = np.ascontiguousarray(prefixes)
        with _usearch_errors("add vectors"):
            for start in range(0, len(keys), ADD_SLICE):
                if start:
                    time.sleep(0)  # yield: a search waiting for the index's mutex takes it now
                end = start + ADD_SLICE
                self._index.add(keys[start:end], prefixes[start:end], threads=1)

    def add_stored(self, keys: Keys, stored: npt.NDArray[np.generic]) -> None:
        """Add stored full vectors (any stored dtype) by their renormalised index prefixes: the
        same rows always give the same index vectors, whoever adds them (write, rebuild, replay)."""
        rows = np.asarray(stored, dtype=np.float32)
        self.add(keys, prefix(rows, self._config.index_dimension, self._config.metric))

    def retune(self, config: CollectionConfig) -> None:
        """Take `config`'s search-time settings (`config.Tuning`); the graph stays as built."""
        with self._searching:
            self._config = config
            # usearch's setter exists; its stub declares the property read-only.
            self._index.expansion_search = config.hnsw.expansion_search  # type: ignore[misc]

    def remove(self, keys: list[int]) -> None:
        if not keys:
            return
        with _usearch_errors("remove vectors"):
            removed = int(self._index.remove(np.asarray(keys, dtype=np.uint64)))
        self.tombstones += removed

    def search(self, queries: npt.NDArray[np.float32], count: int, threads: int) -> list[Keys]:
        """One usearch call for every row of `queries`; the keys found for each, best first."""
        keys, counts = self.search_matrix(queries, count, threads)
        return [keys[i, : int(counts[i])] for i in range(len(keys))]

    def search_matrix(
        self, queries: npt.NDArray[np.float32], count: int, threads: int, expansion_search: int | None = None
    ) -> tuple[Keys, npt.NDArray[np.int64]]:
        """One usearch call for every row of 2-D `queries`: a (queries, count) matrix of keys, best
        first, and how many of each row were found (the rest of a row is padding, not keys).
        `expansion_search` walks the graph with another ef than the config's, for this call only."""
        with self._searching, _usearch_errors("search"):
            ef = self._config.hnsw.expansion_search
            walk = ef if expansion_search is None else expansion_search
            other = walk != ef
            if other:
                self._index.expansion_search = walk  # type: ignore[misc]
            try:
                found = self._index.search(np.ascontiguousarray(queries), count, threads=threads)
            finally:
                if other:
                    self._index.expansion_search = ef  # type: ignore[misc]
        self.search_calls += 1
        if isinstance(found, BatchMatches):
            return found.keys.astype(np.uint64, copy=False), found.counts.astype(np.int64, copy=False)
        keys = np.zeros((1, count), dtype=np.uint64)  # one query: padded like a batch's rows
        keys[0, : len(found.keys)] = found.keys
        return keys, np.array([len(found.keys)], dtype=np.int64)

    @property
    def memory_usage(self) -> int:
        return int(self._index.memory_usage)

    def save(self, path: Path) -> None:
        with _usearch_errors("save the index"):
            self._index.save(str(path))

    @classmethod
    def load_file(cls, config: CollectionConfig, path: Path, tombstones: int) -> HnswIndex:
        """Restore a saved index; raise `Internal` unless it matches the config (check the file's
        checksum first: a corrupt graph can crash usearch)."""
        index = _new_index(config)
        with _usearch_errors("read the index header"):
            header = Index.metadata(str(path))
        if header is None:
            raise Internal(f"{path.name} has no usearch header")
        # `load` silently adopts the file's dimensions and dtype but keeps the constructor's metric.
        found = (header["dimensions"], header["kind_metric"], header["kind_scalar"])
        expected = (index.ndim, index.metric_kind, index.dtype)
        if found != expected:
            raise Internal(f"index file is (ndim, metric, dtype) {found}, the config says {expected}")
        with _usearch_errors("load the index"):
            index.load(str(path))
        if index.connectivity != config.hnsw.connectivity:
            raise Internal(
                f"index file has connectivity {index.connectivity}, "
                f"the config says {config.hnsw.connectivity}"
            )
        return cls(config, index, tombstones)
