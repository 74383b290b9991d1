"""Vectors for the emulator: the local featurizer (so both paths agree) and the encodings the
real models offer besides float (Titan binary; Cohere int8, uint8, binary, ubinary)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onespace.content import Content
from onespace.emulator.errors import EmulatedError
from onespace.errors import InvalidArgument
from onespace.models import ModelSpec
from onespace.providers.base import ProviderResult, Vector
from onespace.providers.local import embed_content

__all__ = ["cohere_types", "embed_all", "mean_unit", "titan_binary", "to_json"]


def embed_all(contents: Sequence[Content], dimension: int, spec: ModelSpec) -> list[ProviderResult]:
    """Embed every input (blocking: run it in a thread). A refused input is a ValidationException."""
    results = []
    for content in contents:
        try:
            results.append(embed_content(content, dimension, spec))
        except InvalidArgument as exc:
            raise EmulatedError("ValidationException", f"Invalid input: {exc.reason}") from exc
    return results


def mean_unit(vectors: Sequence[Vector]) -> Vector:
    """Average then renormalise: how a text + image pair becomes one vector."""
    mean = np.stack(vectors).astype(np.float64).sum(axis=0)
    norm = float(np.linalg.norm(mean))
    return np.asarray(mean / norm if norm > 0 else mean, dtype=np.float32)


def to_json(vector: Vector) -> list[float]:
    """float32 → JSON numbers that parse back to the same float32 values."""
    return [float(x) for x in vector.astype(np.float64)]


def titan_binary(vector: Vector) -> list[int]:
    """Titan V2 `binary`: one 0/1 per dimension, 1 where the component is non-negative."""
    return [int(b) for b in (vector >= 0)]


def _int8(vector: Vector) -> list[int]:
    scale = float(np.max(np.abs(vector))) or 1.0
    return [int(x) for x in np.clip(np.rint(vector / scale * 127.0), -128, 127)]


def cohere_types(vector: Vector, kind: str) -> list[float] | list[int]:
    """One vector in one of Cohere's `embedding_types` (binary kinds pack 8 dimensions a byte)."""
    if kind == "float":
        return to_json(vector)
    if kind == "int8":
        return _int8(vector)
    if kind == "uint8":
        return [x + 128 for x in _int8(vector)]
    packed = np.packbits(vector >= 0)
    if kind == "ubinary":
        return [int(x) for x in packed]
    if kind == "binary":
        return [int(x) for x in packed.astype(np.int16) - 128]
    raise ValueError(f"unknown embedding type {kind!r}")
