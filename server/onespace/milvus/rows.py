"""Items as Milvus rows and back: vectors, modality codes, and metadata as tags and numbers.

Metadata keys may hold any text, so they are stored hex-encoded (UTF-8 bytes, lowercase): a tag
is `<hex key>=<value>` (hex has no `=`, so the first `=` splits it) and a range-filterable
number sits in the `nums` JSON under the hex key. Filters then match whole tags or JSON paths
whose keys are `[0-9a-f]`, and no key can change an expression's meaning (`expr`). Numbers are
what `sqlstore.numeric_value` accepts, the embedded store's rule, so ranges match the same items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from onespace.index.config import CollectionConfig
from onespace.index.matryoshka import prefix
from onespace.index.records import StoredItem, modality_from_code
from onespace.index.sqlstore import numeric_value
from onespace.index.writes import PreparedRecord
from onespace.milvus import layout

__all__ = ["item", "key_code", "metadata", "stored_matrix", "tag", "to_rows"]


def key_code(key: str) -> str:
    return key.encode("utf-8").hex()


def tag(code: str, value: str) -> str:
    return f"{code}={value}"


def metadata(tags: Sequence[str]) -> dict[str, str]:
    """The metadata a row's tags encode, in stored order."""
    out: dict[str, str] = {}
    for t in tags:
        code, _, value = t.partition("=")
        out[bytes.fromhex(code).decode("utf-8")] = value
    return out


def stored_matrix(config: CollectionConfig, vectors: Sequence[Any]) -> npt.NDArray[np.generic]:
    """Rows as the embedded store holds them (its stored dtype), from f32 values (lists or arrays)."""
    matrix = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), config.dimension)
    return matrix.astype(config.stored_dtype.numpy)


def to_rows(config: CollectionConfig, records: Sequence[PreparedRecord]) -> list[dict[str, Any]]:
    """Milvus rows for checked records: the vector at stored precision, its index prefix."""
    if not records:
        return []
    stored = stored_matrix(config, [r.vector for r in records]).astype(np.float32)
    prefixes = None
    if layout.search_field(config) == layout.PREFIX:
        prefixes = prefix(stored, config.index_dimension, config.metric, full=config.dimension)
    rows = []
    for i, r in enumerate(records):
        row: dict[str, Any] = {
            layout.ID: r.id,
            layout.VECTOR: stored[i],
            layout.MODALITY: r.code,
            layout.TAGS: [tag(key_code(k), v) for k, v in r.metadata.items()],
            layout.NUMS: _numbers(r.metadata),
        }
        if prefixes is not None:
            row[layout.PREFIX] = prefixes[i]
        rows.append(row)
    return rows


def _numbers(meta: Mapping[str, str]) -> dict[str, float]:
    return {key_code(k): n for k, v in meta.items() if (n := numeric_value(v)) is not None}


def item(entity: Mapping[str, Any], config: CollectionConfig, include_vector: bool) -> StoredItem:
    """A row read back (`entity` holds id, modality, tags and, when asked, vector)."""
    vector = None
    if include_vector:
        vector = stored_matrix(config, [entity[layout.VECTOR]])[0].astype(np.float32)
    return StoredItem(
        str(entity[layout.ID]),
        modality_from_code(int(entity[layout.MODALITY])),
        metadata(entity[layout.TAGS]),
        vector,
    )
