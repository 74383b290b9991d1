"""The seam between the gateway and a storage backend: what `Gateway` and the engine's batchers use.

The embedded engine (`CollectionStore` + `Collection`, this package) is one implementation; a
distributed vector database can be another without touching rpc/ or engine/: it must give the
same results contract (scores higher-is-closer, Matryoshka rerank at the query's dimension,
filters as `records.Filter` defines them) and the same promise for `apply` — its result is
returned only once the writes are durable in that backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from onespace.index.collection import CollectionStats
from onespace.index.config import CollectionConfig, Tuning
from onespace.index.records import Hit, Query, Record, StoredItem
from onespace.index.validate import CheckedQuery
from onespace.index.writes import UpsertOp, WriteOp
from onespace.models import Modality

__all__ = ["Backend", "CollectionHandle"]


class CollectionHandle(Protocol):
    """One collection. Blocking methods are called from worker threads, never on the event loop;
    the one exception is a short `search_many` that `search_in_memory` allows (engine.search)."""

    @property
    def config(self) -> CollectionConfig: ...

    @property
    def name(self) -> str: ...

    def __len__(self) -> int: ...

    def modalities(self) -> frozenset[Modality]: ...

    def check_query(self, query: Query) -> CheckedQuery:
        """Validate without touching data (cheap: may run on the event loop)."""
        ...

    def prepare_upsert(self, records: Sequence[Record], *, field: str = "items") -> UpsertOp:
        """Validate records into an operation for `apply` (cheap: may run on the event loop)."""
        ...

    def apply(self, ops: Sequence[WriteOp], *, index: bool = True) -> list[int]:
        """Commit a group of operations durably, in order; one result per operation. Committed
        writes are searchable at once; `index=False` leaves index upkeep to `index_pending`."""
        ...

    def index_pending(self) -> bool:
        """Bring derived search structures up to the last commit; whether there was work."""
        ...

    def unindexed_rows(self) -> int:
        """Committed rows `index_pending` has yet to take (searched exactly meanwhile); cheap."""
        ...

    def get(
        self, ids: Sequence[str], include_vectors: bool = False, max_bytes: int | None = None
    ) -> list[StoredItem | None]: ...

    def vector(self, id: str) -> npt.NDArray[np.float32]: ...

    def search_many(
        self, queries: Sequence[Query | CheckedQuery], threads: int = 0, settings: Tuning | None = None
    ) -> list[list[Hit]]:
        """Hits for each query, best first; `settings`: other search-time settings for this call
        only (a tuning trial), or FailedPrecondition where the backend cannot."""
        ...

    def search_in_memory(self, queries: Sequence[CheckedQuery]) -> bool:
        """Whether `search_many(queries)` is memory and CPU work only: no network, no lock held
        for long by another thread, no filter lookup on disk. Only then may the search batcher
        run a short one on the event loop (cheap: it is asked before every batch)."""
        ...

    def exact_scores(self, query: CheckedQuery) -> npt.NDArray[np.float32] | None:
        """The best `query.k` scores (best first) an exact scan of every matching item gives, in
        the same scale as `search_many`'s hits: the reference the recall sampler measures a
        search against. None where the backend cannot scan cheaply or the filter needs a lookup."""
        ...


class Backend(Protocol):
    """The set of collections."""

    def open(self) -> None: ...

    def create(self, config: CollectionConfig) -> CollectionHandle: ...

    def get(self, name: str) -> CollectionHandle: ...

    def list(self) -> Sequence[CollectionHandle]: ...

    def delete(self, name: str) -> None: ...

    def checkpoint(self, collection: CollectionHandle) -> bool:
        """Persist derived state now (an index checkpoint); whether anything was written."""
        ...

    def compact(self, collection: CollectionHandle, *, force: bool = False) -> bool: ...

    def tune(self, collection: CollectionHandle, tuning: Tuning) -> CollectionConfig:
        """Change the settings that touch no stored data (`config.Tuning`), durably; the config
        now in force. Searches and writes after the return use it."""
        ...

    def stats(self, collection: CollectionHandle) -> CollectionStats: ...

    def check(self) -> str | None:
        """Why writes could not be stored now (None: they can); for health checking."""
        ...

    def close(self) -> None:
        """Checkpoint and release everything (shutdown)."""
        ...
