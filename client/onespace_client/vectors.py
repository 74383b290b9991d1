"""Vectors on the wire: the client sends and asks for packed little-endian float32 bytes.

A `repeated float` field costs a Python float object per component on each side (about 60 µs
for a 1024-d vector in the profile); packed bytes cost one copy. Responses therefore carry
vectors in `f32` / `vector_f32`, and `vector(message)` turns any vector-carrying message back into
an array: a numpy array when numpy is installed (the client does not require it), else an
`array.array("f")`. It reads either wire form, so it also works on responses from other clients.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from onespace_client.v1 import common_pb2, data_pb2, search_pb2

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray: TypeAlias = "npt.NDArray[np.float32] | array[float]"
else:
    FloatArray = Any

__all__ = ["FloatArray", "expand", "pack", "vector"]

VectorMessage: TypeAlias = (
    common_pb2.Embedding | common_pb2.Vector | search_pb2.SearchHit | data_pb2.StoredItem
)
_BIG_ENDIAN = sys.byteorder == "big"


def pack(values: Sequence[float] | Any) -> bytes:
    """`values` (a sequence of numbers or a numpy array) as little-endian float32 bytes."""
    astype = getattr(values, "astype", None)
    if astype is not None:  # numpy: no per-component Python work
        return bytes(astype("<f4").tobytes())
    packed = array("f", values)
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def _unpack_array(data: bytes) -> array[float]:
    out = array("f")
    out.frombytes(data)
    if _BIG_ENDIAN:
        out.byteswap()
    return out


def _unpack(data: bytes) -> FloatArray:
    try:
        import numpy as np
    except ImportError:
        return _unpack_array(data)
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def vector(message: VectorMessage) -> FloatArray:
    """The vector a response message carries, whichever wire form it came in."""
    if isinstance(message, (common_pb2.Embedding, common_pb2.Vector)):
        packed, floats = message.f32, message.values
    else:
        packed, floats = message.vector_f32, message.vector
    if packed:
        return _unpack(packed)
    try:
        import numpy as np
    except ImportError:
        return array("f", floats)
    return np.asarray(floats, dtype=np.float32)


def expand(message: VectorMessage) -> None:
    """Move a packed vector into the readable float field, in place (for printing and JSON).

    Without numpy, whether or not it is installed: the CLI calls this and must not pay its import.
    """
    if isinstance(message, (common_pb2.Embedding, common_pb2.Vector)):
        if message.f32:
            message.values.extend(_unpack_array(message.f32))
            message.f32 = b""
    elif message.vector_f32:
        message.vector.extend(_unpack_array(message.vector_f32))
        message.vector_f32 = b""
