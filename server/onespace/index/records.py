"""The values that cross a collection's boundary: records in, stored items and hits out, queries.

Plain frozen dataclasses, converted to and from protobuf messages by the gRPC layer.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from onespace.models import Modality

__all__ = [
    "MODALITY_CODES",
    "Condition",
    "Filter",
    "Hit",
    "Query",
    "Record",
    "StoredItem",
    "Test",
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


class Test(enum.Enum):
    """What a `Condition` asks of one metadata key."""

    IN = "in"  # the key is present and its value is one of `values` (equality: one value)
    NOT_IN = "not_in"  # the key is absent, or its value is none of `values` (not-equal: one value)
    RANGE = "range"  # the key's value is a number (as text) within the bounds


@dataclass(frozen=True)
class Condition:
    """One test on one metadata key. Values are strings; a range compares the values that parse
    as finite numbers (`float(value)`) and never matches the others."""

    key: str
    test: Test
    values: tuple[str, ...] = ()
    low: float = -math.inf
    high: float = math.inf
    low_inclusive: bool = True
    high_inclusive: bool = True


@dataclass(frozen=True)
class Filter:
    """All conditions must hold (AND): modality in `modalities` (empty: any), every `metadata`
    pair equal, every condition true."""

    modalities: frozenset[Modality] = frozenset()
    metadata: Mapping[str, str] = field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.modalities and not self.metadata and not self.conditions

    @property
    def all_conditions(self) -> tuple[Condition, ...]:
        """`metadata` pairs as IN conditions, followed by `conditions`."""
        pairs = tuple(Condition(k, Test.IN, (v,)) for k, v in sorted(self.metadata.items()))
        return pairs + self.conditions


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


class Hit(NamedTuple):
    """One result; `score` is higher-is-closer (cosine similarity, dot product or -squared L2).
    A named tuple: a search builds one per hit, and a tuple is built ~2.5x faster than a frozen
    dataclass."""

    id: str
    score: float
    modality: Modality | None
    metadata: dict[str, str]
    vector: npt.NDArray[np.float32] | None = None
