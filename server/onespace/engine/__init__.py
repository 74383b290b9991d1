"""The engine: the embed scheduler (dedup, cache, admission, batching, adaptive concurrency) and the
search batcher (concurrent searches on one collection become one index call)."""

from __future__ import annotations

from onespace.engine.cache import EmbeddingCache
from onespace.engine.limiter import AdaptiveLimiter
from onespace.engine.scheduler import Admission, EmbedScheduler
from onespace.engine.search import SearchBatcher

__all__ = ["AdaptiveLimiter", "Admission", "EmbedScheduler", "EmbeddingCache", "SearchBatcher"]
