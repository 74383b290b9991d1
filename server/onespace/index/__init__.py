"""The embedded storage engine: collections whose acknowledged writes are on disk, with a usearch
HNSW index over Matryoshka prefixes as derived data (layout and guarantees: docs/storage.md).

    config       CollectionConfig, Metric, IndexDtype, StoredDtype, HnswParams, Tuning
    matryoshka   truncate / prefix: the renormalised d-prefix rule
    records      Record, StoredItem, Filter, Condition, Query, Hit
    validate     checks for records and queries (InvalidArgument naming the field)
    writes       write operations and how a group of them folds into one commit
    sqlstore     SQLite: ids, keys, modality, metadata, the change sequence (source of truth)
    vectorfile   full vectors in a mapped append-only file, fsynced before the commit
    slots        per-slot arrays in RAM (key, live, modality) and the readers' immutable view
    hnsw         the usearch wrapper (explicit dtype, counts, checked loads, Internal errors)
    scoring      exact numpy scores and a stable top-k
    search       the two-stage plan, one usearch call per shortlist size per batch
    collection   Collection: durable group commits, get, search_many
    checkpoint   index checkpoints: the usearch file and the commit seq it reflects
    maintenance  open and recover, checkpoint, compact, stats
    persistence  atomic file writes, checksums, config.json
    store        CollectionStore: data_dir/collections/<name>/, atomic create and delete
"""

from __future__ import annotations

from onespace.index.collection import Collection, CollectionStats
from onespace.index.config import CollectionConfig, HnswParams, IndexDtype, Metric, StoredDtype, Tuning
from onespace.index.matryoshka import prefix, truncate
from onespace.index.records import Condition, Filter, Hit, Query, Record, StoredItem, Test
from onespace.index.store import CollectionStore
from onespace.index.validate import CheckedQuery

__all__ = [
    "CheckedQuery",
    "Collection",
    "CollectionConfig",
    "CollectionStats",
    "CollectionStore",
    "Condition",
    "Filter",
    "Hit",
    "HnswParams",
    "IndexDtype",
    "Metric",
    "Query",
    "Record",
    "StoredDtype",
    "StoredItem",
    "Test",
    "Tuning",
    "prefix",
    "truncate",
]
