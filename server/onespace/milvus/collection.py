"""One onespace collection stored in one Milvus collection (`index.backend.CollectionHandle`).

Writes (`apply`, called by the write batcher with a group of operations from many callers): the
group is folded exactly as the embedded store folds it (`writes.plan_writes`, fed with which ids
Milvus holds), then sent as one delete of the ids that go and upserts of the records that stay,
in chunks. `apply` returns once Milvus has accepted every call: in a cluster that means the rows
are in Milvus's write-ahead log (its message storage), durable and ordered; milvus-lite writes
its own WAL. Milvus has no transaction across calls: if a group fails part-way, its deletes may
be applied without its upserts; every caller in the group gets the error, and retrying converges
(upserts and deletes are idempotent).

Visibility: every search, get and count runs at the backend's consistency level, Strong by
default, so it sees every write acknowledged before it started, through any gateway replica
(docs/milvus.md). Session is enough when one gateway writes and reads; Bounded trades that for
latency.

`len()` and `modalities()` are called on the event loop, so they read a per-modality count kept
here: exact for this gateway's writes, refreshed from Milvus (`refresh_counts`) when the
collection is opened and by `stats` (the maintainer calls it every interval), which picks up other
replicas' writes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from onespace.budget import ResponseBudget
from onespace.errors import FailedPrecondition, NotFound
from onespace.index.config import CollectionConfig, Tuning
from onespace.index.records import MODALITY_CODES, Hit, Query, Record, StoredItem
from onespace.index.validate import CheckedQuery, check_query, prepare_upsert
from onespace.index.writes import DeleteOp, UpsertOp, WriteOp, plan_writes
from onespace.milvus import layout
from onespace.milvus.errors import milvus_errors
from onespace.milvus.expr import ids_after, ids_expr
from onespace.milvus.results import search_rows
from onespace.milvus.rows import item, to_rows
from onespace.milvus.search import Entity, search_batch
from onespace.models import Modality

__all__ = ["MilvusCollection"]

ID_CHUNK = 512  # ids per `id in [...]` expression
WRITE_BYTES = 8 << 20  # rows per upsert call: about this many bytes of vectors
SCAN_BATCH = 4096  # rows per query_iterator batch of an exact scan
_READ_FIELDS = [layout.ID, layout.MODALITY, layout.TAGS]
_STORED_FIELDS = [layout.ID, layout.MODALITY]


class MilvusCollection:
    """Made by `backend.MilvusBackend`; `client` is a connected pymilvus `MilvusClient`."""

    def __init__(
        self, client: Any, milvus_name: str, config: CollectionConfig, *, consistency: str, timeout: float
    ) -> None:
        self._client = client
        self.milvus_name = milvus_name
        self._config = config
        self._consistency = consistency
        self._timeout = timeout
        self._write_lock = threading.Lock()  # one group at a time; counts change under it
        self._counts = [0] * len(MODALITY_CODES)  # live items per modality code
        self.searches = 0  # Milvus search calls made (batching is observable)
        self.commits = 0  # groups applied by this gateway
        self.checkpoint_time = 0.0  # unix seconds of this gateway's last flush; 0: none
        self.closed = False

    # --- reading ---

    @property
    def config(self) -> CollectionConfig:
        return self._config

    @property
    def name(self) -> str:
        return self._config.name

    def __len__(self) -> int:
        return sum(self._counts)

    def modalities(self) -> frozenset[Modality]:
        counts = self._counts
        return frozenset(m for code, m in enumerate(MODALITY_CODES) if m is not None and counts[code] > 0)

    def retune(self, config: CollectionConfig) -> None:
        """Search by `config` (the same collection with other search-time settings) from now on."""
        self._config = config

    def refresh_counts(self) -> int:
        """Re-read the per-modality counts from Milvus; returns the item count."""
        with self._write_lock:
            counts = [self._count(f"{layout.MODALITY} == {code}") for code in range(len(MODALITY_CODES))]
            self._counts = counts
        return sum(counts)

    def _count(self, expr: str) -> int:
        with self._calling("count the items of"):
            found = self._client.query(
                self.milvus_name,
                filter=expr,
                output_fields=["count(*)"],
                consistency_level=self._consistency,
                timeout=self._timeout,
            )
        return int(found[0]["count(*)"]) if found else 0

    def get(
        self, ids: Sequence[str], include_vectors: bool = False, max_bytes: int | None = None
    ) -> list[StoredItem | None]:
        """The items for `ids`, in order; None for ids not stored. InvalidArgument once the items
        (each duplicate again) hold more than `max_bytes`, before the rest are built."""
        budget = ResponseBudget(max_bytes)
        vector_bytes = 4 * self._config.dimension if include_vectors else 0
        wanted = sorted({i for i in ids if isinstance(i, str)})
        fields = [*_READ_FIELDS, layout.VECTOR] if include_vectors else _READ_FIELDS
        found = {str(row[layout.ID]): row for row in self._rows_of(wanted, fields)}
        out: list[StoredItem | None] = []
        for item_id in ids:
            row = found.get(item_id) if isinstance(item_id, str) else None
            if row is None:
                out.append(None)
                continue
            stored = item(row, self._config, include_vectors)
            budget.add(stored.id, stored.metadata, vector_bytes)
            out.append(stored)
        return out

    def vector(self, id: str) -> npt.NDArray[np.float32]:
        found = self.get([id], include_vectors=True)[0] if isinstance(id, str) else None
        if found is None or found.vector is None:
            raise NotFound(f"id {id!r} not found in collection {self.name!r}")
        return found.vector

    def _rows_of(self, ids: Sequence[str], fields: list[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), ID_CHUNK):
            with self._calling("read"):
                rows.extend(
                    self._client.query(
                        self.milvus_name,
                        filter=ids_expr(ids[start : start + ID_CHUNK]),
                        output_fields=fields,
                        consistency_level=self._consistency,
                        timeout=self._timeout,
                    )
                )
        return rows

    def check_query(self, query: Query) -> CheckedQuery:
        return check_query(query, self._config)

    def search_in_memory(self, queries: Sequence[CheckedQuery]) -> bool:
        """Never: every search is a call to Milvus over the network."""
        return False

    def exact_scores(self, query: CheckedQuery) -> npt.NDArray[np.float32] | None:
        """None: an exact scan would read the whole collection back from Milvus, so the recall
        sampler leaves Milvus collections out."""
        return None

    def search_many(
        self, queries: Sequence[Query | CheckedQuery], threads: int = 0, settings: Tuning | None = None
    ) -> list[list[Hit]]:
        """Hits for each query, best first (`search`); `threads` is Milvus's business here. Milvus
        searches by the collection's stored settings only (`settings` is refused)."""
        if settings is not None:
            raise FailedPrecondition(
                f"collection {self.name!r} is stored in Milvus, which searches by its stored settings only"
            )
        checked = [q if isinstance(q, CheckedQuery) else self.check_query(q) for q in queries]
        if not checked:
            return []
        return search_batch(self._config, self, checked)

    def ann(self, vectors: npt.NDArray[np.float32], limit: int, expr: str) -> list[list[Entity]]:
        """One Milvus search with every row of `vectors` (`search.Source`)."""
        with self._calling("search"):
            found = self._client.search(
                self.milvus_name,
                data=[v for v in np.ascontiguousarray(vectors, dtype=np.float32)],
                anns_field=layout.search_field(self._config),
                limit=limit,
                filter=expr,
                output_fields=[layout.VECTOR, layout.MODALITY, layout.TAGS],
                search_params=layout.search_params(self._config, limit),
                consistency_level=self._consistency,
                timeout=self._timeout,
            )
            self.searches += 1
            return search_rows(found, self._config.dimension)

    def scan(self, expr: str) -> Iterator[Sequence[Entity]]:
        """Every row matching `expr`, `SCAN_BATCH` at a time in primary-key order (`search.Source`).

        Paged by a cursor on the primary key, as pymilvus's `query_iterator` pages, but with the
        last id escaped: `query_iterator` (pymilvus 3.0.2) splices it into `id > "<last>"` as it
        is, so an id holding a quote breaks (or rewrites) the next page's expression.
        """
        last: str | None = None
        while True:
            page = expr if last is None else f"{ids_after(last)} and ({expr})" if expr else ids_after(last)
            with self._calling("scan"):
                batch = self._client.query(
                    self.milvus_name,
                    filter=page,
                    limit=SCAN_BATCH,
                    output_fields=[layout.VECTOR, layout.MODALITY, layout.TAGS],
                    consistency_level=self._consistency,
                    timeout=self._timeout,
                    iterator="True",  # pages come in primary-key order
                    reduce_stop_for_best="True",
                )
            if batch:
                yield batch
            if len(batch) < SCAN_BATCH:
                return
            last = max(str(row[layout.ID]) for row in batch)

    # --- writing ---

    def prepare_upsert(self, records: Sequence[Record], *, field: str = "items") -> UpsertOp:
        """Check every record (`validate.prepare_upsert`); nothing is written."""
        return prepare_upsert(records, self._config, field)

    def upsert(self, records: Sequence[Record], *, field: str = "items") -> int:
        op = self.prepare_upsert(records, field=field)
        return self.apply([op])[0] if records else 0

    def delete(self, ids: Sequence[str]) -> int:
        return self.apply([DeleteOp(tuple(i for i in ids if isinstance(i, str)))])[0]

    def apply(self, ops: Sequence[WriteOp], *, index: bool = True) -> list[int]:
        """Send a group of operations to Milvus, in order; one result per operation, once Milvus
        has accepted all of them. `index` does not matter: Milvus indexes by itself."""
        with self._write_lock:
            self.check_open()
            ids = sorted(
                {r.id for op in ops if isinstance(op, UpsertOp) for r in op.records}
                | {i for op in ops if isinstance(op, DeleteOp) for i in op.ids}
            )
            stored = {str(r[layout.ID]): int(r[layout.MODALITY]) for r in self._rows_of(ids, _STORED_FIELDS)}
            keys = {item_id: key for key, item_id in enumerate(ids)}
            planned = plan_writes(ops, lambda wanted: {i: keys[i] for i in wanted if i in stored})
            removed = [ids[key] for key in planned.removed_keys]
            kept = {r.id for r in planned.inserts}
            gone = [i for i in removed if i not in kept]
            for start in range(0, len(gone), ID_CHUNK):
                with self._calling("delete from"):
                    self._client.delete(
                        self.milvus_name,
                        filter=ids_expr(gone[start : start + ID_CHUNK]),
                        timeout=self._timeout,
                    )
            step = max(1, WRITE_BYTES // (4 * (self._config.dimension + self._config.index_dimension)))
            for start in range(0, len(planned.inserts), step):
                rows = to_rows(self._config, planned.inserts[start : start + step])
                with self._calling("write to"):
                    self._client.upsert(self.milvus_name, rows, timeout=self._timeout)
            counts = list(self._counts)
            for item_id in removed:
                counts[stored[item_id]] -= 1
            for r in planned.inserts:
                counts[r.code] += 1
            self._counts = counts
            self.commits += 1
        return planned.results

    def index_pending(self) -> bool:
        """Nothing to do: Milvus builds its indexes itself."""
        return False

    def unindexed_rows(self) -> int:
        """None that onespace tracks: Milvus searches its unindexed segments itself."""
        return 0

    # --- helpers ---

    def check_open(self) -> None:
        """NotFound once the collection is deleted (here or through another gateway)."""
        if self.closed:
            raise NotFound(f"collection {self.name!r} not found (it was deleted)")

    @contextmanager
    def _calling(self, action: str) -> Iterator[None]:
        """A Milvus call: NotFound once the collection is deleted, here or through another
        gateway (then this handle stays closed, and the backend forgets it)."""
        self.check_open()
        try:
            with milvus_errors(f"{action} collection {self.name!r}"):
                yield
        except NotFound:
            self.closed = True
            raise NotFound(f"collection {self.name!r} not found (it was deleted)") from None
