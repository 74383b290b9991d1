"""The values that cross a collection's boundary: records in, stored items and hits out, queries.

Plain frozen dataclasses, converted to and from protobuf messages by the gRPC layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from onespace.models import Modality

__all__ = [
    "MODALITY_CODES",
    "Filter",
    "Hit",
    "Query",
    "Record",
    "StoredItem",
    "modality_code",
    "modality_from_code",
]

# Row-wise modality codes (a small int per row keeps modality filters vectorised); 0 = none.
MODALITY_CODES: tuple[Modality | None, ...] = (None, *Modality)


def modality_code(modality: Modality | None) -> int:
    return MODALITY_CODES.index(modality)


def modality_from_code(code: int) -> Modality | None:
    return MODALITY_CODES[code]


@dataclass(frozen=True)
class Record:
    """One item to store. `modality` is None for items stored from raw vectors."""

    id: str
    vector: npt.NDArray[np.float32]
    modality: Modality | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredItem:
    """An item as read back; `vector` only when asked for."""

    id: str
    modality: Modality | None
    metadata: dict[str, str]
    vector: npt.NDArray[np.float32] | None = None


@dataclass(frozen=True)
class Filter:
    """All conditions must hold: modality in `modalities` (empty: any), every metadata pair equal."""

    modalities: frozenset[Modality] = frozenset()
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not self.modalities and not self.metadata


@dataclass(frozen=True)
class Query:
    """A nearest-neighbour query.

    `vector` is as long as the stored dimension or as the rank `dimension`; `dimension` None
    ranks at the stored dimension.
    """

    vector: npt.NDArray[np.float32]
    k: int
    dimension: int | None = None
    filter: Filter = field(default_factory=Filter)
    include_vectors: bool = False


@dataclass(frozen=True)
class Hit:
    """One result; `score` is higher-is-closer (cosine similarity, dot product or -squared L2)."""

    id: str
    score: float
    modality: Modality | None
    metadata: dict[str, str]
    vector: npt.NDArray[np.float32] | None = None
