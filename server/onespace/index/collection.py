"""A collection: items (full vectors, modality, metadata) plus an HNSW index over their prefixes.

Methods block (usearch and numpy work) and are meant for worker threads; one lock serialises them.
A read-write lock would let numpy reranks overlap, but usearch already serialises searches on one
index behind its own mutex and searches arrive batched, so one lock costs little — and it makes
"never save while adding" (a corrupt snapshot in usearch 2.26) hold by construction.

Keys: every stored row gets a fresh uint64 key from a counter and keeps it until deleted; an
upsert of an existing id tombstones the old row and removes its key instead of re-adding the same
key (remove + re-add of one key is buggy in usearch). Key 2**64-1 is usearch's sentinel and is
never allocated.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from onespace.errors import Internal, InvalidArgument, NotFound
from onespace.index.config import CollectionConfig
from onespace.index.hnsw import HnswIndex
from onespace.index.matryoshka import prefix
from onespace.index.persistence import MANIFEST_FILE, Snapshot, read_config, read_snapshot, write_snapshot
from onespace.index.records import Hit, Query, Record, StoredItem, modality_code
from onespace.index.rows import RowTable
from onespace.index.search import search_batch
from onespace.index.validate import CheckedQuery, check_query, check_record
from onespace.models import Modality

__all__ = ["REBUILD_TOMBSTONE_RATIO", "Collection"]

log = logging.getLogger(__name__)

REBUILD_TOMBSTONE_RATIO = 0.3
_MAX_KEY = 2**64 - 2


class Collection:
    def __init__(self, config: CollectionConfig) -> None:
        self._config = config.validated()
        self._lock = threading.Lock()
        self._rows = RowTable(self._config.dimension)
        self._index = HnswIndex(self._config)
        self._next_key = 0
        self._version = 0  # bumped by every change
        self._saved_version = 0

    # --- reading ---

    @property
    def config(self) -> CollectionConfig:
        return self._config

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def usearch_calls(self) -> int:
        """How many `index.search` calls this collection has made (batching is observable)."""
        return self._index.search_calls

    @property
    def version(self) -> int:
        return self._version

    def __len__(self) -> int:
        return self._rows.live_count

    def modalities(self) -> frozenset[Modality]:
        with self._lock:
            return self._rows.modalities()

    def get(self, ids: Sequence[str], include_vectors: bool = False) -> list[StoredItem | None]:
        """The items for `ids`, in order; None for ids not stored."""
        with self._lock:
            return [self._item(item_id, include_vectors) for item_id in ids]

    def vector(self, id: str) -> npt.NDArray[np.float32]:
        with self._lock:
            row = self._rows.row_of(id) if isinstance(id, str) else None
            if row is None:
                raise NotFound(f"id {id!r} not found in collection {self.name!r}")
            vector: npt.NDArray[np.float32] = self._rows.vectors[row].copy()
            return vector

    def search(self, query: Query, threads: int = 0) -> list[Hit]:
        return self.search_many([query], threads)[0]

    def search_many(self, queries: Sequence[Query], threads: int = 0) -> list[list[Hit]]:
        """Hits for each query, best first; one usearch call per distinct shortlist size.

        Any invalid query fails the whole call (InvalidArgument for `vector`, `k`, `dimension`,
        `filter.*`); a batcher that must not let one caller fail another checks each query with
        `check_query` first.
        """
        checked = [self.check_query(q) for q in queries]
        if not checked:
            return []
        with self._lock:
            ranked = search_batch(self._config, self._rows, self._index, checked, threads)
            return [
                [
                    self._hit(int(row), float(score), q.include_vectors)
                    for row, score in zip(r.rows, r.scores, strict=True)
                ]
                for q, r in zip(checked, ranked, strict=True)
            ]

    def check_query(self, query: Query) -> CheckedQuery:
        """Validate one query against this collection's config (no lock needed: config is frozen)."""
        return check_query(query, self._config)

    # --- writing ---

    def upsert(self, records: Sequence[Record], *, field: str = "items") -> int:
        """Store `records`, replacing items with the same id; returns how many records were taken.

        All or nothing: every record is checked before anything changes. A bad record raises
        InvalidArgument placed under `field` the way the gateway names request items:
        `items[3].vector`, or just `item.vector` for a single record under another field name
        (a streamed item). Within one call a repeated id keeps its last record.
        """
        vectors: list[npt.NDArray[np.float32]] = []
        metadata: list[dict[str, str]] = []
        for i, record in enumerate(records):
            try:
                vector, meta = check_record(record, self._config)
            except InvalidArgument as exc:
                where = f"{field}[{i}]" if len(records) > 1 or field == "items" else field
                raise exc.at(where) from None
            vectors.append(vector)
            metadata.append(meta)
        if not records:
            return 0
        last = {record.id: i for i, record in enumerate(records)}
        chosen = sorted(last.values())
        matrix = np.stack([vectors[i] for i in chosen])
        index_prefixes = prefix(matrix, self._config.index_dimension, self._config.metric)
        with self._lock:
            if self._next_key + len(chosen) > _MAX_KEY:
                raise Internal(f"collection {self.name!r} ran out of keys")
            keys = np.arange(self._next_key, self._next_key + len(chosen), dtype=np.uint64)
            self._next_key += len(chosen)  # first: keys a failed add may have left are never reused
            self._index.add(keys, index_prefixes)
            replaced = [row for i in chosen if (row := self._rows.row_of(records[i].id)) is not None]
            self._index.remove(self._rows.kill(replaced))
            self._rows.append(
                [records[i].id for i in chosen],
                keys,
                matrix,
                [modality_code(records[i].modality) for i in chosen],
                [metadata[i] for i in chosen],
            )
            self._version += 1
        return len(records)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove `ids`; returns how many of them were stored. Unknown ids are ignored."""
        with self._lock:
            rows = {row for item_id in ids if (row := self._rows.row_of(item_id)) is not None}
            if not rows:
                return 0
            self._index.remove(self._rows.kill(sorted(rows)))
            self._version += 1
            return len(rows)

    def compact(self) -> None:
        """Drop tombstoned rows, and rebuild the index once its removed slots pass the threshold.

        usearch never reclaims removed slots (memory or file), only a rebuild does.
        """
        with self._lock:
            self._compact_locked()

    # --- persistence ---

    @property
    def dirty(self) -> bool:
        """Whether anything changed since the last snapshot was written or read."""
        return self._version != self._saved_version

    def save(self, directory: Path) -> bool:
        """Compact, then commit a snapshot to `directory` if anything changed; returns whether it did.

        Holds the lock throughout: usearch writes corrupt files if an add runs during a save.
        """
        with self._lock:
            if not self.dirty and (directory / MANIFEST_FILE).exists():
                return False
            self._compact_locked()
            rows, n = self._rows, self._rows.size
            snapshot = Snapshot(
                ids=rows.ids,
                keys=rows.keys[:n],
                codes=rows.codes[:n],
                metadata=rows.metadata,
                vectors=rows.vectors[:n],
                next_key=self._next_key,
                index_tombstones=self._index.tombstones,
            )
            try:
                write_snapshot(directory, snapshot, self._index.save)
            except OSError as exc:
                raise Internal(f"saving collection {self.name!r} to {directory} failed: {exc}") from exc
            self._saved_version = self._version
            return True

    @classmethod
    def load(cls, directory: Path) -> Collection:
        """The collection saved in `directory` (an empty one if it was created but never saved)."""
        collection = cls(read_config(directory))
        try:
            read_snapshot(directory, collection.config, collection._restore)
        except OSError as exc:
            raise Internal(f"loading collection from {directory} failed: {exc}") from exc
        return collection

    def _restore(self, snapshot: Snapshot) -> None:
        """Adopt a snapshot read from disk; ValueError if it is inconsistent (the loader moves on)."""
        self._rows.load(snapshot.ids, snapshot.keys, snapshot.vectors, snapshot.codes, snapshot.metadata)
        if len(snapshot.keys) and snapshot.next_key <= int(snapshot.keys[-1]):
            raise ValueError(f"next key {snapshot.next_key} is not above the largest key {snapshot.keys[-1]}")
        self._next_key = snapshot.next_key
        if snapshot.index_path is not None:
            try:
                self._index = HnswIndex.load(
                    self._config, snapshot.index_path, snapshot.keys, snapshot.index_tombstones
                )
                return
            except (Internal, OSError) as exc:
                log.warning("collection %s: %s; rebuilding the index from the vectors", self.name, exc)
        self._rebuild_index_locked()
        self._version += 1  # dirty: the next save replaces the bad index file

    def _compact_locked(self) -> None:
        self._rows.compact()
        if self._index.tombstones > REBUILD_TOMBSTONE_RATIO * max(len(self._index), 1):
            self._rebuild_index_locked()

    def _rebuild_index_locked(self) -> None:
        rows = self._rows.live_rows()
        prefixes = prefix(self._rows.vectors[rows], self._config.index_dimension, self._config.metric)
        calls = self._index.search_calls
        self._index = HnswIndex.build(self._config, self._rows.keys[rows], prefixes)
        self._index.search_calls = calls

    # --- helpers ---

    def _item(self, item_id: str, include_vector: bool) -> StoredItem | None:
        row = self._rows.row_of(item_id) if isinstance(item_id, str) else None
        if row is None:
            return None
        vector = self._rows.vectors[row].copy() if include_vector else None
        return StoredItem(item_id, self._rows.modality(row), dict(self._rows.metadata[row]), vector)

    def _hit(self, row: int, score: float, include_vector: bool) -> Hit:
        vector = self._rows.vectors[row].copy() if include_vector else None
        rows = self._rows
        return Hit(rows.ids[row], score, rows.modality(row), dict(rows.metadata[row]), vector)
