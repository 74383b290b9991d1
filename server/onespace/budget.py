"""A running lower bound on a unary response's size, so a response over the server's message limit
is refused before it is built rather than after (a Get of millions of duplicate ids with vectors
would otherwise materialise terabytes before the final size check)."""

from __future__ import annotations

from collections.abc import Mapping

from onespace.errors import InvalidArgument

__all__ = ["ResponseBudget", "response_too_large"]


def response_too_large(size: int, limit: int, *, bound: str = "") -> InvalidArgument:
    """The one error for a unary response over `limit` bytes (`max_request_bytes`); `bound` says
    how `size` was found when the response was not built: "at least", "up to"."""
    would_be = f"could be {bound}" if bound == "up to" else f"would be {bound}".rstrip()
    return InvalidArgument(
        "request",
        f"its response {would_be} {size} bytes, over the server's "
        f"message limit of {limit} bytes (max_request_bytes); ask for less: fewer ids or queries, "
        "a smaller k, or no vectors",
    )


class ResponseBudget:
    """Counts the bytes a response is sure to hold (ids, metadata, vectors: never more than the
    encoded message), and refuses once they pass `limit`; `None` counts nothing."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0

    def add(self, item_id: str, metadata: Mapping[str, str], vector_bytes: int = 0) -> None:
        if self.limit is None:
            return
        self.used += len(item_id) + vector_bytes + sum(len(k) + len(v) for k, v in metadata.items())
        if self.used > self.limit:
            raise response_too_large(self.used, self.limit, bound="at least")
