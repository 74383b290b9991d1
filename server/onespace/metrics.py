"""Prometheus metrics: every stage timed, queue and limiter state, cache and batch behaviour.

Naming follows prometheus practice: `onespace_` prefix, base units, `_total` counters, and only
bounded labels (method, code, model, modality, collection, outcome, reason, tenant) — never ids or text.
Each `Metrics` owns its registry, so several servers can live in one process (tests do this);
the registry is the one piece of mutable state shared across the gateway.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["KNOWN_LABELS", "Metrics", "code_label"]

# Reasons and outcomes the code can emit, created at 0 on start so that a rate or `absent()`
# needs no `or vector(0)`. A new `.labels("x")` call site adds its value here.
KNOWN_LABELS: dict[str, tuple[str, ...]] = {
    "rejected": ("queue_full", "deadline", "rpcs_in_flight", "tenant_limit", "undecodable"),
    "items_dropped": ("deadline", "cancelled", "shutdown"),
    "expired": ("search", "write"),
    "cache_requests": ("hit", "miss"),
    "auth_failures": ("missing_token", "invalid_token", "permission_denied"),
}

# ~1 ms to 30 s, for provider calls and whole RPCs.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# 10 µs to 1 s, for in-process stages (queue wait, index search).
FAST_BUCKETS = (
    0.00001,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
# 100 ms to 6 h, for stream lifetimes.
STREAM_BUCKETS = (0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)
POWERS_OF_TWO = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# recall@k of sampled searches: the tuning targets people pick (0.9, 0.95, 0.98, 0.99, ...)
RECALL_BUCKETS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # one `_created` series per counter and histogram is only noise
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, ...
        PlatformCollector(registry=r)  # python_info
        GCCollector(registry=r)  # python_gc_*
        self.build_info = Gauge(
            "onespace_build_info",
            "Always 1; the labels say what is running",
            ["version", "python", "grpc", "usearch"],
            registry=r,
        )
        self.build_info.labels(
            _version("onespace"), platform.python_version(), _version("grpcio"), _version("usearch")
        ).set(1)
        self.rpc_duration = Histogram(
            "onespace_rpc_duration_seconds",
            "Unary RPC latency by method and final status code (streams: onespace_stream_*)",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stream_duration = Histogram(
            "onespace_stream_duration_seconds",
            "Streaming RPC lifetime by method and final status code (as long as the caller keeps it open)",
            ["method", "code"],
            buckets=STREAM_BUCKETS,
            registry=r,
        )
        self.stream_item_duration = Histogram(
            "onespace_stream_item_duration_seconds",
            "Time from reading one stream item to writing its answer",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rpc_in_flight = Gauge("onespace_rpc_in_flight", "RPCs being served", ["method"], registry=r)
        self.stream_items = Counter(
            "onespace_stream_items_total",
            "Items received on streaming RPCs",
            ["method", "outcome"],
            registry=r,
        )
        self.stream_window = Gauge(
            "onespace_stream_window_items",
            "Items read from streams and not yet answered (bounded by stream_window per stream)",
            ["method"],
            registry=r,
        )
        self.stream_window_bytes = Gauge(
            "onespace_stream_window_bytes",
            "Bytes of the requests read from streams and being worked on (bounded by "
            "stream_window_bytes per stream)",
            ["method"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "onespace_queue_wait_seconds",
            "Time an item waited between admission and its provider call",
            ["model"],
            buckets=(*FAST_BUCKETS, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.queue_depth = Gauge(
            "onespace_queue_depth", "Items admitted and waiting for a provider call", registry=r
        )
        self.provider_duration = Histogram(
            "onespace_provider_call_duration_seconds",
            "Provider call latency",
            ["model", "modality", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.provider_batch_size = Histogram(
            "onespace_provider_batch_size",
            "Inputs per provider call",
            ["model"],
            buckets=POWERS_OF_TWO,
            registry=r,
        )
        self.queue_capacity = Gauge(
            "onespace_queue_capacity",
            "Items the embedding queue admits before unary requests are refused (--queue-capacity)",
            registry=r,
        )
        self.health_status = Gauge(
            "onespace_health_status",
            '1 when the gRPC health service ("" = overall) is SERVING, else 0',
            ["service"],
            registry=r,
        )
        self.provider_in_flight = Gauge("onespace_provider_in_flight", "Provider calls under way", registry=r)
        self.concurrency_limit = Gauge(
            "onespace_provider_concurrency_limit",
            "Current adaptive limit on concurrent provider calls",
            registry=r,
        )
        self.provider_pace = Gauge(
            "onespace_provider_pace",
            "Provider attempts per second the gateway spaces its calls to (0 = not pacing)",
            registry=r,
        )
        self.provider_throttles = Counter(
            "onespace_provider_throttles_total",
            "Throttling answers from the provider",
            ["model"],
            registry=r,
        )
        self.provider_retries = Counter(
            "onespace_provider_retries_total",
            "Provider calls retried",
            ["model", "reason"],
            registry=r,
        )
        self.cache_requests = Counter(
            "onespace_cache_requests_total",
            "Embedding cache lookups",
            ["result"],
            registry=r,
        )
        self.cache_bytes = Gauge("onespace_cache_bytes", "Bytes held by the embedding cache", registry=r)
        self.dedup_joins = Counter(
            "onespace_dedup_joins_total",
            "Items that joined an identical item already in flight",
            registry=r,
        )
        self.items_dropped = Counter(
            "onespace_items_dropped_total",
            "Items dropped before their provider call",
            ["reason"],
            registry=r,
        )
        self.expired = Counter(
            "onespace_expired_total",
            "Work dropped undone because its caller's deadline passed while it waited, by stage "
            '(search, write; embeddings: onespace_items_dropped_total{reason="deadline"})',
            ["stage"],
            registry=r,
        )
        self.rejected = Counter(
            "onespace_rejected_total",
            "Requests refused at admission",
            ["reason"],
            registry=r,
        )
        self.index_search = Histogram(
            "onespace_index_search_duration_seconds",
            "Time inside one batched index search",
            ["collection"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.search_batch_size = Histogram(
            "onespace_search_batch_size",
            "Searches served by one batched index call",
            ["collection"],
            buckets=POWERS_OF_TWO,
            registry=r,
        )
        self.search_index_calls = Counter(
            "onespace_search_index_calls_total",
            "Batched index searches, by where they ran: event_loop (short, memory-only) or thread",
            ["collection", "runs_on"],
            registry=r,
        )
        self.search_recall = Histogram(
            "onespace_search_recall",
            "Recall@k of sampled searches against an exact scan of the collection "
            "(--recall-sample-budget; off by default)",
            ["collection"],
            buckets=RECALL_BUCKETS,
            registry=r,
        )
        self.auth_failures = Counter(
            "onespace_auth_failures_total",
            "RPCs refused by authentication or authorization, by reason "
            "(missing_token, invalid_token, permission_denied)",
            ["reason"],
            registry=r,
        )
        self.tenant_requests = Counter(
            "onespace_tenant_requests_total",
            "Authenticated RPCs per tenant (ids from the token file) by outcome "
            "(admitted, limited, permission_denied)",
            ["tenant", "outcome"],
            registry=r,
        )
        self.tenant_in_flight = Gauge(
            "onespace_tenant_in_flight", "RPCs being served per tenant", ["tenant"], registry=r
        )
        self.index_items = Gauge("onespace_index_items", "Items stored", ["collection"], registry=r)
        self.index_unindexed = Gauge(
            "onespace_index_unindexed_rows",
            "Committed rows waiting for the HNSW index (every search scans them)",
            ["collection"],
            registry=r,
        )
        self.commit_duration = Histogram(
            "onespace_commit_duration_seconds",
            "One group commit: vector file write + fsync and the SQLite transaction",
            ["collection"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.commit_items = Histogram(
            "onespace_commit_items",
            "Write operations' items folded into one group commit",
            ["collection"],
            buckets=(*POWERS_OF_TWO, 1024, 2048, 4096, 8192),
            registry=r,
        )
        self.checkpoint_duration = Histogram(
            "onespace_checkpoint_duration_seconds",
            "One index checkpoint (save under the write lock, then hash and fsync)",
            ["collection"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.checkpoint_timestamp = Gauge(
            "onespace_checkpoint_timestamp_seconds",
            "Unix time of the collection's last index checkpoint (age = time() - this)",
            ["collection"],
            registry=r,
        )
        self.compactions = Counter(
            "onespace_compactions_total",
            "Compactions run (vector file or index rebuild)",
            ["collection"],
            registry=r,
        )
        self.collection_bytes = Gauge(
            "onespace_collection_bytes",
            "Bytes per collection: disk (all files), index (resident), vectors (mapped rows)",
            ["collection", "kind"],
            registry=r,
        )

    def watch_cache(self, cache: CacheCounts) -> None:
        """Publish the embedding cache's own counts (read at scrape time, nothing on the hot path)."""
        self.registry.register(_CacheCollector(cache))

    def forget_collection(self, name: str) -> None:
        """Remove every series of a deleted collection (a dashboard must not show it forever)."""
        for metric in self._by_collection:
            index = metric._labelnames.index("collection")
            for values in [v for v in list(metric._metrics) if v[index] == name]:
                metric.remove(*values)

    @property
    def _by_collection(self) -> list[Any]:
        return [m for m in vars(self).values() if "collection" in getattr(m, "_labelnames", ())]

    def prime(self, *, methods: Iterable[str], models: Iterable[str]) -> None:
        """Create every series whose labels are known at start, at 0 (see KNOWN_LABELS)."""
        for name, values in KNOWN_LABELS.items():
            counter = getattr(self, name)
            for value in values:
                counter.labels(value)
        for method in methods:
            self.rpc_in_flight.labels(method)
        for model in models:
            self.provider_throttles.labels(model)


class CacheCounts(Protocol):
    evictions: int
    nbytes: int

    def __len__(self) -> int: ...


class _CacheCollector(Collector):
    def __init__(self, cache: CacheCounts) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "onespace_cache_evictions", "Embedding cache entries evicted to make room", self._cache.evictions
        )
        yield GaugeMetricFamily("onespace_cache_entries", "Embeddings held by the cache", len(self._cache))


def code_label(error_class: str) -> str:
    """An onespace error class as the gRPC status name every `code`/`outcome` label uses
    (`ResourceExhausted` -> `RESOURCE_EXHAUSTED`), so one casing runs through all series."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", error_class).upper()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
