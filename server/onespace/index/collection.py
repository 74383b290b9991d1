"""A collection: durable items (SQLite + a mapped vector file) and an HNSW index over their prefixes.

Write path (`apply`, called by the write batcher with a group of operations from many callers):
allocate keys, append the vectors to the vector file and fsync it, commit one SQLite transaction
(which fsyncs its WAL), then publish the new slots to readers. Only then do the callers get their
acks, so an ack means the write is on disk — and searchable: rows not yet in the HNSW index (the
*tail*, every live key at or above `indexed_below`) are scanned by every search and merged
with the index's shortlist.

Indexing (`index_pending`) adds the tail to HNSW and applies queued removals. `apply(ops)` does it
before returning; the write batcher calls `apply(ops, index=False)` and runs `index_pending` in
another worker thread after the acks, so the next group commit (fsync, SQLite) overlaps this
group's HNSW adds — the single-threaded usearch add is the slowest step of a write. The tail is
bounded (`config.unindexed_limit`: 16,384 rows from a 1024-d index up, 43,008 at 256-d, unless
the collection was created with another `max_unindexed_rows`): past it, `apply` indexes before
committing more (backpressure).

Locks: the write lock serialises commits; the index lock serialises index mutation (add, remove,
save, swap, memory_usage: usearch corrupts a save that overlaps an add). Order: index lock, then
write lock. Searches and gets take neither: they read an immutable `SlotView`, the mapped vectors,
SQLite through their own connection (WAL), and the index (usearch's own mutex).

Keys: every stored row gets a fresh uint64 key from a counter and keeps it until deleted; an
upsert of an existing id removes the old key and adds a new one (remove + re-add of one key is
buggy in usearch 2.26). Key 2**64-1 is usearch's sentinel and is never allocated.

Opening, checkpoints and compaction live in `maintenance`; this module holds reads and writes.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from onespace.budget import ResponseBudget
from onespace.errors import Internal, NotFound
from onespace.index.checkpoint import Checkpoint
from onespace.index.config import CollectionConfig, Tuning
from onespace.index.hnsw import HnswIndex
from onespace.index.persistence import write_config
from onespace.index.records import (
    MODALITY_CODES,
    Filter,
    Hit,
    Query,
    Record,
    StoredItem,
    Test,
    modality_from_code,
)
from onespace.index.search import Candidates, Predicate, Ranked, Rows, exact_scores, search_batch
from onespace.index.slots import SlotTable, SlotView
from onespace.index.sqlstore import ItemRow, SqlStore
from onespace.index.validate import CheckedQuery, check_query, prepare_upsert
from onespace.index.vectorfile import VectorFile
from onespace.index.writes import DeleteOp, PreparedRecord, UpsertOp, WriteOp, plan_writes
from onespace.models import Modality

__all__ = ["Collection", "CollectionStats"]

log = logging.getLogger(__name__)

_MAX_KEY = 2**64 - 2
ADD_CHUNK = 65_536  # rows per usearch add when (re)building or replaying
LIST_LIMIT = 20_000  # a filter matching more items is tested on shortlists instead of listed
INDEX_STEP = 2048  # tail rows indexed per `index_pending` call
ESTIMATE_SAMPLE = 1024  # live slots tested to estimate the share a large filter matches
_MODALITIES = np.array(MODALITY_CODES, dtype=object)  # modality code -> Modality | None


@dataclass(frozen=True)
class CollectionStats:
    items: int
    dead_slots: int  # deleted or replaced rows still in the vector file
    index_tombstones: int  # removed entries usearch still holds
    disk_bytes: int
    index_bytes: int  # resident: usearch's memory
    vector_bytes: int  # mapped: rows in the vector file (pages the kernel may keep)
    seq: int
    checkpoint_seq: int
    checkpoint_time: float  # unix seconds; 0 when the index was never checkpointed
    log_bytes: int  # SQLite's write-ahead log
    changes_since_checkpoint: int  # items inserted or removed since the last index checkpoint
    unsaved_since: float = 0.0  # unix seconds of the first of those changes; 0: none
    unindexed_rows: int = 0  # committed rows the HNSW index has not taken yet (searches scan them)
    unindexed_limit: int = 0  # the bound in force on them (`config.unindexed_limit`); 0: no such tail


class Collection:
    """Use `maintenance.create_collection` / `open_collection` to get one."""

    def __init__(
        self,
        directory: Path,
        config: CollectionConfig,
        sql: SqlStore,
        vectors: VectorFile,
        slots: SlotTable,
        index: HnswIndex,
        meta: dict[str, int],
        *,
        durable: bool,
    ) -> None:
        self.directory = directory
        self._config = config
        self.sql = sql
        self.vectors = vectors
        self.slots = slots
        self.index = index
        self.seq = meta["seq"]
        self.next_key = meta["next_key"]
        self.durable = durable
        self.write_lock = threading.Lock()
        self.index_lock = threading.Lock()  # taken before write_lock when both are held
        self.indexed_below = self.next_key  # every live key below this is in the index
        self.pending_removals: list[npt.NDArray[np.uint64]] = []  # removed keys the index still holds
        self.maintenance_lock = threading.Lock()  # one checkpoint or compaction at a time
        self.checkpoint: Checkpoint | None = None
        self.changes_since_checkpoint = 0  # items inserted or removed since the last checkpoint
        self.unsaved_since = 0.0  # unix seconds of the first of them (0: none)
        self.checkpointer: subprocess.Popen[str] | None = None  # a background checkpoint running
        self.closed = False
        self._view = self._make_view()

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
        return self.index.search_calls

    @property
    def view(self) -> SlotView:
        return self._view

    def __len__(self) -> int:
        return self._view.live_count

    def modalities(self) -> frozenset[Modality]:
        return self.slots.modalities()

    def get(
        self, ids: Sequence[str], include_vectors: bool = False, max_bytes: int | None = None
    ) -> list[StoredItem | None]:
        """The items for `ids`, in order; None for ids not stored. InvalidArgument as soon as the
        items found (each duplicate again) hold more than `max_bytes`, before the rest are built."""
        budget = ResponseBudget(max_bytes)
        vector_bytes = 4 * self._config.dimension if include_vectors else 0
        wanted = [i for i in ids if isinstance(i, str)]
        with self._reading():
            rows = self.sql.rows_by_ids(wanted) if wanted else {}
        view = self._view
        out: list[StoredItem | None] = []
        for item_id in ids:
            row = rows.get(item_id) if isinstance(item_id, str) else None
            if row is None:
                out.append(None)
                continue
            budget.add(row.id, row.metadata, vector_bytes)
            vector = self._vector_of_key(view, row.key) if include_vectors else None
            out.append(StoredItem(row.id, modality_from_code(row.modality), row.metadata, vector))
        return out

    def vector(self, id: str) -> npt.NDArray[np.float32]:
        item = self.get([id], include_vectors=True)[0] if isinstance(id, str) else None
        if item is None or item.vector is None:
            raise NotFound(f"id {id!r} not found in collection {self.name!r}")
        return item.vector

    def search(self, query: Query, threads: int = 0) -> list[Hit]:
        return self.search_many([query], threads)[0]

    def search_many(
        self, queries: Sequence[Query | CheckedQuery], threads: int = 0, settings: Tuning | None = None
    ) -> list[list[Hit]]:
        """Hits for each query, best first; one usearch call per distinct shortlist size.

        Any invalid query fails the whole call (InvalidArgument for `vector`, `k`, `dimension`,
        `filter.*`); a batcher that must not let one caller fail another checks each query with
        `check_query` first and passes the `CheckedQuery` (not checked twice). `settings` searches
        by other search-time settings for this call only (a tuning trial); other searches and
        the stored config are not touched.
        """
        checked = [q if isinstance(q, CheckedQuery) else self.check_query(q) for q in queries]
        if not checked:
            return []
        below = self.indexed_below  # read before the index: a row indexed meanwhile is merged twice
        view, index = self._view, self.index
        with self._reading():
            tail = _tail_rows(view, below)
            candidates = [self._candidates(view, q.filter) for q in checked]
            config = self._config if settings is None else settings.applied_to(self._config)
            ranked = search_batch(config, view, index, checked, candidates, threads, tail)
            # Hits are named from the slot arrays; SQLite is read only for the metadata of hits
            # whose items have some (a key gone from it meanwhile: the item was deleted).
            found = np.concatenate([r.rows for r in ranked])
            described = np.unique(view.keys[found[view.described[found]]]).tolist()
            metadata = self.sql.metadata_by_keys(described) if described else {}
        return _hits(view, checked, ranked, found, metadata)

    def search_in_memory(self, queries: Sequence[CheckedQuery]) -> bool:
        """No query's filter has metadata conditions (SQLite finds those; modalities are in the
        slot arrays). The rest of a search takes no lock: usearch, the slot arrays, the mapped
        rows and the metadata of hits that have some (a few SQLite rows by key) are memory reads
        for a collection in use. A cold collection's page faults show in its measured cost, which
        keeps its batches on a thread until they are cheap (engine.search)."""
        return not any(q.filter.metadata or q.filter.conditions for q in queries)

    def exact_scores(self, query: CheckedQuery) -> npt.NDArray[np.float32] | None:
        """The scores a perfect index would return for `query` (best first; `search.exact_scores`),
        by scanning every matching item; None when its filter has metadata conditions (the recall
        sampler measures only searches `search_in_memory` allows). Reads every stored vector
        that could match, so it is for samples, not for serving."""
        if not self.search_in_memory([query]):
            return None
        view = self._view
        with self._reading():
            candidates = self._candidates(view, query.filter)
            assert not isinstance(candidates, Predicate)  # only metadata filters make one
            return exact_scores(self._config, view, query, candidates)

    def check_query(self, query: Query) -> CheckedQuery:
        """Validate one query against this collection's config (no lock needed: config is frozen)."""
        return check_query(query, self._config)

    def _candidates(self, view: SlotView, flt: Filter) -> Candidates:
        """What passes `flt`: sorted live slots when at most `LIST_LIMIT` items match (found
        through SQLite's indexes), else a Predicate that tests shortlists; None: no filter."""
        if flt.is_empty:  # most queries: no condition list built (0.48 -> 0.06 us a query)
            return None
        conditions = flt.all_conditions
        if not conditions:  # modalities only
            return view.rows_with_modality(flt.modalities)

        def accept(rows: Rows) -> npt.NDArray[np.bool_]:
            passing = self.sql.matching_keys(conditions, among=[int(k) for k in view.keys[rows]])
            mask = np.isin(view.keys[rows], passing)
            if flt.modalities:
                mask &= np.isin(rows, view.rows_with_modality(flt.modalities, rows))
            return mask

        def everything() -> Rows:
            rows = view.rows_for_keys(self.sql.matching_keys(conditions))
            rows = np.sort(rows[rows >= 0])
            return view.rows_with_modality(flt.modalities, rows) if flt.modalities else rows

        def large() -> Predicate:
            sample = view.live_rows()
            if len(sample) > ESTIMATE_SAMPLE:  # random: metadata often follows insertion order
                rng = np.random.default_rng(view.count)
                sample = np.sort(rng.choice(sample, ESTIMATE_SAMPLE, replace=False))
            share = float(accept(sample).mean()) if len(sample) else 0.0
            return Predicate(max(LIST_LIMIT + 1, int(share * view.live_count)), accept, everything)

        if all(c.test is Test.NOT_IN for c in conditions):
            # Negations are listed by walking every item; when they keep many, do not list them.
            predicate = large()
            if predicate.estimate > LIST_LIMIT + 1:
                return predicate
        keys = self.sql.matching_keys(conditions, limit=LIST_LIMIT + 1)
        if len(keys) <= LIST_LIMIT:
            rows = view.rows_for_keys(keys)
            rows = np.sort(rows[rows >= 0])
            return view.rows_with_modality(flt.modalities, rows) if flt.modalities else rows
        return large()

    # --- writing ---

    def prepare_upsert(self, records: Sequence[Record], *, field: str = "items") -> UpsertOp:
        """Check every record (`validate.prepare_upsert`); nothing is written."""
        return prepare_upsert(records, self._config, field)

    def upsert(self, records: Sequence[Record], *, field: str = "items") -> int:
        """Store `records` durably, replacing items with the same id; returns how many were taken.
        All or nothing: every record is checked before anything changes."""
        op = self.prepare_upsert(records, field=field)
        return self.apply([op])[0] if records else 0

    def delete(self, ids: Sequence[str]) -> int:
        """Remove `ids` durably; returns how many of them were stored. Unknown ids are ignored."""
        return self.apply([DeleteOp(tuple(i for i in ids if isinstance(i, str)))])[0]

    def apply(self, ops: Sequence[WriteOp], *, index: bool = True) -> list[int]:
        """Commit a group of operations as one durable transaction; one result per operation.

        With `index` false the new rows are left for `index_pending` (searches scan them
        meanwhile), unless the tail is already at its bound.
        """
        limit = self._config.unindexed_limit
        while not index and self.unindexed_rows() >= limit and self.index_pending():
            pass
        with self.write_lock:
            self._check_open()
            planned = plan_writes(ops, self.sql.keys_of_ids)
            if planned.inserts or planned.removed_keys:
                self._commit(planned.inserts, planned.removed_keys)
        if index:
            while self.index_pending():
                pass
        return planned.results

    def tune(self, tuning: Tuning) -> CollectionConfig:
        """Apply `tuning` durably and return the config now in force. config.json is replaced
        atomically before anything in memory changes, so a failed write changes nothing; the
        next search walks the graph and reranks by the new settings (one already running
        finishes with the old)."""
        with self.index_lock, self.write_lock:
            self._check_open()
            config = tuning.applied_to(self._config)
            if config != self._config:
                try:
                    write_config(self.directory, config)
                except OSError as exc:
                    raise Internal(f"cannot store the settings of collection {self.name!r}: {exc}") from exc
                self.index.retune(config)
                self._config = config
        return config

    def unindexed_rows(self) -> int:
        """Committed rows (live or not) the HNSW index has not taken yet."""
        view = self._view
        return view.count - view.first_row_from(self.indexed_below)

    def index_pending(self) -> bool:
        """Add (up to `INDEX_STEP` rows of) the tail to the HNSW index and apply queued removals;
        whether there was anything. Short steps keep the index lock free for close and delete."""
        with self.index_lock:
            return self._index_tail(holding_write_lock=False, max_rows=INDEX_STEP)

    def _index_tail(self, *, holding_write_lock: bool, max_rows: int | None = None) -> bool:
        """With the index lock held: index the live tail rows, then forget removed keys."""
        if self.closed:
            return False
        view = self._view
        start = view.first_row_from(self.indexed_below)
        end = view.count if max_rows is None else min(view.count, start + max_rows)
        did = start < end
        if did:
            rows = np.arange(start, end, dtype=np.int64)
            rows = rows[view.live[rows]]  # a row killed later is in a queued removal
            for first in range(0, len(rows), ADD_CHUNK):
                chunk = rows[first : first + ADD_CHUNK]
                self.index.add_stored(view.keys[chunk], view.vectors[chunk])
            self.indexed_below = int(view.keys[end - 1]) + 1
        if holding_write_lock:
            removals, self.pending_removals = self.pending_removals, []
        else:
            with self.write_lock:
                removals, self.pending_removals = self.pending_removals, []
        if removals:
            self.index.remove([int(k) for k in np.concatenate(removals)])
        return did or bool(removals)

    def count_unsaved(self, changes: int) -> None:
        """Count `changes` (items inserted or removed) that no index checkpoint holds yet; the first
        since the last checkpoint starts the clock the maintainer checkpoints by (`unsaved_since`)."""
        if changes and not self.changes_since_checkpoint:
            self.unsaved_since = time.time()
        self.changes_since_checkpoint += changes

    def _commit(self, inserts: list[PreparedRecord], removed: list[int]) -> None:
        n = len(inserts)
        if self.next_key + n > _MAX_KEY:
            raise Internal(f"collection {self.name!r} ran out of keys")
        keys = np.arange(self.next_key, self.next_key + n, dtype=np.uint64)
        codes = np.array([r.code for r in inserts], dtype=np.int8)
        stored = np.zeros((n, self._config.dimension), dtype=self.vectors.dtype)
        for i, r in enumerate(inserts):
            stored[i] = r.vector
        start = self.vectors.rows
        try:
            if n:
                self.vectors.append(keys, stored, codes)
                if self.durable:
                    self.vectors.sync()
            seq = self.seq + 1
            meta = {"seq": seq, "next_key": self.next_key + n, "vector_rows": self.vectors.rows}
            self.sql.commit(
                seq,
                [ItemRow(int(k), r.id, r.code, r.metadata) for k, r in zip(keys, inserts, strict=True)],
                removed,
                meta,
            )
        except Exception as exc:
            self.vectors.truncate(start)
            raise Internal(f"writing to collection {self.name!r} failed: {exc}") from exc
        self.seq = seq
        self.next_key += n
        self.count_unsaved(n + len(removed))
        # Durable from here on; now make it visible: slots first, then the index.
        if n:
            described = np.array([bool(r.metadata) for r in inserts], dtype=bool)
            self.slots.append(start, keys, codes, [r.id for r in inserts], described)
        gone = np.asarray(removed, dtype=np.uint64)
        self.slots.kill_keys(gone)
        self._view = self._make_view()
        if len(gone):
            self.pending_removals.append(gone)  # searches skip dead rows; the index forgets them later

    # --- helpers shared with maintenance ---

    def _check_open(self) -> None:
        """A collection deleted while a request was on its way is gone for that request too."""
        if self.closed:
            raise NotFound(f"collection {self.name!r} not found (it was deleted)")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Reads take no lock, so a delete can close the store under them: that is NotFound."""
        self._check_open()
        try:
            yield
        except sqlite3.Error as exc:
            self._check_open()
            raise Internal(f"reading collection {self.name!r} failed: {exc}") from exc

    def publish(self) -> None:
        self._view = self._make_view()

    def _make_view(self) -> SlotView:
        mapped = self.vectors.mapped
        assert mapped is not None
        return self.slots.view(mapped.vectors)

    def _vector_of_key(self, view: SlotView, key: int) -> npt.NDArray[np.float32] | None:
        slot = int(view.rows_for_keys(np.array([key], dtype=np.uint64))[0])
        return _as_f32(view.vectors[slot]) if slot >= 0 else None


def _tail_rows(view: SlotView, below: int) -> Rows:
    """Live slots whose keys are at or above `below`: committed, not yet in the index."""
    rows = np.arange(view.first_row_from(below), view.count, dtype=np.int64)
    return rows[view.live[rows]]


def _hits(
    view: SlotView,
    queries: Sequence[CheckedQuery],
    ranked: Sequence[Ranked],
    rows: Rows,
    metadata: dict[int, dict[str, str]],
) -> list[list[Hit]]:
    """Each query's hits, best first, from one gather of the slot arrays for the whole batch
    (`rows`: every query's ranked rows, concatenated), leaving out items deleted since they were
    ranked: a dead slot, or a described item whose metadata is gone. Per query: slices of those
    lists and one `map(Hit, ...)`; gathering per query cost 10.3 us a query against 7.6."""
    ids = view.ids[rows].tolist()
    modalities = _MODALITIES[view.codes[rows]].tolist()
    scores = np.concatenate([r.scores for r in ranked]).tolist()
    fields: list[dict[str, str]] = [{} for _ in range(len(rows))]
    keep = view.live[rows]
    for at in np.flatnonzero(view.described[rows]).tolist():
        found = metadata.get(int(view.keys[rows[at]]))
        if found is None:
            keep[at] = False
        else:
            fields[at] = found
    every = bool(keep.all())
    out: list[list[Hit]] = []
    start = 0
    for query, result in zip(queries, ranked, strict=True):
        end = start + len(result.rows)
        columns: list[list[Any]] = [
            ids[start:end],
            scores[start:end],
            modalities[start:end],
            fields[start:end],
        ]
        if query.include_vectors:
            columns.append([_as_f32(view.vectors[slot]) for slot in result.rows.tolist()])
        hits = list(map(Hit, *columns))
        if not every:
            hits = [hit for hit, kept in zip(hits, keep[start:end].tolist(), strict=True) if kept]
        out.append(hits)
        start = end
    return out


def _as_f32(values: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    return np.array(values, dtype=np.float32, copy=True)
