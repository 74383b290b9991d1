"""A collection's configuration: stored dimension, Matryoshka index prefix, metric, dtype, HNSW.

`CollectionConfig.validated()` is the one place that fills defaults and refuses bad values, so a
collection, once built, can trust its config. The JSON form is what `config.json` holds on disk.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace
from typing import Any

from onespace.errors import InvalidArgument

__all__ = [
    "DEFAULT_MAX_UNINDEXED",
    "MAX_DIMENSION",
    "MAX_UNINDEXED_LIMIT",
    "TENANT_PATTERN",
    "CollectionConfig",
    "HnswParams",
    "IndexDtype",
    "Metric",
    "StoredDtype",
    "Tuning",
    "check_collection_name",
    "check_stored_name",
    "config_from_json",
    "config_to_json",
]

MAX_DIMENSION = 16_384
MAX_CONNECTIVITY = 256
MAX_EXPANSION = 4096
MAX_RERANK_FACTOR = 100
DEFAULT_MAX_UNINDEXED = 16_384  # committed rows that may wait for HNSW when a config leaves it 0 ...
_UNINDEXED_BUDGET_DIMENSION = 1024  # ... at an index dimension of 1024 or more (more rows below it)
_ROW_COST_DIMENSIONS = 200  # ... a scanned row costing about as much as this many dimensions more
_UNINDEXED_MAX_SCALE = 4  # ... up to 4x as many rows
MAX_UNINDEXED_LIMIT = 1 << 20  # the most a config may allow: every search scans them
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # tenant ids (onespace.auth.tenancy)


class Metric(enum.Enum):
    """How closeness is scored; every score is "higher is closer"."""

    COSINE = "cos"
    INNER_PRODUCT = "ip"
    L2 = "l2sq"


class IndexDtype(enum.Enum):
    """Scalar type of the HNSW index over the prefixes (`StoredDtype` is the full vectors')."""

    F32 = "f32"
    F16 = "f16"
    BF16 = "bf16"
    I8 = "i8"


class StoredDtype(enum.Enum):
    """Scalar type of the full vectors on disk: f16 halves the bytes at ~1e-3 relative error."""

    F16 = "f16"
    F32 = "f32"

    @property
    def numpy(self) -> str:
        return "<f2" if self is StoredDtype.F16 else "<f4"


@dataclass(frozen=True)
class HnswParams:
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 64


@dataclass(frozen=True)
class CollectionConfig:
    name: str
    model: str
    dimension: int
    index_dimension: int = 0
    metric: Metric = Metric.COSINE
    dtype: IndexDtype = IndexDtype.F16
    hnsw: HnswParams = field(default_factory=HnswParams)
    rerank_factor: int = 4
    stored_dtype: StoredDtype = StoredDtype.F16
    max_unindexed_rows: int = 0  # 0: `unindexed_limit`'s default (kept 0, so a backend can tell it was left)

    @property
    def unindexed_limit(self) -> int:
        """How many committed rows writes may leave for the background indexer before they wait
        for it: a bulk load raises it to ack at storage speed, paying with scans of the tail in
        every search until the indexer catches up. Searches scan the tail at the index dimension
        at most (`index.search`), so by default the bound is the tail that costs a search what
        16,384 rows of 1024 dimensions do. A scanned row costs about as much as 200 dimensions
        more (the kernel's per-row work, measured), so that is 16,384 x 1224 / (d + 200) rows
        for an index dimension d, in steps of 1,024, between 16,384 and 65,536: 43,008 at 256-d,
        27,648 at 512-d, 16,384 from 1024-d up."""
        if self.max_unindexed_rows:
            return self.max_unindexed_rows
        index_dimension = self.index_dimension or self.dimension
        budget = DEFAULT_MAX_UNINDEXED * (_UNINDEXED_BUDGET_DIMENSION + _ROW_COST_DIMENSIONS)
        rows = budget // (index_dimension + _ROW_COST_DIMENSIONS) // 1024 * 1024
        return min(_UNINDEXED_MAX_SCALE * DEFAULT_MAX_UNINDEXED, max(DEFAULT_MAX_UNINDEXED, rows))

    @property
    def shortlist_factor(self) -> int:
        """How many HNSW candidates per wanted hit: `rerank_factor` when the index is lossy (a
        shorter prefix, or a coarser scalar type than the stored vectors), else 1 — an index on
        the stored vectors at their own precision ranks exactly what the rerank would, and its
        recall is set by `hnsw.expansion_search`, not by the shortlist length."""
        exact_dtype = self.dtype is IndexDtype.F32 or (
            self.dtype is IndexDtype.F16 and self.stored_dtype is StoredDtype.F16
        )
        lossless = (self.index_dimension or self.dimension) == self.dimension and exact_dtype
        return 1 if lossless else self.rerank_factor

    def validated(self) -> CollectionConfig:
        """This config with defaults filled in (index_dimension 0 means the stored dimension).

        Raises InvalidArgument("config.<field>", reason) for the first bad field.
        """
        check_stored_name(self.name, field_name="config.name")
        if not isinstance(self.model, str):
            raise InvalidArgument("config.model", "must be a string")
        _check_int("config.dimension", self.dimension, 1, MAX_DIMENSION)
        _check_int("config.index_dimension", self.index_dimension, 0, None)
        index_dimension = self.index_dimension or self.dimension
        if index_dimension > self.dimension:
            raise InvalidArgument(
                "config.index_dimension",
                f"{index_dimension} is larger than the stored dimension {self.dimension}",
            )
        if not isinstance(self.metric, Metric):
            raise InvalidArgument("config.metric", f"{self.metric!r} is not a Metric")
        if not isinstance(self.dtype, IndexDtype):
            raise InvalidArgument("config.dtype", f"{self.dtype!r} is not an IndexDtype")
        if not isinstance(self.hnsw, HnswParams):
            raise InvalidArgument("config.hnsw", f"{self.hnsw!r} is not HnswParams")
        _check_int("config.hnsw.connectivity", self.hnsw.connectivity, 2, MAX_CONNECTIVITY)
        _check_int("config.hnsw.expansion_add", self.hnsw.expansion_add, 1, MAX_EXPANSION)
        _check_int("config.hnsw.expansion_search", self.hnsw.expansion_search, 1, MAX_EXPANSION)
        _check_int("config.rerank_factor", self.rerank_factor, 1, MAX_RERANK_FACTOR)
        if not isinstance(self.stored_dtype, StoredDtype):
            raise InvalidArgument("config.stored_dtype", f"{self.stored_dtype!r} is not a StoredDtype")
        _check_int("config.max_unindexed_rows", self.max_unindexed_rows, 0, MAX_UNINDEXED_LIMIT)
        return replace(self, index_dimension=index_dimension)


@dataclass(frozen=True)
class Tuning:
    """A change to the settings a collection may change after creation (None: keep; 0: the
    default, as at creation). None of them touches the graph or the stored rows: expansion_search
    and rerank_factor set how far a search walks the graph and how many candidates it reranks,
    max_unindexed_rows how far writes may run ahead of the indexer. So a change applies to the
    next search or write without a rebuild, and the speed/recall trade-off can be tried out on
    the collection's own data (docs/architecture.md, "Tuning a prefix index")."""

    expansion_search: int | None = None
    rerank_factor: int | None = None
    max_unindexed_rows: int | None = None

    def applied_to(self, config: CollectionConfig) -> CollectionConfig:
        """`config` with this change, validated; InvalidArgument names the request's field."""
        defaults = CollectionConfig(name=config.name, model=config.model, dimension=config.dimension)
        expansion_search = _tuned(
            self.expansion_search, config.hnsw.expansion_search, defaults.hnsw.expansion_search
        )
        rerank_factor = _tuned(self.rerank_factor, config.rerank_factor, defaults.rerank_factor)
        max_unindexed = _tuned(
            self.max_unindexed_rows, config.max_unindexed_rows, defaults.max_unindexed_rows
        )
        _check_int("expansion_search", expansion_search, 1, MAX_EXPANSION)
        _check_int("rerank_factor", rerank_factor, 1, MAX_RERANK_FACTOR)
        _check_int("max_unindexed_rows", max_unindexed, 0, MAX_UNINDEXED_LIMIT)
        return replace(
            config,
            hnsw=replace(config.hnsw, expansion_search=expansion_search),
            rerank_factor=rerank_factor,
            max_unindexed_rows=max_unindexed,
        ).validated()


def _tuned(change: int | None, current: int, default: int) -> int:
    if change is None:
        return current
    return change or default


def check_collection_name(name: object, *, field_name: str = "name") -> str:
    """Refuse names that are not `[A-Za-z0-9_.-]{1,64}`, and `.`/`..` (they are directory names)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgument(field_name, f"{name!r} must match [A-Za-z0-9_.-]{{1,64}}")
    if name in {".", ".."}:
        raise InvalidArgument(field_name, f"{name!r} is reserved")
    return name


def check_stored_name(name: object, *, field_name: str = "name") -> str:
    """A name as stored: a collection name, optionally behind its tenant's `<tenant>~` prefix
    (see `onespace.auth.tenancy`; callers' names go through `check_collection_name`)."""
    if not isinstance(name, str):
        raise InvalidArgument(field_name, f"{name!r} is not a string")
    tenant, sep, local = name.rpartition("~")
    if sep and not TENANT_PATTERN.fullmatch(tenant):
        raise InvalidArgument(field_name, f"{name!r} has a malformed tenant prefix")
    check_collection_name(local, field_name=field_name)
    return name


def _check_int(field_name: str, value: object, low: int, high: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(field_name, f"{value!r} is not an integer")
    if value < low:
        raise InvalidArgument(field_name, f"{value} is smaller than the minimum {low}")
    if high is not None and value > high:
        raise InvalidArgument(field_name, f"{value} is larger than the maximum {high}")


def config_to_json(config: CollectionConfig) -> dict[str, Any]:
    return {
        "name": config.name,
        "model": config.model,
        "dimension": config.dimension,
        "index_dimension": config.index_dimension,
        "metric": config.metric.value,
        "dtype": config.dtype.value,
        "hnsw": {
            "connectivity": config.hnsw.connectivity,
            "expansion_add": config.hnsw.expansion_add,
            "expansion_search": config.hnsw.expansion_search,
        },
        "rerank_factor": config.rerank_factor,
        "stored_dtype": config.stored_dtype.value,
        "max_unindexed_rows": config.max_unindexed_rows,
    }


def config_from_json(data: Any) -> CollectionConfig:
    """Parse `config.json`; malformed content raises InvalidArgument naming the field."""
    if not isinstance(data, dict):
        raise InvalidArgument("config", "is not a JSON object")
    try:
        hnsw = data.get("hnsw", {})
        config = CollectionConfig(
            name=data["name"],
            model=data["model"],
            dimension=data["dimension"],
            index_dimension=data.get("index_dimension", 0),
            metric=Metric(data.get("metric", Metric.COSINE.value)),
            dtype=IndexDtype(data.get("dtype", IndexDtype.F16.value)),
            hnsw=HnswParams(**hnsw),
            rerank_factor=data.get("rerank_factor", 4),
            stored_dtype=StoredDtype(data.get("stored_dtype", StoredDtype.F16.value)),
            max_unindexed_rows=data.get("max_unindexed_rows", 0),  # absent before it existed
        )
    except KeyError as exc:
        raise InvalidArgument(f"config.{exc.args[0]}", "is missing") from exc
    except (TypeError, ValueError) as exc:
        raise InvalidArgument("config", f"is malformed: {exc}") from exc
    return config.validated()
