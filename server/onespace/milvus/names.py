"""Stored collection names as Milvus collection names, reversibly.

Milvus allows only letters, digits and underscores (a letter or underscore first, at most 255
characters); onespace stores `[<tenant>~]<name>` with `-`, `.` and `~` in it. Every Milvus name
onespace makes is `os_` followed by the stored name with letters and digits kept and the other
characters escaped: `_` as `__`, `-` as `_h`, `.` as `_d`, `~` as `_t`. So a name stays readable in
Milvus tools (`acme~photos-2024` is `os_acme_tphotos_h2024`), a tenant's collections share the
prefix `os_<escaped tenant>_t`, decoding is unambiguous, and the longest stored name (97
characters) becomes at most 197. Names without the `os_` prefix, or that do not decode to a valid
stored name, are not onespace's and are left alone.
"""

from __future__ import annotations

from onespace.errors import InvalidArgument
from onespace.index.config import check_stored_name

__all__ = ["PREFIX", "from_milvus", "to_milvus"]

PREFIX = "os_"
_ESCAPES = {"_": "__", "-": "_h", ".": "_d", "~": "_t"}
_UNESCAPES = {code[1]: char for char, code in _ESCAPES.items()}


def to_milvus(stored_name: str) -> str:
    """The Milvus collection name of a stored onespace name (checked: InvalidArgument if bad)."""
    check_stored_name(stored_name)
    out = [PREFIX]
    for char in stored_name:
        if char.isascii() and char.isalnum():
            out.append(char)
        else:
            out.append(_ESCAPES[char])  # check_stored_name allows no other character
    return "".join(out)


def from_milvus(milvus_name: str) -> str | None:
    """The stored onespace name a Milvus collection name encodes; None when it encodes none."""
    if not milvus_name.startswith(PREFIX):
        return None
    out: list[str] = []
    chars = iter(milvus_name[len(PREFIX) :])
    for char in chars:
        if char != "_":
            out.append(char)
            continue
        decoded = _UNESCAPES.get(next(chars, ""))
        if decoded is None:
            return None
        out.append(decoded)
    name = "".join(out)
    try:
        check_stored_name(name)
    except InvalidArgument:
        return None
    return name
