"""Request construction shared by the async client, the sync client and the CLI.

Pure functions from Python values to protocol messages, so every caller validates arguments
the same way (one query kind per search, enum names accepted) before anything hits the wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from onespace_client import enums, vectors
from onespace_client.content import ContentLike, to_content
from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, search_pb2

__all__ = [
    "ItemSource",
    "collection_config",
    "embed_options",
    "item",
    "search_batch_request",
    "search_request",
]

# What an item holds: content to embed (Content, text, or a file path) or a ready vector.
ItemSource: TypeAlias = ContentLike | common_pb2.Vector | Sequence[float]


def embed_options(
    *,
    model: str | None = None,
    dimension: int | None = None,
    purpose: enums.PurposeLike | None = None,
    normalize: bool | None = None,
) -> common_pb2.EmbedOptions:
    """Options with unset fields left unset, so the server's defaults apply."""
    options = common_pb2.EmbedOptions(model=model or "", vector_format=common_pb2.VECTOR_FORMAT_F32)
    if dimension is not None:
        options.dimension = dimension
    if purpose is not None:
        options.purpose = enums.purpose(purpose)
    if normalize is not None:
        options.normalize = normalize
    return options


def item(id: str, source: ItemSource, metadata: Mapping[str, str] | None = None) -> data_pb2.Item:
    """An `Item`: a list of floats or a numpy array (or a Vector) is stored as is, anything else
    is embedded. Vectors travel as packed float32 (`vectors.pack`)."""
    msg = data_pb2.Item(id=id, metadata=dict(metadata or {}))
    if isinstance(source, common_pb2.Vector):
        msg.vector.CopyFrom(source)
    elif hasattr(source, "astype") or (isinstance(source, Sequence) and not isinstance(source, str)):
        msg.vector.f32 = vectors.pack(source)
    else:
        msg.content.CopyFrom(to_content(source))
    return msg


def collection_config(
    name: str,
    *,
    model: str = "",
    dimension: int = 0,
    index_dimension: int = 0,
    metric: enums.MetricLike = collections_pb2.METRIC_UNSPECIFIED,
    dtype: enums.DtypeLike = collections_pb2.INDEX_DTYPE_UNSPECIFIED,
    connectivity: int = 0,
    expansion_add: int = 0,
    expansion_search: int = 0,
    rerank_factor: int = 0,
    stored_dtype: enums.StoredDtypeLike = collections_pb2.STORED_DTYPE_UNSPECIFIED,
    max_unindexed_rows: int = 0,
) -> collections_pb2.CollectionConfig:
    """A collection config; zeros and UNSPECIFIED mean "the server's default".

    `dtype` is the HNSW index's scalar type; `stored_dtype` ("f16", the default, or "f32") is the
    full vectors' on disk, what reranking and Get read back (f32: exactly what was written).
    `max_unindexed_rows` lets that many written rows wait for the HNSW index before writes wait
    for it (0: the server's default, 16,384 from a 1024-d index up, 43,008 at 256-d); raise it
    for a bulk load, at the price of scans of those rows in searches meanwhile.
    """
    return collections_pb2.CollectionConfig(
        name=name,
        model=model,
        dimension=dimension,
        index_dimension=index_dimension,
        metric=enums.metric(metric),
        dtype=enums.dtype(dtype),
        hnsw=collections_pb2.HnswParams(
            connectivity=connectivity, expansion_add=expansion_add, expansion_search=expansion_search
        ),
        rerank_factor=rerank_factor,
        stored_dtype=enums.stored_dtype(stored_dtype),
        max_unindexed_rows=max_unindexed_rows,
    )


def search_request(
    collection: str,
    *,
    text: str | None = None,
    content: ContentLike | None = None,
    vector: Sequence[float] | None = None,
    id: str | None = None,
    k: int = 10,
    dimension: int | None = None,
    modalities: Iterable[enums.ModalityLike] = (),
    metadata: Mapping[str, str] | None = None,
    conditions: Iterable[search_pb2.Condition] = (),
    purpose: enums.PurposeLike | None = None,
    include_vectors: bool = False,
) -> search_pb2.SearchRequest:
    """A search request; exactly one of `text`, `content`, `vector` or `id` is the query.

    The filter is `modalities` (any of), `metadata` (each key equal) and `conditions` (built with
    `onespace_client.where`), all of which must hold.
    """
    queries = {"text": text, "content": content, "vector": vector, "id": id}
    given = [name for name, value in queries.items() if value is not None]
    if len(given) != 1:
        found = ", ".join(given) or "none"
        raise ValueError(f"search needs exactly one of text, content, vector or id (got {found})")
    request = search_pb2.SearchRequest(
        collection=collection,
        k=k,
        include_vectors=include_vectors,
        vector_format=common_pb2.VECTOR_FORMAT_F32,
        filter=search_pb2.Filter(
            modalities=[enums.modality(m) for m in modalities],
            metadata=dict(metadata or {}),
            conditions=_conditions(conditions),
        ),
    )
    if text is not None:
        request.content.text = text
    elif content is not None:
        request.content.CopyFrom(to_content(content))
    elif vector is not None:
        request.vector.f32 = vectors.pack(vector)
    elif id is not None:
        request.id = id
    if dimension is not None:
        request.dimension = dimension
    if purpose is not None:
        request.purpose = enums.purpose(purpose)
    return request


def search_batch_request(
    collection: str,
    query_vectors: Iterable[Sequence[float]] | Any,
    *,
    k: int = 10,
    dimension: int | None = None,
    modalities: Iterable[enums.ModalityLike] = (),
    metadata: Mapping[str, str] | None = None,
    conditions: Iterable[search_pb2.Condition] = (),
    include_vectors: bool = False,
) -> search_pb2.SearchBatchRequest:
    """One SearchBatch request: a query per row of `query_vectors` (a 2-D numpy array or a
    sequence of vectors), each with the same k, dimension and filter."""
    if getattr(query_vectors, "ndim", 2) != 2:
        raise ValueError("query_vectors must be 2-D, one row per query; wrap a single vector in a list")
    template = search_request(
        collection,
        vector=(),
        k=k,
        dimension=dimension,
        modalities=modalities,
        metadata=metadata,
        conditions=conditions,
        include_vectors=include_vectors,
    )
    batch = search_pb2.SearchBatchRequest()
    for row in query_vectors:
        if isinstance(row, int | float):
            raise ValueError("query_vectors must be 2-D, one row per query; wrap a single vector in a list")
        query = batch.queries.add()
        query.CopyFrom(template)
        query.vector.f32 = vectors.pack(row)
    return batch


def _conditions(conditions: Iterable[search_pb2.Condition]) -> list[search_pb2.Condition]:
    if isinstance(conditions, search_pb2.Condition):
        return [conditions]  # one condition given bare: as good as a list of one
    out = list(conditions)
    for i, condition in enumerate(out):
        if not isinstance(condition, search_pb2.Condition):
            raise TypeError(
                f"conditions[{i}] is a {type(condition).__name__}, not a Condition; "
                "build conditions with onespace_client.where(key)"
            )
    return out
