"""The row table: every item's full vector, key, modality and metadata, in insertion order.

Rows are append-only; a replaced or deleted item's row is tombstoned (`live` false) and dropped by
`compact()`. Keys are allocated in increasing order and compaction keeps the order, so the
key -> row lookup for a whole batch of HNSW results is one `searchsorted`. Metadata equality
filters use an inverted index of (key, value) -> live rows, so a selective filter costs its
postings, not a scan of every row's dict.

Not thread-safe: the owning collection holds its lock around every call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from onespace.index.records import MODALITY_CODES, Filter, modality_code, modality_from_code
from onespace.models import Modality

__all__ = ["RowTable"]

Rows = npt.NDArray[np.int64]
_T = TypeVar("_T", bound=np.generic)


class RowTable:
    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.size = 0  # rows in use, live or not
        self.live_count = 0
        self.vectors = np.zeros((0, dimension), dtype=np.float32)
        self.keys = np.zeros(0, dtype=np.uint64)
        self.live = np.zeros(0, dtype=bool)
        self.codes = np.zeros(0, dtype=np.int8)
        self.ids: list[str] = []
        self.metadata: list[dict[str, str]] = []
        self._rows_by_id: dict[str, int] = {}
        self._postings: dict[tuple[str, str], set[int]] = {}
        self._modality_counts = [0] * len(MODALITY_CODES)

    # --- reading ---

    def row_of(self, item_id: str) -> int | None:
        return self._rows_by_id.get(item_id)

    def modalities(self) -> frozenset[Modality]:
        return frozenset(
            m for code, m in enumerate(MODALITY_CODES) if m is not None and self._modality_counts[code] > 0
        )

    def modality(self, row: int) -> Modality | None:
        return modality_from_code(int(self.codes[row]))

    def rows_for_keys(self, keys: npt.NDArray[np.uint64]) -> Rows:
        """The live row holding each key, or -1 (unknown key or tombstoned row)."""
        used = self.keys[: self.size]
        pos = np.searchsorted(used, keys).astype(np.int64)
        inside = pos < self.size
        found = np.zeros(len(keys), dtype=bool)
        found[inside] = (used[pos[inside]] == keys[inside]) & self.live[pos[inside]]
        return np.where(found, pos, -1)

    def live_rows(self) -> Rows:
        return np.flatnonzero(self.live[: self.size]).astype(np.int64)

    def matching(self, flt: Filter) -> npt.NDArray[np.bool_]:
        """Mask over rows `0..size` of the live rows that pass `flt`."""
        mask = self.live[: self.size].copy()
        if flt.modalities:
            allowed = [modality_code(m) for m in flt.modalities]
            mask &= np.isin(self.codes[: self.size], allowed)
        if flt.metadata:
            postings = sorted((self._postings.get(pair, set()) for pair in flt.metadata.items()), key=len)
            rows = set(postings[0]).intersection(*postings[1:])
            meta = np.zeros(self.size, dtype=bool)
            meta[np.fromiter(rows, dtype=np.int64, count=len(rows))] = True
            mask &= meta
        return mask

    # --- writing ---

    def append(
        self,
        ids: Sequence[str],
        keys: npt.NDArray[np.uint64],
        vectors: npt.NDArray[np.float32],
        codes: Sequence[int],
        metadata: Sequence[dict[str, str]],
    ) -> None:
        """Add live rows; the ids must not be live already and the keys must exceed every key held."""
        n = len(ids)
        if n == 0:
            return
        if self.size and keys[0] <= self.keys[self.size - 1]:
            raise ValueError("keys must increase")
        self._reserve(self.size + n)
        start, end = self.size, self.size + n
        self.vectors[start:end] = vectors
        self.keys[start:end] = keys
        self.live[start:end] = True
        self.codes[start:end] = codes
        self.size = end
        self.live_count += n
        for offset, (item_id, meta, code) in enumerate(zip(ids, metadata, codes, strict=True)):
            row = start + offset
            self.ids.append(item_id)
            self.metadata.append(meta)
            self._rows_by_id[item_id] = row
            self._index_row(row, meta, code)

    def kill(self, rows: Iterable[int]) -> list[int]:
        """Tombstone live rows; returns the keys they held."""
        keys: list[int] = []
        for row in rows:
            if not self.live[row]:
                continue
            self.live[row] = False
            self.live_count -= 1
            keys.append(int(self.keys[row]))
            item_id = self.ids[row]
            if self._rows_by_id.get(item_id) == row:
                del self._rows_by_id[item_id]
            self._modality_counts[int(self.codes[row])] -= 1
            for pair in self.metadata[row].items():
                posting = self._postings[pair]
                posting.discard(row)
                if not posting:
                    del self._postings[pair]
        return keys

    @property
    def dead_count(self) -> int:
        return self.size - self.live_count

    def compact(self) -> None:
        """Drop tombstoned rows (keys, and so the HNSW index, are unaffected)."""
        if self.dead_count == 0:
            return
        keep = self.live_rows()
        ids = [self.ids[r] for r in keep]
        metadata = [self.metadata[r] for r in keep]
        self.load(ids, self.keys[keep], self.vectors[keep], self.codes[keep], metadata)

    def load(
        self,
        ids: list[str],
        keys: npt.NDArray[np.uint64],
        vectors: npt.NDArray[np.float32],
        codes: npt.NDArray[np.int8],
        metadata: list[dict[str, str]],
    ) -> None:
        """Replace the whole table by these live rows (from disk or from `compact`)."""
        n = len(ids)
        if not (len(keys) == len(vectors) == len(codes) == len(metadata) == n):
            raise ValueError("row arrays differ in length")
        if vectors.shape[1:] != (self.dimension,):
            raise ValueError(f"vectors have shape {vectors.shape}, expected (n, {self.dimension})")
        if n > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            raise ValueError("keys are not strictly increasing")
        if len(set(ids)) != n:
            raise ValueError("ids are not unique")
        if n and (int(codes.min()) < 0 or int(codes.max()) >= len(MODALITY_CODES)):
            raise ValueError("unknown modality code")
        self.vectors = np.array(vectors, dtype=np.float32, order="C", copy=True)
        self.keys = np.array(keys, dtype=np.uint64, copy=True)
        self.live = np.ones(n, dtype=bool)
        self.codes = np.array(codes, dtype=np.int8, copy=True)
        self.ids = list(ids)
        self.metadata = list(metadata)
        self.size = self.live_count = n
        self._rows_by_id = {item_id: row for row, item_id in enumerate(self.ids)}
        self._postings = {}
        self._modality_counts = [0] * len(MODALITY_CODES)
        for row, meta in enumerate(self.metadata):
            self._index_row(row, meta, int(self.codes[row]))

    def _index_row(self, row: int, meta: dict[str, str], code: int) -> None:
        self._modality_counts[code] += 1
        for pair in meta.items():
            self._postings.setdefault(pair, set()).add(row)

    def _reserve(self, needed: int) -> None:
        capacity = len(self.keys)
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity, 64)
        self.vectors = _grow(self.vectors, capacity)
        self.keys = _grow(self.keys, capacity)
        self.live = _grow(self.live, capacity)
        self.codes = _grow(self.codes, capacity)


def _grow(array: npt.NDArray[_T], capacity: int) -> npt.NDArray[_T]:
    grown = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown
