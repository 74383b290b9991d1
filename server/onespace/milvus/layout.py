"""How one onespace collection is laid out as one Milvus collection.

Fields:

    id        VARCHAR primary key (at most MAX_ID_BYTES)
    vector    FLOAT_VECTOR, the stored dimension: the full vector as stored (an f16 collection's
              values rounded to f16, so reads and scores equal the embedded store's)
    prefix    FLOAT_VECTOR, the index dimension: the renormalised Matryoshka prefix, HNSW-indexed;
              absent when the index dimension is the stored one (then `vector` carries the HNSW)
    modality  INT8: `records.modality_code` (0: stored from a raw vector)
    tags      ARRAY<VARCHAR>: one `<hex key>=<value>` per metadata pair (`rows`)
    nums      JSON: `{<hex key>: number}` for the values that spell a number (range filters)

Indexes: HNSW on the searched field with M = hnsw.connectivity, efConstruction =
hnsw.expansion_add and ef = max(hnsw.expansion_search, shortlist) at search time; FLAT (no build,
raw rows) on `vector` when it is not the searched field, since Milvus loads a collection only
when every vector field has an index. The metric: renormalised prefixes are unit vectors, where
inner product ranks as cosine and as L2 do, so IP; a full-length index uses the collection's
own metric (COSINE, IP, L2). Index scores only pick the shortlist: every score a caller sees comes
from the exact rerank (`search`). The index dtype (f16/bf16/i8) is not mapped: Milvus indexes f32
here, which only makes the shortlist better than the embedded one's.

The collection's `CollectionConfig` is stored as JSON in the collection property
`onespace.config`, written by the same call that creates the collection, so a restart (or another
gateway replica) reopens every collection with its config.
"""

from __future__ import annotations

import json
from typing import Any

from pymilvus import DataType, MilvusClient  # type: ignore[import-untyped]

from onespace.errors import Internal, InvalidArgument
from onespace.index.config import CollectionConfig, Metric, config_from_json, config_to_json
from onespace.index.validate import MAX_ID_BYTES, MAX_METADATA_KEYS

__all__ = [
    "CONFIG_PROPERTY",
    "ID",
    "MAX_LIMIT",
    "MODALITY",
    "NUMS",
    "PREFIX",
    "TAGS",
    "VECTOR",
    "config_from_properties",
    "index_params",
    "indexed_fields",
    "properties",
    "schema",
    "search_field",
    "search_params",
]

ID = "id"
VECTOR = "vector"
PREFIX = "prefix"
MODALITY = "modality"
TAGS = "tags"
NUMS = "nums"
CONFIG_PROPERTY = "onespace.config"
TAG_BYTES = 8192  # a tag is at most 2 * 128 (hex key) + 1 + 4096 (value) bytes
MAX_LIMIT = 16_384  # Milvus's largest `limit` (topk) per search


def search_field(config: CollectionConfig) -> str:
    """The field the HNSW index is on."""
    return VECTOR if config.index_dimension == config.dimension else PREFIX


def _index_metric(config: CollectionConfig) -> str:
    if config.index_dimension < config.dimension:
        return "IP"  # unit prefixes: IP ranks like cosine and like L2
    return {Metric.COSINE: "COSINE", Metric.INNER_PRODUCT: "IP", Metric.L2: "L2"}[config.metric]


def schema(config: CollectionConfig) -> Any:
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field(ID, DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
    s.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=config.dimension)
    if search_field(config) == PREFIX:
        s.add_field(PREFIX, DataType.FLOAT_VECTOR, dim=config.index_dimension)
    s.add_field(MODALITY, DataType.INT8)
    s.add_field(
        TAGS,
        DataType.ARRAY,
        element_type=DataType.VARCHAR,
        max_capacity=MAX_METADATA_KEYS,
        max_length=TAG_BYTES,
    )
    s.add_field(NUMS, DataType.JSON)
    return s


def indexed_fields(config: CollectionConfig) -> tuple[str, ...]:
    return (VECTOR,) if search_field(config) == VECTOR else (PREFIX, VECTOR)


def index_params(config: CollectionConfig, fields: tuple[str, ...] | None = None) -> Any:
    """The index of each field in `fields` (default: every vector field)."""
    params = MilvusClient.prepare_index_params()
    for name in indexed_fields(config) if fields is None else fields:
        if name == search_field(config):
            params.add_index(
                name,
                index_name=name,
                index_type="HNSW",
                metric_type=_index_metric(config),
                params={"M": config.hnsw.connectivity, "efConstruction": config.hnsw.expansion_add},
            )
        else:
            params.add_index(name, index_name=name, index_type="FLAT", metric_type="IP")
    return params


def search_params(config: CollectionConfig, limit: int) -> dict[str, Any]:
    return {
        "metric_type": _index_metric(config),
        "params": {"ef": max(config.hnsw.expansion_search, limit)},
    }


def properties(config: CollectionConfig) -> dict[str, str]:
    return {CONFIG_PROPERTY: json.dumps(config_to_json(config), sort_keys=True)}


def config_from_properties(milvus_name: str, found: dict[str, Any]) -> CollectionConfig | None:
    """The config a collection's properties hold; None when it has none (not onespace's);
    Internal when it is there but unreadable."""
    raw = found.get(CONFIG_PROPERTY)
    if raw is None:
        return None
    try:
        return config_from_json(json.loads(raw))
    except (ValueError, InvalidArgument) as exc:
        raise Internal(f"Milvus collection {milvus_name!r} has a malformed {CONFIG_PROPERTY}: {exc}") from exc
