"""Short, case-insensitive names for the protocol's enums, both ways.

The CLI and the typed client accept `"image"`, `"cosine"` or `"f16"` where the wire wants an enum
number; tables print the short name back. One table per enum keeps the two directions in sync.
"""

from __future__ import annotations

from typing import TypeAlias, TypeVar

from onespace_client.v1 import collections_pb2, common_pb2

__all__ = [
    "DTYPE_NAMES",
    "METRIC_NAMES",
    "MODALITY_NAMES",
    "PURPOSE_NAMES",
    "STORED_DTYPE_NAMES",
    "DtypeLike",
    "MetricLike",
    "ModalityLike",
    "PurposeLike",
    "StoredDtypeLike",
    "dtype",
    "dtype_name",
    "embedding_type_name",
    "metric",
    "metric_name",
    "modality",
    "modality_name",
    "purpose",
    "purpose_name",
    "stored_dtype",
    "stored_dtype_name",
]

Modality: TypeAlias = common_pb2.Modality.ValueType
Purpose: TypeAlias = common_pb2.EmbeddingPurpose.ValueType
Metric: TypeAlias = collections_pb2.Metric.ValueType
Dtype: TypeAlias = collections_pb2.IndexDtype.ValueType
StoredDtype: TypeAlias = collections_pb2.StoredDtype.ValueType

ModalityLike: TypeAlias = Modality | str
PurposeLike: TypeAlias = Purpose | str
MetricLike: TypeAlias = Metric | str
DtypeLike: TypeAlias = Dtype | str
StoredDtypeLike: TypeAlias = StoredDtype | str
_V = TypeVar("_V", bound=int)

MODALITY_NAMES: dict[str, Modality] = {
    "text": common_pb2.MODALITY_TEXT,
    "image": common_pb2.MODALITY_IMAGE,
    "audio": common_pb2.MODALITY_AUDIO,
    "video": common_pb2.MODALITY_VIDEO,
}
PURPOSE_NAMES: dict[str, Purpose] = {
    name.removeprefix("EMBEDDING_PURPOSE_").lower(): value
    for name, value in common_pb2.EmbeddingPurpose.items()
    if value != common_pb2.EMBEDDING_PURPOSE_UNSPECIFIED
}
METRIC_NAMES: dict[str, Metric] = {
    "cosine": collections_pb2.METRIC_COSINE,
    "ip": collections_pb2.METRIC_INNER_PRODUCT,
    "l2": collections_pb2.METRIC_L2,
}
DTYPE_NAMES: dict[str, Dtype] = {
    "f32": collections_pb2.INDEX_DTYPE_F32,
    "f16": collections_pb2.INDEX_DTYPE_F16,
    "bf16": collections_pb2.INDEX_DTYPE_BF16,
    "i8": collections_pb2.INDEX_DTYPE_I8,
}
STORED_DTYPE_NAMES: dict[str, StoredDtype] = {
    "f16": collections_pb2.STORED_DTYPE_F16,
    "f32": collections_pb2.STORED_DTYPE_F32,
}
_METRIC_ALIASES = {"inner_product": "ip", "dot": "ip", "euclidean": "l2"}


def _lookup(table: dict[str, _V], kind: str, value: _V | str, aliases: dict[str, str] | None = None) -> _V:
    if not isinstance(value, str):
        return value
    key = value.strip().lower()
    key = (aliases or {}).get(key, key)
    if key not in table:
        raise ValueError(f"unknown {kind} {value!r}; expected one of: {', '.join(table)}")
    return table[key]


def _name(table: dict[str, _V], value: int) -> str:
    for name, number in table.items():
        if number == value:
            return name
    return "-" if value == 0 else str(value)


def modality(value: ModalityLike) -> Modality:
    """`"image"` (or the enum value) to the wire value."""
    return _lookup(MODALITY_NAMES, "modality", value)


def purpose(value: PurposeLike) -> Purpose:
    """`"text_retrieval"` (or the enum value) to the wire value."""
    return _lookup(PURPOSE_NAMES, "purpose", value)


def metric(value: MetricLike) -> Metric:
    """`"cosine"`, `"ip"` or `"l2"` (or the enum value) to the wire value."""
    return _lookup(METRIC_NAMES, "metric", value, _METRIC_ALIASES)


def dtype(value: DtypeLike) -> Dtype:
    """`"f32"`, `"f16"`, `"bf16"` or `"i8"` (or the enum value) to the wire value."""
    return _lookup(DTYPE_NAMES, "dtype", value)


def stored_dtype(value: StoredDtypeLike) -> StoredDtype:
    """`"f16"` or `"f32"` (or the enum value) to the wire value: the dtype of the stored vectors."""
    return _lookup(STORED_DTYPE_NAMES, "stored dtype", value)


def modality_name(value: int) -> str:
    return _name(MODALITY_NAMES, value)


def purpose_name(value: int) -> str:
    return _name(PURPOSE_NAMES, value)


def metric_name(value: int) -> str:
    return _name(METRIC_NAMES, value)


def dtype_name(value: int) -> str:
    return _name(DTYPE_NAMES, value)


def stored_dtype_name(value: int) -> str:
    return _name(STORED_DTYPE_NAMES, value)


def embedding_type_name(value: int) -> str:
    """`EMBEDDING_TYPE_AUDIO_VIDEO_COMBINED` as `audio_video_combined`."""
    if value == common_pb2.EMBEDDING_TYPE_UNSPECIFIED:
        return "-"
    try:
        return (
            common_pb2.EmbeddingType.Name(common_pb2.EmbeddingType.ValueType(value))
            .removeprefix("EMBEDDING_TYPE_")
            .lower()
        )
    except ValueError:
        return str(value)
