"""What one model family must say: which inputs it can express, how inputs share a call, the
request body of a call and how its response becomes vectors.

Families are pure (no I/O): the provider does the calling, retrying and error mapping.
A response that does not have the expected shape raises `BadResponse` (→ Internal).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

from onespace.content import EmbeddingType
from onespace.models import Modality, ModelSpec
from onespace.providers.base import EmbedInput, ProviderEmbedding, Vector

__all__ = ["BadResponse", "Family", "field", "modality_type", "vector"]


class BadResponse(ValueError):
    """The response body is not what the model's documented schema promises."""


class Family(abc.ABC):
    """One model family (Nova, Titan, Cohere) and the specs it serves."""

    specs: tuple[ModelSpec, ...] = ()

    def check(self, item: EmbedInput, spec: ModelSpec) -> None:  # noqa: B027 - optional hook
        """Raise InvalidArgument for an input `spec` accepts on paper but the family cannot send."""

    def group(self, items: Sequence[EmbedInput], spec: ModelSpec) -> list[list[int]]:
        """Indices of `items` per call; by default one input per call."""
        return [[i] for i in range(len(items))]

    @abc.abstractmethod
    def request(self, items: Sequence[EmbedInput], spec: ModelSpec) -> dict[str, Any]:
        """The JSON body of one call carrying `items`."""

    @abc.abstractmethod
    def parse(
        self, payload: Any, items: Sequence[EmbedInput], spec: ModelSpec
    ) -> list[tuple[ProviderEmbedding, ...]]:
        """The embeddings of each of `items`, in order, from one response body."""


def field(payload: Any, key: str) -> Any:
    if not isinstance(payload, dict) or key not in payload:
        raise BadResponse(f"missing {key!r}")
    return payload[key]


def vector(value: Any, dimension: int, where: str) -> Vector:
    """A float32 vector of exactly `dimension` finite numbers.

    Checked with numpy, not per element in Python (that loop was ~150 µs of a 1024-d response):
    numpy infers one dtype for the whole list, so strings, nulls, objects and nested lists give a
    non-numeric (or 2-D) array and are refused; an all-boolean list is refused too, while a
    boolean among numbers counts as 0/1 (JSON decoders give no cheaper way to tell them apart).
    Values beyond float32's range become inf and are refused with the non-finite ones.
    """
    if not isinstance(value, list):
        raise BadResponse(f"{where} is not a list of numbers")
    if len(value) != dimension:
        raise BadResponse(f"{where} has {len(value)} dimensions, expected {dimension}")
    try:
        array = np.array(value)
    except (TypeError, ValueError, OverflowError):
        raise BadResponse(f"{where} is not a list of numbers") from None
    if array.ndim != 1 or array.dtype.kind not in "fiu":
        raise BadResponse(f"{where} is not a list of numbers")
    with np.errstate(over="ignore", invalid="ignore"):
        out = array.astype(np.float32)
    if not np.isfinite(out).all():
        raise BadResponse(f"{where} contains non-finite values")
    return out


def modality_type(modality: Modality) -> EmbeddingType:
    return {
        Modality.TEXT: EmbeddingType.TEXT,
        Modality.IMAGE: EmbeddingType.IMAGE,
        Modality.AUDIO: EmbeddingType.AUDIO,
        Modality.VIDEO: EmbeddingType.VIDEO,
    }[modality]
