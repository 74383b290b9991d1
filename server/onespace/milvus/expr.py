"""Milvus boolean expressions built from onespace filters and ids, every value escaped.

Text from callers (ids, metadata values) only ever appears inside a double-quoted string
literal, with the characters that could end or break it escaped (`\\`, `"`, newline, carriage
return): the escapes both Milvus's grammar (Plan.g4, read with Go's `strconv.Unquote`) and
milvus-lite's tokenizer read back to the same character. Metadata keys never appear as text at
all: they are hex-encoded (`rows.key_code`), so a key cannot reach the grammar. Numbers are
Python's `repr` of a finite float, which both parsers read exactly.

How each part of a `records.Filter` maps (field layout: `layout`):

    modalities {m1, m2}       modality in [c1, c2]
    key in {v1, v2}           array_contains_any(tags, ["<hex key>=v1", "<hex key>=v2"])
    key not in {v1}           not array_contains_any(tags, ["<hex key>=v1"])   (absent key: true)
    low <= key < high         nums["<hex key>"] >= low and nums["<hex key>"] < high
                              (a missing key or a non-numeric value is not in `nums`: false)

The parts are joined with `and`, each in parentheses; an empty filter is the empty expression.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from onespace.index.records import Condition, Filter, Test, modality_code
from onespace.milvus import layout
from onespace.milvus.rows import key_code, tag

__all__ = ["filter_expr", "ids_after", "ids_expr", "quote"]

_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


def quote(text: str) -> str:
    """`text` as a double-quoted Milvus string literal."""
    return '"' + text.translate(_ESCAPES) + '"'


def _strings(values: Iterable[str]) -> str:
    return "[" + ", ".join(quote(v) for v in values) + "]"


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return repr(float(value))


def ids_expr(ids: Iterable[str]) -> str:
    """Rows whose primary key is one of `ids`."""
    return f"{layout.ID} in {_strings(ids)}"


def ids_after(last: str) -> str:
    """Rows whose primary key sorts after `last` (a scan's cursor)."""
    return f"{layout.ID} > {quote(last)}"


def filter_expr(flt: Filter) -> str:
    """The expression selecting what `flt` selects; "" for an empty filter."""
    parts: list[str] = []
    if flt.modalities:
        codes = sorted(modality_code(m) for m in flt.modalities)
        parts.append(f"{layout.MODALITY} in [{', '.join(map(str, codes))}]")
    parts.extend(_condition(c) for c in flt.all_conditions)
    return " and ".join(f"({p})" for p in parts)


def _condition(c: Condition) -> str:
    code = key_code(c.key)
    if c.test is Test.RANGE:
        path = f'{layout.NUMS}["{code}"]'
        bounds = []
        if c.low != -math.inf:
            bounds.append(f"{path} {'>=' if c.low_inclusive else '>'} {_number(c.low)}")
        if c.high != math.inf:
            bounds.append(f"{path} {'<=' if c.high_inclusive else '<'} {_number(c.high)}")
        return " and ".join(bounds)
    tags = f"array_contains_any({layout.TAGS}, {_strings(tag(code, v) for v in c.values)})"
    return f"not {tags}" if c.test is Test.NOT_IN else tags
