"""Metadata conditions for `search(..., conditions=[...])`, typed, and the CLI's `--where` syntax.

    from onespace_client import where

    await client.search(
        "photos",
        text="a cat",
        conditions=[
            where("lang").in_(["en", "fr"]),
            where("year").range(gte=2000, lt=2010),
            where("draft").not_equals("yes"),
        ],
    )

Every condition must hold (AND), together with `modalities=` and `metadata=`. Metadata values are
strings and compared exactly: `equals(2024)` means the text "2024". `not_equals` and `not_in`
also match items that lack the key. A range compares the values that read as finite numbers
("42", "-1.5e3") and never matches the others (nor items that lack the key).

Shape errors (no bound, gt together with gte, an empty list, a bare string for a list, a lower
bound above the upper one) raise ValueError or TypeError here, before anything is sent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeAlias

from onespace_client.v1 import search_pb2

__all__ = ["WHERE_SYNTAX", "Value", "Where", "parse_condition", "where"]

# What a metadata value may be given as: a string, or an int spelled in decimal.
Value: TypeAlias = str | int
Number: TypeAlias = int | float

WHERE_SYNTAX = (
    "KEY=VALUE (equal), KEY!=VALUE (absent or different), KEY=in:A,B,C (one of), "
    "KEY!=in:A,B,C (absent or none of), KEY>N, KEY>=N, KEY<N, KEY<=N (numeric)"
)


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"metadata values are strings (or ints), got {type(value).__name__}: {value!r}")


def _values(values: Iterable[Value], test: str) -> list[str]:
    if isinstance(values, str | bytes):
        raise TypeError(f"{test} takes a list of values, not a single string: wrap it in a list")
    out = [_text(v) for v in values]
    if not out:
        raise ValueError(f"{test} needs at least one value")
    return out


def _bound(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"range bound {name} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"range bound {name} must be finite, got {number}")
    return number


class Where:
    """The conditions on one metadata key; `where(key)` makes one."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"a condition needs a non-empty key, got {key!r}")
        self.key = key

    def __repr__(self) -> str:
        return f"where({self.key!r})"

    def equals(self, value: Value) -> search_pb2.Condition:
        """The key is present with exactly this value."""
        return search_pb2.Condition(key=self.key, equals=_text(value))

    def not_equals(self, value: Value) -> search_pb2.Condition:
        """The key is absent, or present with another value."""
        return search_pb2.Condition(key=self.key, not_equals=_text(value))

    def in_(self, values: Iterable[Value]) -> search_pb2.Condition:
        """The key is present with one of `values` (at most 1024)."""
        condition = search_pb2.Condition(key=self.key)
        getattr(condition, "in").values.extend(_values(values, "in_"))  # `in` is a Python keyword
        return condition

    def not_in(self, values: Iterable[Value]) -> search_pb2.Condition:
        """The key is absent, or present with none of `values`."""
        condition = search_pb2.Condition(key=self.key)
        condition.not_in.values.extend(_values(values, "not_in"))
        return condition

    def range(
        self,
        *,
        gt: Number | None = None,
        gte: Number | None = None,
        lt: Number | None = None,
        lte: Number | None = None,
    ) -> search_pb2.Condition:
        """The key's value is a number above `gt` (or at least `gte`) and below `lt` (or at most
        `lte`); set at least one bound, and at most one of each pair."""
        bounds = {
            name: _bound(name, value) for name, value in (("gt", gt), ("gte", gte), ("lt", lt), ("lte", lte))
        }
        if bounds["gt"] is not None and bounds["gte"] is not None:
            raise ValueError("range: set gt or gte, not both")
        if bounds["lt"] is not None and bounds["lte"] is not None:
            raise ValueError("range: set lt or lte, not both")
        set_bounds = {name: value for name, value in bounds.items() if value is not None}
        if not set_bounds:
            raise ValueError("range needs at least one of gt, gte, lt, lte")
        low = bounds["gt"] if bounds["gt"] is not None else bounds["gte"]
        high = bounds["lt"] if bounds["lt"] is not None else bounds["lte"]
        if low is not None and high is not None and low > high:
            raise ValueError(f"range: the lower bound {low:g} is above the upper bound {high:g}")
        return search_pb2.Condition(key=self.key, range=search_pb2.Range(**set_bounds))


def where(key: str) -> Where:
    """Start a condition on metadata `key`: `where("lang").equals("en")`."""
    return Where(key)


_RANGE_OPS = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
_LIST_PREFIX = "in:"


def _split(text: str) -> tuple[str, str, str]:
    """KEY, operator, VALUE at the first operator (`!=`, `>=`, `<=`, `=`, `>`, `<`)."""
    for i, char in enumerate(text):
        if text.startswith(("!=", ">=", "<="), i):
            return text[:i], text[i : i + 2], text[i + 2 :]
        if char in "=<>":
            return text[:i], char, text[i + 1 :]
    raise ValueError(f"{text!r}: expected one of {WHERE_SYNTAX}")


def parse_condition(text: str) -> search_pb2.Condition:
    """One `--where` clause as a Condition; ValueError with a one-line reason when malformed.

    The key ends at the first operator, so keys cannot contain `=`, `<`, `>` or `!=`; the value
    is everything after it (`note=a=b` is note equal to "a=b"). `in:` lists are split at commas;
    `KEY=in:in:x` matches the literal value "in:x".
    """
    key, op, value = _split(text)
    if not key:
        raise ValueError(f"{text!r}: the key before {op!r} is missing")
    if op in _RANGE_OPS:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{text!r}: expected a number after {op!r}, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{text!r}: expected a finite number after {op!r}, got {value!r}")
        return Where(key).range(**{_RANGE_OPS[op]: number})
    if value.startswith(_LIST_PREFIX):
        values = value[len(_LIST_PREFIX) :]
        if not values:
            raise ValueError(f"{text!r}: {_LIST_PREFIX} needs at least one value (A,B,C)")
        items = values.split(",")
        return Where(key).in_(items) if op == "=" else Where(key).not_in(items)
    return Where(key).equals(value) if op == "=" else Where(key).not_equals(value)
