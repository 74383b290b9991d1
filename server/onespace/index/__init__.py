"""Collections of vectors: full vectors for exact rerank, a usearch HNSW index over Matryoshka
prefixes, modality and metadata filters, and atomic checksummed snapshots on disk.

    config       CollectionConfig, Metric, IndexDtype, HnswParams (validation, JSON form)
    matryoshka   truncate / prefix: the renormalised d-prefix rule
    records      Record, StoredItem, Filter, Query, Hit
    validate     checks for records and queries (InvalidArgument naming the field)
    rows         the row table: vectors, keys, tombstones, metadata postings
    hnsw         the usearch wrapper (explicit dtype, counts, checked loads, Internal errors)
    scoring      exact numpy scores and a stable top-k
    search       the two-stage plan, one usearch call per shortlist size per batch
    collection   Collection: the lock, upsert/get/delete/search_many, save/load
    persistence  snapshot files: tmp + fsync + rename, sha256 manifest, previous generation
    store        CollectionStore: data_dir/collections/<name>/
"""

from __future__ import annotations

from onespace.index.collection import Collection
from onespace.index.config import CollectionConfig, HnswParams, IndexDtype, Metric
from onespace.index.matryoshka import prefix, truncate
from onespace.index.records import Filter, Hit, Query, Record, StoredItem
from onespace.index.store import CollectionStore
from onespace.index.validate import CheckedQuery

__all__ = [
    "CheckedQuery",
    "Collection",
    "CollectionConfig",
    "CollectionStore",
    "Filter",
    "Hit",
    "HnswParams",
    "IndexDtype",
    "Metric",
    "Query",
    "Record",
    "StoredItem",
    "prefix",
    "truncate",
]
