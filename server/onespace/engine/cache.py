"""A byte-bounded LRU of recent embedding results, keyed like the in-flight dedup table."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from onespace.providers.base import ProviderResult

__all__ = ["EmbeddingCache", "result_nbytes"]

_ENTRY_OVERHEAD = 200  # dict slot, key tuple, dataclass headers: a rough, deliberate over-estimate


def result_nbytes(result: ProviderResult) -> int:
    return _ENTRY_OVERHEAD + sum(e.vector.nbytes for e in result.embeddings)


class EmbeddingCache:
    """Not thread-safe: owned by the scheduler on the event loop. `capacity_bytes=0` disables it."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._entries: OrderedDict[Hashable, tuple[ProviderResult, int]] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0  # entries pushed out to make room (published as a counter)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> ProviderResult | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[0]

    def put(self, key: Hashable, result: ProviderResult) -> None:
        size = result_nbytes(result)
        if size > self.capacity_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= old[1]
        self._entries[key] = (result, size)
        self.nbytes += size
        while self.nbytes > self.capacity_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.nbytes -= evicted
            self.evictions += 1

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0
