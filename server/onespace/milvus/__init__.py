"""The Milvus storage backend: onespace collections kept in a Milvus database (docs/milvus.md).

    names       stored collection names <-> Milvus collection names (reversible escaping)
    layout      fields, indexes and the stored config of one collection
    rows        records -> Milvus rows, rows -> items (metadata as hex-keyed tags and numbers)
    expr        filters and id lists as Milvus expressions, every value escaped
    results     pymilvus search results as rows (the vectors decoded in one numpy step)
    search      ANN shortlist in Milvus, exact rerank in numpy; the exact-scan fallback
    collection  MilvusCollection: writes, reads, searches (`index.backend.CollectionHandle`)
    backend     MilvusBackend: the set of collections (`index.backend.Backend`)
    errors      Milvus failures as onespace errors

Importing this package imports pymilvus (the optional `milvus` extra): import it only when the
Milvus backend is chosen.
"""

from __future__ import annotations

from onespace.milvus.backend import CONSISTENCY_LEVELS, MilvusBackend, read_token_file
from onespace.milvus.collection import MilvusCollection

__all__ = ["CONSISTENCY_LEVELS", "MilvusBackend", "MilvusCollection", "read_token_file"]
