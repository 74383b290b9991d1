"""Input checks for records and queries, done before a collection touches any state.

Every refusal is InvalidArgument naming the field (`id`, `vector`, `metadata`, `k`, `dimension`,
`filter.*`) and the reason. usearch accepts NaN and all-zero vectors silently, so this is the only
line of defence against them.

Vector magnitudes are checked once here, for stored and query vectors alike, in float64 (so the
check itself cannot overflow or warn). Every score is float32, so a vector's norm is at most
`MAX_NORM` (sqrt(float32 max) / 2, ~9.2e18): then |q.v| <= |q||v| and |q - v|^2 <= (|q| + |v|)^2
both fit float32 for any two accepted vectors, and a cosine norm never overflows. Without it,
finite values such as 1e38 scored 0.0 (cosine) or +-inf (inner product, L2) against everything.
A vector that gets normalised (cosine, shorter prefixes, an i8 index) needs a squared norm float32
can represent (>= its smallest normal), else it normalises to zeros and has no direction; and
where vectors are scored or indexed unnormalised as f16, each value must fit f16 (+-65504).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from onespace.errors import InvalidArgument
from onespace.index.config import CollectionConfig, IndexDtype, StoredDtype
from onespace.index.matryoshka import renormalises
from onespace.index.records import Condition, Filter, Query, Record, Test, modality_code
from onespace.index.writes import PreparedRecord, UpsertOp
from onespace.models import Modality

__all__ = [
    "MAX_ID_BYTES",
    "MAX_METADATA_KEYS",
    "MAX_METADATA_KEY_BYTES",
    "MAX_METADATA_VALUE_BYTES",
    "CheckedQuery",
    "check_filter",
    "check_id",
    "check_metadata",
    "check_query",
    "check_record",
    "check_vector",
    "index_normalises",
    "prepare_upsert",
]

MAX_ID_BYTES = 256
MAX_METADATA_KEYS = 64
MAX_METADATA_KEY_BYTES = 128
MAX_METADATA_VALUE_BYTES = 4096


def _utf8_size(field_name: str, what: str, text: object) -> int:
    if not isinstance(text, str):
        raise InvalidArgument(field_name, f"{what} must be a string, got {type(text).__name__}")
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidArgument(field_name, f"{what} is not valid UTF-8") from exc


def check_id(item_id: object) -> str:
    size = _utf8_size("id", "the id", item_id)
    if not 1 <= size <= MAX_ID_BYTES:
        raise InvalidArgument("id", f"must be 1..{MAX_ID_BYTES} bytes of UTF-8, got {size}")
    assert isinstance(item_id, str)
    return item_id


def check_metadata(metadata: object, field_name: str = "metadata") -> dict[str, str]:
    """A copy of `metadata` as a plain dict, within the key count and size limits."""
    if not isinstance(metadata, Mapping):
        raise InvalidArgument(field_name, f"must be a mapping of strings, got {type(metadata).__name__}")
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidArgument(field_name, f"has {len(metadata)} keys; at most {MAX_METADATA_KEYS}")
    out: dict[str, str] = {}
    for key, value in metadata.items():
        key_size = _utf8_size(field_name, "a key", key)
        if not 1 <= key_size <= MAX_METADATA_KEY_BYTES:
            raise InvalidArgument(
                field_name, f"key {key!r} is {key_size} bytes; keys must be 1..{MAX_METADATA_KEY_BYTES}"
            )
        value_size = _utf8_size(field_name, f"the value of {key!r}", value)
        if value_size > MAX_METADATA_VALUE_BYTES:
            raise InvalidArgument(
                field_name,
                f"the value of {key!r} is {value_size} bytes; at most {MAX_METADATA_VALUE_BYTES}",
            )
        out[key] = value
    return out


_F16_MAX = float(np.finfo(np.float16).max)
_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).tiny)  # the smallest normal float32
MAX_SQUARED_NORM = _F32_MAX / 4
MAX_NORM = math.sqrt(MAX_SQUARED_NORM)


_F16_MAX_SQUARED = _F16_MAX * _F16_MAX


def _squared_norm(wide: npt.NDArray[np.float64]) -> float:
    """|v|^2 of a float64 copy of float32 values: no float32 value can overflow it, so it is
    finite exactly when every value is."""
    return float(np.dot(wide, wide))


@dataclass(frozen=True, slots=True)
class _Measured:
    """A vector and what every later check needs of it, computed in one float64 pass."""

    vector: npt.NDArray[np.float32]
    wide: npt.NDArray[np.float64]
    squared: float  # |vector|^2


def _as_vector(raw: object, field_name: str) -> _Measured:
    """`raw` as a 1-D float32 array of finite values whose norm keeps every score finite."""
    if isinstance(raw, np.ndarray) and raw.dtype == np.float32:
        vector = raw  # the usual case (vectors from the wire arrive as float32 arrays)
    else:
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 -> inf, refused below
                vector = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidArgument(field_name, f"is not an array of numbers: {exc}") from exc
    if vector.ndim != 1:
        raise InvalidArgument(field_name, f"must be one-dimensional, got shape {vector.shape}")
    wide = vector.astype(np.float64)
    squared = _squared_norm(wide)
    if not math.isfinite(squared):
        at = int(np.argmin(np.isfinite(vector)))
        raise InvalidArgument(
            field_name, f"contains NaN or infinity (or a value beyond float32): [{at}] is {vector[at]}"
        )
    if squared > MAX_SQUARED_NORM:
        raise InvalidArgument(
            field_name,
            f"values too large: squared norm {squared:.3g} overflows float32 scores "
            f"(the norm must be at most {MAX_NORM:.2g}); scale the vector down",
        )
    return _Measured(vector, wide, squared)


def _check_direction(measured: _Measured, d: int, note: str = "") -> None:
    """Refuse a `d`-prefix that is to be normalised but has no direction in float32."""
    whole = d == len(measured.vector)
    squared = measured.squared if whole else _squared_norm(measured.wide[:d])
    if squared == 0.0:
        what = "is" if whole else f"its first {d} components{note} are"
        raise InvalidArgument("vector", f"{what} all zeros, which has no direction")
    if squared < _F32_TINY:
        whose = "the vector" if whole else f"its first {d} components{note}"
        raise InvalidArgument(
            "vector",
            f"values too small: the squared norm of {whose} is {squared:.3g}, below float32's smallest "
            f"normal ({_F32_TINY:.3g}), so it cannot be normalised; scale the vector up",
        )


def _check_f16(measured: _Measured, config: CollectionConfig, raw_in_index: bool) -> None:
    """Values beyond ±65504 become infinity where they are held as f16: the stored vectors
    (stored dtype f16) and an f16 index that holds them unnormalised (`raw_in_index`)."""
    if measured.squared <= _F16_MAX_SQUARED:
        return  # no value can exceed the norm
    places = []
    if config.stored_dtype is StoredDtype.F16:
        places.append(("stored vectors", "stored dtype f32"))
    if raw_in_index and config.dtype is IndexDtype.F16:
        places.append((f"index (dtype f16, unnormalised for {config.metric.name})", "dtype f32 or bf16"))
    if not places:
        return
    largest = float(np.abs(measured.vector).max())
    if largest > _F16_MAX:
        raise InvalidArgument(
            "vector",
            f"a value of magnitude {largest:.3g} exceeds the f16 range (±65504) of this collection's "
            f"{' and '.join(p for p, _ in places)}; create the collection with "
            f"{' and '.join(f for _, f in places)} to use it",
        )


def index_normalises(config: CollectionConfig) -> bool:
    """Whether the HNSW index holds unit vectors (so a zero index prefix cannot be indexed)."""
    if config.dtype is IndexDtype.I8:
        return True
    return renormalises(config.index_dimension, config.dimension, config.metric)


def check_vector(raw: object, config: CollectionConfig) -> npt.NDArray[np.float32]:
    """A stored vector: float32, the stored dimension long, finite, with a usable index prefix."""
    measured = _as_vector(raw, "vector")
    if len(measured.vector) != config.dimension:
        raise InvalidArgument(
            "vector",
            f"length {len(measured.vector)} does not match the collection's dimension {config.dimension}",
        )
    normalised = index_normalises(config)
    if normalised:
        _check_direction(measured, config.index_dimension, " (the indexed prefix)")
    _check_f16(measured, config, raw_in_index=not normalised)
    return np.array(measured.vector, dtype=np.float32, copy=True)


def prepare_upsert(records: Sequence[Record], config: CollectionConfig, field: str = "items") -> UpsertOp:
    """Check every record into an upsert operation (InvalidArgument under `field`, e.g.
    `items[3].vector`; a single record under another field name is just `item.vector`); the same
    for every backend, and nothing is written."""
    prepared: dict[str, PreparedRecord] = {}
    for i, record in enumerate(records):
        try:
            vector, meta = check_record(record, config)
        except InvalidArgument as exc:
            where = f"{field}[{i}]" if len(records) > 1 or field == "items" else field
            raise exc.at(where) from None
        prepared.pop(record.id, None)  # a repeated id keeps its last record, in that position
        prepared[record.id] = PreparedRecord(record.id, vector, modality_code(record.modality), meta)
    return UpsertOp(tuple(prepared.values()), len(records))


def check_record(record: Record, config: CollectionConfig) -> tuple[npt.NDArray[np.float32], dict[str, str]]:
    """Check one record; returns private copies of its vector (float32) and metadata."""
    if not isinstance(record, Record):
        raise InvalidArgument("", f"must be a Record, got {type(record).__name__}")
    check_id(record.id)
    if record.modality is not None and not isinstance(record.modality, Modality):
        raise InvalidArgument("modality", f"{record.modality!r} is not a Modality")
    metadata = check_metadata(record.metadata)
    return check_vector(record.vector, config), metadata


MAX_CONDITIONS = 16
MAX_CONDITION_VALUES = 1024


def check_filter(flt: object) -> Filter:
    if not isinstance(flt, Filter):
        raise InvalidArgument("filter", f"must be a Filter, got {type(flt).__name__}")
    for modality in flt.modalities:
        if not isinstance(modality, Modality):
            raise InvalidArgument("filter.modalities", f"{modality!r} is not a Modality")
    check_metadata(flt.metadata, "filter.metadata")
    if len(flt.conditions) > MAX_CONDITIONS:
        raise InvalidArgument("filter.conditions", f"has {len(flt.conditions)}; at most {MAX_CONDITIONS}")
    for i, condition in enumerate(flt.conditions):
        _check_condition(condition, f"filter.conditions[{i}]")
    return flt


def _check_condition(c: Condition, where: str) -> None:
    key_size = _utf8_size(f"{where}.key", "the key", c.key)
    if not 1 <= key_size <= MAX_METADATA_KEY_BYTES:
        raise InvalidArgument(f"{where}.key", f"must be 1..{MAX_METADATA_KEY_BYTES} bytes, got {key_size}")
    if c.test is Test.RANGE:
        if math.isnan(c.low) or math.isnan(c.high):
            raise InvalidArgument(f"{where}.range", "bounds must be numbers, not NaN")
        if c.low == -math.inf and c.high == math.inf:
            raise InvalidArgument(f"{where}.range", "set at least one bound")
        if c.low > c.high:
            raise InvalidArgument(
                f"{where}.range", f"the lower bound {c.low} is above the upper bound {c.high}"
            )
        return
    if not c.values:
        raise InvalidArgument(f"{where}.values", "must hold at least one value")
    if len(c.values) > MAX_CONDITION_VALUES:
        raise InvalidArgument(
            f"{where}.values", f"has {len(c.values)} values; at most {MAX_CONDITION_VALUES}"
        )
    for value in c.values:
        size = _utf8_size(f"{where}.values", "a value", value)
        if size > MAX_METADATA_VALUE_BYTES:
            raise InvalidArgument(
                f"{where}.values", f"a value is {size} bytes; at most {MAX_METADATA_VALUE_BYTES}"
            )


@dataclass(frozen=True)
class CheckedQuery:
    """A query that passed `check_query`: `vector` (stored or rank length) and rank `dimension`."""

    vector: npt.NDArray[np.float32]
    dimension: int
    k: int
    filter: Filter
    include_vectors: bool


def check_query(query: Query, config: CollectionConfig) -> CheckedQuery:
    k = query.k
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidArgument("k", f"must be a positive integer, got {k!r}")
    d = config.dimension if query.dimension is None else query.dimension
    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise InvalidArgument("dimension", f"must be a positive integer, got {d!r}")
    if d > config.dimension:
        raise InvalidArgument("dimension", f"{d} is larger than the stored dimension {config.dimension}")
    measured = _as_vector(query.vector, "vector")
    vector = measured.vector
    if len(vector) not in (config.dimension, d):
        expected = f"{config.dimension}" if d == config.dimension else f"{config.dimension} or {d}"
        raise InvalidArgument(
            "vector", f"length {len(vector)} does not match the collection's dimension {expected}"
        )
    if renormalises(d, config.dimension, config.metric):
        _check_direction(measured, d)
    else:  # scored (and searched in the index) as it is, cast to the collection's dtypes
        _check_f16(measured, config, raw_in_index=not index_normalises(config))
    flt = check_filter(query.filter)
    return CheckedQuery(
        vector=vector, dimension=d, k=k, filter=flt, include_vectors=bool(query.include_vectors)
    )
