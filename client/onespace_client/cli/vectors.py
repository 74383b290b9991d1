"""Reading a query vector from a file for `onespace search --vector-file`, without numpy.

`.npy` (float16/32/64, either byte order, one row), `.json` (a list of numbers) or plain text
(numbers separated by spaces, commas or newlines). The client stays free of numpy; a .npy
header is a Python literal and the payload a packed array, both in the stdlib's reach.
"""

from __future__ import annotations

import ast
import json
import re
import struct
from pathlib import Path

__all__ = ["load_vector", "parse_npy"]

_NPY_MAGIC = b"\x93NUMPY"
_NPY_TYPES = {"f2": "e", "f4": "f", "f8": "d"}


def parse_npy(data: bytes) -> list[float]:
    """The values of a one-row float .npy file; ValueError says what is not supported."""
    if not data.startswith(_NPY_MAGIC) or len(data) < 10:
        raise ValueError("not a .npy file (bad magic)")
    major = data[6]
    if major == 1:
        (header_len,), start = struct.unpack_from("<H", data, 8), 10
    elif major in (2, 3):
        (header_len,), start = struct.unpack_from("<I", data, 8), 12
    else:
        raise ValueError(f"unsupported .npy version {major}")
    try:
        header = ast.literal_eval(data[start : start + header_len].decode("latin1"))
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"bad .npy header: {exc}") from None
    if not isinstance(header, dict):
        raise ValueError("bad .npy header: not a dict")
    descr, shape = str(header.get("descr", "")), tuple(header.get("shape", ()))
    order, kind = (descr[0], descr[1:]) if descr[:1] in "<>|=" and descr else ("=", descr)
    if kind not in _NPY_TYPES:
        raise ValueError(f"unsupported .npy dtype {descr!r}; expected float16, float32 or float64")
    if len(shape) == 2 and 1 in shape:
        shape = (shape[0] * shape[1],)
    if len(shape) != 1:
        raise ValueError(f"expected one vector, got an array of shape {shape}")
    (count,) = shape
    byte_order = ">" if order == ">" else "<" if order == "<" else "="
    fmt = f"{byte_order}{count}{_NPY_TYPES[kind]}"
    payload = data[start + header_len :]
    if len(payload) < struct.calcsize(fmt):
        raise ValueError("truncated .npy payload")
    return list(struct.unpack_from(fmt, payload))


def load_vector(path: str | Path) -> list[float]:
    """A vector from `.npy`, `.json` or whitespace/comma separated text; ValueError if malformed."""
    file = Path(path)
    data = file.read_bytes()
    if file.suffix.lower() == ".npy":
        values = parse_npy(data)
    elif file.suffix.lower() == ".json":
        parsed = json.loads(data)
        if isinstance(parsed, list) and len(parsed) == 1 and isinstance(parsed[0], list):
            parsed = parsed[0]
        if not isinstance(parsed, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in parsed
        ):
            raise ValueError(f"{file}: expected a JSON list of numbers")
        values = [float(v) for v in parsed]
    else:
        tokens = [t for t in re.split(r"[\s,]+", data.decode("utf-8")) if t]
        try:
            values = [float(t) for t in tokens]
        except ValueError as exc:
            raise ValueError(f"{file}: {exc}") from None
    if not values:
        raise ValueError(f"{file}: empty vector")
    return values
