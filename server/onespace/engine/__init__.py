"""The engine: the embed scheduler (dedup, cache, admission, batching, adaptive concurrency), the
search batcher (concurrent searches on one collection become one index call), the write batcher
(concurrent writes become one durable group commit) and the background maintainer."""

from __future__ import annotations

from onespace.engine.cache import EmbeddingCache
from onespace.engine.limiter import AdaptiveLimiter
from onespace.engine.scheduler import Admission, EmbedScheduler
from onespace.engine.search import SearchBatcher
from onespace.engine.writes import WriteBatcher

__all__ = [
    "AdaptiveLimiter",
    "Admission",
    "EmbedScheduler",
    "EmbeddingCache",
    "SearchBatcher",
    "WriteBatcher",
]
