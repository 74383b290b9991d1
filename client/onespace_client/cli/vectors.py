"""Reading query vectors from a file for `onespace search --vector-file` and `onespace
collections tune --queries`, without numpy.

One vector (`load_vector`): `.npy` (float16/32/64, either byte order, one row), `.json` (a list
of numbers) or plain text (numbers separated by spaces, commas or newlines). Many
(`load_vectors`): a 2-D `.npy`, a `.json` list of lists, or text with a vector a line. The
client stays free of numpy; a .npy header is a Python literal and the payload a packed array,
both in the stdlib's reach.
"""

from __future__ import annotations

import ast
import json
import re
import struct
from pathlib import Path

__all__ = ["load_vector", "load_vectors", "parse_npy"]

_NPY_MAGIC = b"\x93NUMPY"
_NPY_TYPES = {"f2": "e", "f4": "f", "f8": "d"}


def _npy(data: bytes) -> tuple[list[float], tuple[int, ...], bool]:
    """The values (flat, in storage order), shape and Fortran-order flag of a float .npy file;
    ValueError says what is not supported."""
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
    count = 1
    for n in shape:
        count *= int(n)
    byte_order = ">" if order == ">" else "<" if order == "<" else "="
    fmt = f"{byte_order}{count}{_NPY_TYPES[kind]}"
    payload = data[start + header_len :]
    if len(payload) < struct.calcsize(fmt):
        raise ValueError("truncated .npy payload")
    return list(struct.unpack_from(fmt, payload)), shape, bool(header.get("fortran_order"))


def parse_npy(data: bytes) -> list[float]:
    """The values of a one-row float .npy file; ValueError says what is not supported."""
    values, shape, _ = _npy(data)  # one row: the same values in either order
    if len(shape) == 2 and 1 in shape:
        shape = (shape[0] * shape[1],)
    if len(shape) != 1:
        raise ValueError(f"expected one vector, got an array of shape {shape}")
    return values


def load_vectors(path: str | Path) -> list[list[float]]:
    """Vectors, one per row: a 2-D (or 1-D) float `.npy`, a `.json` list of lists (or one list),
    or text with one vector a line (numbers separated by spaces or commas); ValueError if
    malformed or empty."""
    file = Path(path)
    data = file.read_bytes()
    rows: list[list[float]]
    if file.suffix.lower() == ".npy":
        values, shape, fortran = _npy(data)
        if fortran and len(shape) == 2 and min(shape) > 1:
            raise ValueError(f"{file}: a Fortran-ordered matrix; save it in C order (np.ascontiguousarray)")
        if len(shape) == 1:
            rows = [values]
        elif len(shape) == 2:
            width = int(shape[1])
            rows = [values[i : i + width] for i in range(0, len(values), width)] if width else []
        else:
            raise ValueError(f"{file}: expected one vector or a matrix of them, got shape {shape}")
    elif file.suffix.lower() == ".json":
        parsed = json.loads(data)
        if isinstance(parsed, list) and parsed and not isinstance(parsed[0], list):
            parsed = [parsed]
        if not isinstance(parsed, list) or not all(
            isinstance(row, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in row)
            for row in parsed
        ):
            raise ValueError(f"{file}: expected a JSON list of lists of numbers")
        rows = [[float(v) for v in row] for row in parsed]
    else:
        rows = []
        for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
            tokens = [t for t in re.split(r"[\s,]+", line) if t]
            try:
                if tokens:
                    rows.append([float(t) for t in tokens])
            except ValueError as exc:
                raise ValueError(f"{file}:{number}: {exc}") from None
    if not rows or not all(rows):
        raise ValueError(f"{file}: no vectors, or an empty one")
    return rows


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
