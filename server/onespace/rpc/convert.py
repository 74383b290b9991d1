"""Protobuf <-> domain conversion. Validation of shape happens here (which oneof is set, enum
values known); validation of meaning (limits, formats) happens in `onespace.content` and the index."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from onespace.content import (
    Content,
    DetailLevel,
    EmbeddingType,
    Purpose,
    TruncationMode,
    VideoMode,
    format_modality,
    normalize_format,
)
from onespace.engine.tuner import Trial
from onespace.errors import InvalidArgument
from onespace.gateway import Embedded, EmbedOptions, ItemIn, Timings
from onespace.index import (
    CollectionConfig,
    CollectionStats,
    Condition,
    Filter,
    Hit,
    HnswParams,
    IndexDtype,
    Metric,
    StoredDtype,
    StoredItem,
    Test,
    Tuning,
)
from onespace.models import Modality, ModelSpec
from onespace.providers.base import Vector
from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, info_pb2, search_pb2

__all__ = [
    "add_hits",
    "collection_to_proto",
    "config_from_proto",
    "content_from_proto",
    "embedded_to_proto",
    "filter_from_proto",
    "item_from_proto",
    "modality_to_proto",
    "model_to_proto",
    "options_from_proto",
    "packed",
    "stored_item_to_proto",
    "timings_to_proto",
    "tuning_from_proto",
    "vector_format",
    "vector_from_proto",
]

MODALITY_FROM_PROTO = {
    common_pb2.MODALITY_TEXT: Modality.TEXT,
    common_pb2.MODALITY_IMAGE: Modality.IMAGE,
    common_pb2.MODALITY_AUDIO: Modality.AUDIO,
    common_pb2.MODALITY_VIDEO: Modality.VIDEO,
}
MODALITY_TO_PROTO = {v: k for k, v in MODALITY_FROM_PROTO.items()}
PURPOSE_FROM_PROTO = {
    common_pb2.EMBEDDING_PURPOSE_GENERIC_INDEX: Purpose.GENERIC_INDEX,
    common_pb2.EMBEDDING_PURPOSE_GENERIC_RETRIEVAL: Purpose.GENERIC_RETRIEVAL,
    common_pb2.EMBEDDING_PURPOSE_TEXT_RETRIEVAL: Purpose.TEXT_RETRIEVAL,
    common_pb2.EMBEDDING_PURPOSE_IMAGE_RETRIEVAL: Purpose.IMAGE_RETRIEVAL,
    common_pb2.EMBEDDING_PURPOSE_VIDEO_RETRIEVAL: Purpose.VIDEO_RETRIEVAL,
    common_pb2.EMBEDDING_PURPOSE_DOCUMENT_RETRIEVAL: Purpose.DOCUMENT_RETRIEVAL,
    common_pb2.EMBEDDING_PURPOSE_AUDIO_RETRIEVAL: Purpose.AUDIO_RETRIEVAL,
    common_pb2.EMBEDDING_PURPOSE_CLASSIFICATION: Purpose.CLASSIFICATION,
    common_pb2.EMBEDDING_PURPOSE_CLUSTERING: Purpose.CLUSTERING,
}
TRUNCATION_FROM_PROTO = {
    common_pb2.TRUNCATION_MODE_UNSPECIFIED: TruncationMode.END,
    common_pb2.TRUNCATION_MODE_START: TruncationMode.START,
    common_pb2.TRUNCATION_MODE_END: TruncationMode.END,
    common_pb2.TRUNCATION_MODE_NONE: TruncationMode.NONE,
}
DETAIL_FROM_PROTO = {
    common_pb2.DETAIL_LEVEL_UNSPECIFIED: DetailLevel.STANDARD_IMAGE,
    common_pb2.DETAIL_LEVEL_STANDARD_IMAGE: DetailLevel.STANDARD_IMAGE,
    common_pb2.DETAIL_LEVEL_DOCUMENT_IMAGE: DetailLevel.DOCUMENT_IMAGE,
}
VIDEO_MODE_FROM_PROTO = {
    common_pb2.VIDEO_EMBEDDING_MODE_UNSPECIFIED: VideoMode.AUDIO_VIDEO_COMBINED,
    common_pb2.VIDEO_EMBEDDING_MODE_AUDIO_VIDEO_COMBINED: VideoMode.AUDIO_VIDEO_COMBINED,
    common_pb2.VIDEO_EMBEDDING_MODE_AUDIO_VIDEO_SEPARATE: VideoMode.AUDIO_VIDEO_SEPARATE,
}
EMBEDDING_TYPE_TO_PROTO = {
    EmbeddingType.TEXT: common_pb2.EMBEDDING_TYPE_TEXT,
    EmbeddingType.IMAGE: common_pb2.EMBEDDING_TYPE_IMAGE,
    EmbeddingType.AUDIO: common_pb2.EMBEDDING_TYPE_AUDIO,
    EmbeddingType.VIDEO: common_pb2.EMBEDDING_TYPE_VIDEO,
    EmbeddingType.AUDIO_VIDEO_COMBINED: common_pb2.EMBEDDING_TYPE_AUDIO_VIDEO_COMBINED,
}
METRIC_FROM_PROTO = {
    collections_pb2.METRIC_UNSPECIFIED: Metric.COSINE,
    collections_pb2.METRIC_COSINE: Metric.COSINE,
    collections_pb2.METRIC_INNER_PRODUCT: Metric.INNER_PRODUCT,
    collections_pb2.METRIC_L2: Metric.L2,
}
METRIC_TO_PROTO = {
    Metric.COSINE: collections_pb2.METRIC_COSINE,
    Metric.INNER_PRODUCT: collections_pb2.METRIC_INNER_PRODUCT,
    Metric.L2: collections_pb2.METRIC_L2,
}
DTYPE_FROM_PROTO = {
    collections_pb2.INDEX_DTYPE_UNSPECIFIED: IndexDtype.F16,
    collections_pb2.INDEX_DTYPE_F32: IndexDtype.F32,
    collections_pb2.INDEX_DTYPE_F16: IndexDtype.F16,
    collections_pb2.INDEX_DTYPE_BF16: IndexDtype.BF16,
    collections_pb2.INDEX_DTYPE_I8: IndexDtype.I8,
}
DTYPE_TO_PROTO = {v: k for k, v in DTYPE_FROM_PROTO.items() if k != collections_pb2.INDEX_DTYPE_UNSPECIFIED}
STORED_DTYPE_FROM_PROTO = {
    collections_pb2.STORED_DTYPE_UNSPECIFIED: StoredDtype.F16,
    collections_pb2.STORED_DTYPE_F16: StoredDtype.F16,
    collections_pb2.STORED_DTYPE_F32: StoredDtype.F32,
}
STORED_DTYPE_TO_PROTO = {
    v: k for k, v in STORED_DTYPE_FROM_PROTO.items() if k != collections_pb2.STORED_DTYPE_UNSPECIFIED
}


E = TypeVar("E")


def _enum(table: Mapping[Any, E], value: int, field: str) -> E:
    try:
        return table[value]
    except KeyError:
        raise InvalidArgument(field, f"unknown enum value {value}") from None


def modality_to_proto(modality: Modality | None) -> common_pb2.Modality.ValueType:
    if modality is None:
        return common_pb2.MODALITY_UNSPECIFIED
    return MODALITY_TO_PROTO[modality]


def modality_from_proto(value: int, field: str) -> Modality:
    if value == common_pb2.MODALITY_UNSPECIFIED:
        raise InvalidArgument(field, "modality must be set")
    return _enum(MODALITY_FROM_PROTO, value, field)


def content_from_proto(pb: common_pb2.Content, field: str) -> Content:
    kind = pb.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(field, "set one of text, image, audio, video or s3_uri")
    media = {"image": Modality.IMAGE, "audio": Modality.AUDIO, "video": Modality.VIDEO}
    if kind == "text":
        modality = Modality.TEXT
    elif kind == "s3_uri":
        modality = _s3_modality(pb, field)
    else:
        modality = media[kind]
    return Content(
        modality,
        text=pb.text if kind == "text" else None,
        data=getattr(pb, kind) if kind in media else None,
        s3_uri=pb.s3_uri if kind == "s3_uri" else None,
        format=normalize_format(pb.format) if pb.format else None,
        truncation=_enum(TRUNCATION_FROM_PROTO, pb.truncation_mode, f"{field}.truncation_mode"),
        detail_level=_enum(DETAIL_FROM_PROTO, pb.detail_level, f"{field}.detail_level"),
        video_mode=_enum(VIDEO_MODE_FROM_PROTO, pb.video_embedding_mode, f"{field}.video_embedding_mode"),
        s3_bucket_owner=pb.s3_bucket_owner or None if kind == "s3_uri" else None,
    )


def _s3_modality(pb: common_pb2.Content, field: str) -> Modality:
    if pb.s3_modality != common_pb2.MODALITY_UNSPECIFIED:
        return modality_from_proto(pb.s3_modality, f"{field}.s3_modality")
    name = pb.s3_uri.rsplit("/", 1)[-1]
    ext = pb.format or (name.rsplit(".", 1)[-1] if "." in name else "")
    if normalize_format(ext) in {"txt", "text", "md"}:
        return Modality.TEXT
    modality = format_modality(ext) if ext else None
    if modality is None:
        raise InvalidArgument(
            f"{field}.s3_modality", f"cannot tell the modality of {pb.s3_uri!r}; set s3_modality"
        )
    return modality


def options_from_proto(pb: common_pb2.EmbedOptions, field: str = "options") -> EmbedOptions:
    purpose = None
    if pb.purpose != common_pb2.EMBEDDING_PURPOSE_UNSPECIFIED:
        purpose = _enum(PURPOSE_FROM_PROTO, pb.purpose, f"{field}.purpose")
    return EmbedOptions(
        model=pb.model,
        dimension=pb.dimension if pb.HasField("dimension") else None,
        purpose=purpose,
        normalize=pb.normalize if pb.HasField("normalize") else True,
    )


def purpose_from_proto(value: int, field: str) -> Purpose | None:
    if value == common_pb2.EMBEDDING_PURPOSE_UNSPECIFIED:
        return None
    return _enum(PURPOSE_FROM_PROTO, value, field)


def vector_format(value: int, field: str) -> bool:
    """Whether responses carry packed float32 bytes (VECTOR_FORMAT_F32) instead of floats."""
    if value not in (
        common_pb2.VECTOR_FORMAT_UNSPECIFIED,
        common_pb2.VECTOR_FORMAT_FLOATS,
        common_pb2.VECTOR_FORMAT_F32,
    ):
        raise InvalidArgument(field, f"unknown value {value}")
    return value == common_pb2.VECTOR_FORMAT_F32


def packed(vector: Vector) -> bytes:
    """A vector as packed little-endian float32, the wire's fast form."""
    return np.asarray(vector, dtype="<f4").tobytes()


def embedded_to_proto(embedded: Embedded, f32: bool = False) -> common_pb2.EmbedResult:
    out = common_pb2.EmbedResult(cached=embedded.cached)
    for e in embedded.result.embeddings:
        pb = out.embeddings.add(type=EMBEDDING_TYPE_TO_PROTO[e.type])
        if f32:
            pb.f32 = packed(e.vector)
        else:
            pb.values.extend(e.vector.tolist())
        if e.truncated_char_length is not None:
            pb.truncated_char_length = e.truncated_char_length
    return out


def timings_to_proto(t: Timings) -> common_pb2.Timings:
    return common_pb2.Timings(
        queue_seconds=t.queue, provider_seconds=t.provider, index_seconds=t.index, total_seconds=t.total
    )


def vector_from_proto(pb: common_pb2.Vector, field: str) -> Vector:
    """The vector in `values` or `f32` (exactly one); `field` names the Vector, e.g. `vector`.

    Only the shape is checked here: the values (finite, a norm that keeps every score finite, f16
    range where it applies) are checked once, for every caller, by `index.validate`."""
    f32 = pb.f32  # read once: each read of a bytes field copies it out of the message
    if f32:
        if pb.values:
            raise InvalidArgument(field, "set either values or f32, not both")
        if len(f32) % 4:
            raise InvalidArgument(
                f"{field}.f32", f"is {len(f32)} bytes, not a whole number of float32 (4 bytes each)"
            )
        return np.frombuffer(f32, dtype="<f4").astype(np.float32)
    if not pb.values:
        raise InvalidArgument(f"{field}.values", "must not be empty")
    return np.asarray(pb.values, dtype=np.float32)


def item_from_proto(pb: data_pb2.Item, field: str) -> ItemIn:
    source = pb.WhichOneof("source")
    if source is None:
        raise InvalidArgument(f"{field}.source", "set either content or vector")
    if source == "content":
        return ItemIn(
            pb.id, content=content_from_proto(pb.content, f"{field}.content"), metadata=dict(pb.metadata)
        )
    return ItemIn(pb.id, vector=vector_from_proto(pb.vector, f"{field}.vector"), metadata=dict(pb.metadata))


def config_from_proto(pb: collections_pb2.CollectionConfig) -> CollectionConfig:
    defaults = HnswParams()
    hnsw = HnswParams(
        connectivity=pb.hnsw.connectivity or defaults.connectivity,
        expansion_add=pb.hnsw.expansion_add or defaults.expansion_add,
        expansion_search=pb.hnsw.expansion_search or defaults.expansion_search,
    )
    return CollectionConfig(
        name=pb.name,
        model=pb.model,
        dimension=pb.dimension,
        index_dimension=pb.index_dimension,
        metric=_enum(METRIC_FROM_PROTO, pb.metric, "config.metric"),
        dtype=_enum(DTYPE_FROM_PROTO, pb.dtype, "config.dtype"),
        hnsw=hnsw,
        rerank_factor=pb.rerank_factor or 4,
        stored_dtype=_enum(STORED_DTYPE_FROM_PROTO, pb.stored_dtype, "config.stored_dtype"),
        max_unindexed_rows=pb.max_unindexed_rows,
    )


def tuning_from_proto(pb: collections_pb2.UpdateCollectionRequest) -> Tuning:
    """The fields the request sets (unset: unchanged; 0: the default, applied by `Tuning`)."""
    return Tuning(
        expansion_search=pb.expansion_search if pb.HasField("expansion_search") else None,
        rerank_factor=pb.rerank_factor if pb.HasField("rerank_factor") else None,
        max_unindexed_rows=pb.max_unindexed_rows if pb.HasField("max_unindexed_rows") else None,
    )


def trial_to_proto(trial: Trial) -> collections_pb2.TuneTrial:
    return collections_pb2.TuneTrial(
        expansion_search=trial.expansion_search,
        rerank_factor=trial.rerank_factor,
        recall=trial.recall,
        micros_per_query=trial.seconds_per_query * 1e6,
    )


def collection_to_proto(
    config: CollectionConfig, count: int, stats: CollectionStats | None = None
) -> collections_pb2.Collection:
    pb = collections_pb2.Collection(
        config=collections_pb2.CollectionConfig(
            name=config.name,
            model=config.model,
            dimension=config.dimension,
            index_dimension=config.index_dimension,
            metric=METRIC_TO_PROTO[config.metric],
            dtype=DTYPE_TO_PROTO[config.dtype],
            hnsw=collections_pb2.HnswParams(
                connectivity=config.hnsw.connectivity,
                expansion_add=config.hnsw.expansion_add,
                expansion_search=config.hnsw.expansion_search,
            ),
            rerank_factor=config.rerank_factor,
            stored_dtype=STORED_DTYPE_TO_PROTO[config.stored_dtype],
            max_unindexed_rows=config.max_unindexed_rows,
        ),
        count=count,
    )
    if stats is not None:
        pb.stats.CopyFrom(
            collections_pb2.CollectionStats(
                items=stats.items,
                dead_rows=stats.dead_slots,
                index_tombstones=stats.index_tombstones,
                disk_bytes=stats.disk_bytes,
                index_bytes=stats.index_bytes,
                vector_bytes=stats.vector_bytes,
                seq=stats.seq,
                checkpoint_seq=stats.checkpoint_seq,
                checkpoint_time=stats.checkpoint_time,
                log_bytes=stats.log_bytes,
                unindexed_rows=stats.unindexed_rows,
                unindexed_limit=stats.unindexed_limit,
            )
        )
        pb.count = stats.items
    return pb


def filter_from_proto(pb: search_pb2.Filter) -> Filter:
    modalities = frozenset(modality_from_proto(m, "filter.modalities") for m in pb.modalities)
    conditions = tuple(
        condition_from_proto(c, f"filter.conditions[{i}]") for i, c in enumerate(pb.conditions)
    )
    return Filter(modalities=modalities, metadata=dict(pb.metadata), conditions=conditions)


def condition_from_proto(pb: search_pb2.Condition, where: str) -> Condition:
    test = pb.WhichOneof("test")
    if test == "equals":
        return Condition(pb.key, Test.IN, (pb.equals,))
    if test == "not_equals":
        return Condition(pb.key, Test.NOT_IN, (pb.not_equals,))
    if test in ("in", "not_in"):
        values = tuple(getattr(pb, test).values)
        if not values:
            raise InvalidArgument(f"{where}.{test}.values", "must hold at least one value")
        return Condition(pb.key, Test.IN if test == "in" else Test.NOT_IN, values)
    if test == "range":
        r = pb.range
        if r.HasField("gt") and r.HasField("gte"):
            raise InvalidArgument(f"{where}.range", "set gt or gte, not both")
        if r.HasField("lt") and r.HasField("lte"):
            raise InvalidArgument(f"{where}.range", "set lt or lte, not both")
        for name in ("gt", "gte", "lt", "lte"):  # ±inf would read as "no bound" below
            if r.HasField(name) and not math.isfinite(getattr(r, name)):
                raise InvalidArgument(
                    f"{where}.range", f"{name} must be a finite number, got {getattr(r, name)}"
                )
        low = r.gt if r.HasField("gt") else r.gte if r.HasField("gte") else -math.inf
        high = r.lt if r.HasField("lt") else r.lte if r.HasField("lte") else math.inf
        return Condition(
            pb.key,
            Test.RANGE,
            low=low,
            high=high,
            low_inclusive=not r.HasField("gt"),
            high_inclusive=not r.HasField("lt"),
        )
    raise InvalidArgument(f"{where}.test", "set one of equals, not_equals, in, not_in or range")


def add_hits(
    target: RepeatedCompositeFieldContainer[search_pb2.SearchHit], hits: Sequence[Hit], f32: bool = False
) -> None:
    """Append `hits` to a response's repeated field, each built in place: `add()` then the map's
    `update` cost ~1.0 us a hit against ~1.6 for a `SearchHit(..., metadata=)` appended
    (protobuf 7.36, upb; hits with two metadata keys). Building hits was the largest single
    share of a search's GIL time (docs/architecture.md, "Threads")."""
    add = target.add
    for hit in hits:
        pb = add(id=hit.id, score=hit.score, modality=modality_to_proto(hit.modality))
        if hit.metadata:
            pb.metadata.update(hit.metadata)
        if hit.vector is not None:
            if f32:
                pb.vector_f32 = packed(hit.vector)
            else:
                pb.vector.extend(hit.vector.tolist())


def stored_item_to_proto(item: StoredItem, f32: bool = False) -> data_pb2.StoredItem:
    pb = data_pb2.StoredItem(id=item.id, modality=modality_to_proto(item.modality), metadata=item.metadata)
    if item.vector is not None:
        if f32:
            pb.vector_f32 = packed(item.vector)
        else:
            pb.vector.extend(item.vector.tolist())
    return pb


def model_to_proto(spec: ModelSpec) -> info_pb2.ModelInfo:
    limits = spec.limits
    return info_pb2.ModelInfo(
        id=spec.id,
        modalities=sorted(MODALITY_TO_PROTO[m] for m in spec.modalities),
        dimensions=list(spec.dimensions),
        default_dimension=spec.default_dimension,
        limits=info_pb2.ModelLimits(
            max_text_chars=limits.max_text_chars,
            max_inline_bytes=limits.max_inline_bytes,
            max_media_seconds=limits.max_media_seconds,
            image_formats=list(limits.image_formats),
            audio_formats=list(limits.audio_formats),
            video_formats=list(limits.video_formats),
            max_batch=limits.max_batch,
        ),
        description=spec.description,
        semantic_across_modalities=spec.semantic_across_modalities,
    )
