"""Per-slot arrays in memory: key, liveness, modality, id and whether the item has metadata, for
every row of the vector file.

These are the only per-item state a collection keeps in RAM besides the mapped vectors and the
HNSW index: 11 bytes a slot, plus the id (numpy's variable-width `StringDType`: 16 bytes, ids
longer than 15 bytes also take their length once). Metadata stays in SQLite. A search names its
hits from these arrays and reads SQLite only for the hits whose items have metadata, which made
`search_many` 9-12% faster at 100k x 1024 (items without metadata; docs/storage.md). Keys
increase with the slot, so mapping a batch of HNSW keys to slots is an offset while the keys have
no gaps (nothing compacted away), else one `searchsorted`.

`SlotTable` is changed only under the collection's write lock; readers take `view()`, an
immutable snapshot of the arrays and the count. A writer fills slots past the published count
before publishing the new count, and arrays are replaced (never resized in place) when they grow,
so a reader's view stays consistent for every slot below its count. Only `live` flips in place
(a delete landing during a search may or may not be seen by that search, never half-seen).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from onespace.index.records import MODALITY_CODES
from onespace.models import Modality

__all__ = ["IDS_DTYPE", "Ids", "SlotTable", "SlotView"]

Rows = npt.NDArray[np.int64]
_T = TypeVar("_T", bound=np.generic)
IDS_DTYPE = np.dtypes.StringDType()
Ids = npt.NDArray[Any]  # of IDS_DTYPE: one item id a slot ("" where none is kept)


@dataclass(frozen=True)
class SlotView:
    count: int
    live_count: int
    keys: npt.NDArray[np.uint64]
    live: npt.NDArray[np.bool_]
    codes: npt.NDArray[np.int8]
    ids: Ids
    described: npt.NDArray[np.bool_]  # the slot's item has metadata (read from SQLite for hits)
    vectors: npt.NDArray[np.generic]  # the mapped vector file (at least `count` rows)

    def rows_for_keys(self, keys: npt.NDArray[np.uint64]) -> Rows:
        """The live slot holding each key (an array of any shape), or -1 (unknown key or a dead slot).

        Keys increase with the slot, so when they have no gaps (nothing compacted away: the usual
        case) a key's slot is its offset from the first key, with no search."""
        count = self.count
        if count == 0:
            return np.full(np.shape(keys), -1, dtype=np.int64)
        used = self.keys[:count]
        first = int(used[0])
        if int(used[-1]) - first == count - 1:
            pos = keys.astype(np.int64) - first  # a key below the first wraps to a negative offset
            inside = (pos >= 0) & (pos < count)
        else:
            pos = np.searchsorted(used, keys).astype(np.int64)
            inside = pos < count
        found = np.zeros(pos.shape, dtype=bool)
        found[inside] = (used[pos[inside]] == keys[inside]) & self.live[pos[inside]]
        return np.where(found, pos, -1)

    def first_row_from(self, key: int) -> int:
        """The first slot whose key is `key` or larger (`count` when there is none)."""
        return int(np.searchsorted(self.keys[: self.count], np.uint64(key)))

    def live_rows(self) -> Rows:
        return np.flatnonzero(self.live[: self.count]).astype(np.int64)

    def rows_with_modality(self, modalities: Iterable[Modality], rows: Rows | None = None) -> Rows:
        """Live slots (of `rows`, or of all) whose modality is one of `modalities`."""
        allowed = [MODALITY_CODES.index(m) for m in modalities]
        if rows is None:
            mask = self.live[: self.count] & np.isin(self.codes[: self.count], allowed)
            return np.flatnonzero(mask).astype(np.int64)
        return rows[np.isin(self.codes[rows], allowed)]


class SlotTable:
    def __init__(self) -> None:
        self.count = 0
        self.live_count = 0
        self.keys = np.zeros(0, dtype=np.uint64)
        self.live = np.zeros(0, dtype=bool)
        self.codes = np.zeros(0, dtype=np.int8)
        self.ids: Ids = np.zeros(0, dtype=IDS_DTYPE)
        self.described = np.zeros(0, dtype=bool)
        self.modality_counts = np.zeros(len(MODALITY_CODES), dtype=np.int64)

    def load(
        self,
        keys: npt.NDArray[np.uint64],
        codes: npt.NDArray[np.int8],
        live: npt.NDArray[np.bool_],
        ids: Ids,
        described: npt.NDArray[np.bool_],
    ) -> None:
        n = len(keys)
        if n > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            raise ValueError("slot keys are not strictly increasing")
        if not len(codes) == len(live) == len(ids) == len(described) == n:
            raise ValueError("slot arrays differ in length")
        self.keys = np.array(keys, dtype=np.uint64)
        self.codes = np.array(codes, dtype=np.int8)
        self.live = np.array(live, dtype=bool)
        self.ids = np.array(ids, dtype=IDS_DTYPE)
        self.described = np.array(described, dtype=bool)
        self.count = n
        self.live_count = int(self.live.sum())
        self.modality_counts = np.bincount(self.codes[self.live], minlength=len(MODALITY_CODES)).astype(
            np.int64
        )

    def view(self, vectors: npt.NDArray[np.generic]) -> SlotView:
        # A plain ndarray over the mapping: numpy.memmap's Python-level __getitem__ cost more than
        # the rerank's products when every query gathers its shortlist rows.
        plain = np.asarray(vectors)
        return SlotView(
            self.count, self.live_count, self.keys, self.live, self.codes, self.ids, self.described, plain
        )

    def modalities(self) -> frozenset[Modality]:
        return frozenset(
            m for code, m in enumerate(MODALITY_CODES) if m is not None and self.modality_counts[code]
        )

    def append(
        self,
        start: int,
        keys: npt.NDArray[np.uint64],
        codes: npt.NDArray[np.int8],
        ids: Sequence[str],
        described: npt.NDArray[np.bool_],
    ) -> None:
        """Fill slots `start..start+n` as live; the caller publishes them with the next `view()`."""
        if start != self.count:
            raise ValueError(f"slot {start} is not the next one ({self.count})")
        n = len(keys)
        if not len(codes) == len(ids) == len(described) == n:
            raise ValueError("slot arrays differ in length")
        if n and self.count and keys[0] <= self.keys[self.count - 1]:
            raise ValueError("keys must increase")
        end = start + n
        if end > len(self.keys):
            capacity = max(end, 2 * len(self.keys), 1024)
            self.keys = _grown(self.keys, capacity)
            self.live = _grown(self.live, capacity)
            self.codes = _grown(self.codes, capacity)
            self.ids = _grown(self.ids, capacity)
            self.described = _grown(self.described, capacity)
        self.keys[start:end] = keys
        self.codes[start:end] = codes
        self.ids[start:end] = ids
        self.described[start:end] = described
        self.live[start:end] = True
        self.count = end
        self.live_count += n
        np.add.at(self.modality_counts, codes.astype(np.int64), 1)

    def kill_keys(self, keys: npt.NDArray[np.uint64]) -> int:
        """Mark the slots holding `keys` dead; returns how many were live."""
        if not len(keys):
            return 0
        rows = self.view(np.zeros((0, 0))).rows_for_keys(np.asarray(keys, dtype=np.uint64))
        rows = rows[rows >= 0]
        self.live[rows] = False
        self.live_count -= len(rows)
        np.subtract.at(self.modality_counts, self.codes[rows].astype(np.int64), 1)
        return len(rows)

    def memory_bytes(self) -> int:
        """RAM the arrays hold, capacity included: `StringDType` keeps an id of up to 15 bytes
        inside its 16-byte entry and a longer one in an arena beside it (counted here by its
        characters, which are its bytes for ASCII ids)."""
        used = self.ids[: self.count]
        lengths = np.strings.str_len(used) if self.count else np.zeros(0, dtype=np.int64)
        arena = int(lengths[lengths > 15].sum())
        arrays = (self.keys, self.live, self.codes, self.ids, self.described)
        return sum(a.nbytes for a in arrays) + arena

    @property
    def dead_count(self) -> int:
        return self.count - self.live_count


def _grown(array: npt.NDArray[_T], capacity: int) -> npt.NDArray[_T]:
    grown = np.zeros(capacity, dtype=array.dtype)
    grown[: len(array)] = array
    return grown
