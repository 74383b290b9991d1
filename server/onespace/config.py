"""The one settings object, read from command-line flags and `ONESPACE_*` environment variables.

Precedence: flag > environment > default. Each limit's help says what happens when it is hit.
`Settings` is frozen: components receive it (or the part they need) at construction.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Settings", "add_arguments", "settings_from_args"]


def _opt(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    choices: Sequence[str] | None = None,
    bounds: tuple[int, int] | None = None,
) -> Any:
    """A setting: its default, its help, and what the command line and environment accept."""
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices, "bounds": bounds})


@dataclass(frozen=True, slots=True)
class Settings:
    # --- serving ---
    host: str = _opt(
        "127.0.0.1",
        "address to listen on; a non-loopback address needs TLS and --auth-tokens, or --insecure",
    )
    port: int = _opt(50051, "gRPC port; 0 picks a free one")
    metrics_port: int = _opt(9464, "Prometheus /metrics port; 0 picks a free one, -1 disables")
    data_dir: Path = _opt(Path("./data"), "where collections are stored")
    provider: str = _opt("local", "embedding provider", choices=("local", "bedrock"))
    model: str = _opt("", "default model id; empty: the provider's first model")
    grace_seconds: float = _opt(10.0, "on SIGTERM/SIGINT, how long in-flight RPCs may take to drain")
    health_interval_seconds: float = _opt(
        5.0, "how often the provider (credentials, refusals) and the data directory are checked for health"
    )
    log_level: str = _opt("INFO", "logging level")
    log_format: str = _opt(
        "text", "text: one readable line per record; json: one JSON object per line", choices=("text", "json")
    )
    access_log_sample: float = _opt(
        0.0,
        "fraction of RPCs logged at INFO (method, status, duration, tenant, request id); 1: every RPC. "
        "At --log-level DEBUG every RPC is logged",
    )
    tracing: str = _opt(
        "off",
        "OpenTelemetry traces (needs the `otel` extra; docs/tracing.md): otlp = export over OTLP/gRPC "
        "to OTEL_EXPORTER_OTLP_ENDPOINT (default localhost:4317); console = print them; off = no "
        "tracing code runs",
        choices=("off", "otlp", "console"),
    )
    trace_sample_ratio: float = _opt(
        1.0, "fraction of new traces recorded; a caller's sampled traceparent is always followed"
    )
    trace_max_spans_per_rpc: int = _opt(
        64, "stage spans recorded under one RPC (a long stream); the rest are counted, not recorded"
    )
    # --- TLS (docs/security.md): new connections get changed files; SIGHUP re-reads them ---
    tls_cert: str = _opt(
        "", "PEM certificate chain of the gRPC port; with --tls-key it turns TLS on. Empty: plaintext"
    )
    tls_key: str = _opt("", "PEM private key (unencrypted) of --tls-cert")
    tls_client_ca: str = _opt(
        "", "PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)"
    )
    # --- request limits (refused with INVALID_ARGUMENT when exceeded) ---
    max_items_per_request: int = _opt(256, "items in one Embed/Upsert request")
    max_request_bytes: int = _opt(64 * 1024 * 1024, "largest gRPC message accepted, in bytes")
    max_k: int = _opt(1000, "largest k a search may ask for")
    max_deadline_seconds: float = _opt(
        0.0,
        "largest deadline honoured; a longer one is cut to it and the error says so. 0: honour every "
        "client deadline as sent (default_deadline_seconds applies only to RPCs sent without one)",
    )
    # --- security: authentication, tenants, exposure (docs/security.md) ---
    auth_tokens: str = _opt(
        "",
        "token file (TOML, SHA-256 hashes -> tenant and role; `onespace token` makes entries); every "
        "RPC but health checks then needs `authorization: Bearer <token>`. Empty: no authentication, "
        "allowed only on a loopback host unless --insecure",
    )
    insecure: bool = _opt(
        False,
        "allow a non-loopback --host without TLS and authentication (anyone who reaches the port "
        "can read, write and delete every collection)",
    )
    reflection: bool = _opt(True, "serve gRPC reflection (with auth on, it needs a valid token)")
    metrics_host: str = _opt(
        "127.0.0.1", "address of the Prometheus /metrics endpoint, independent of --host"
    )
    tenant_rate: float = _opt(
        0.0, "requests per second per tenant (token file entries may override); 0: unlimited"
    )
    tenant_burst: float = _opt(
        0.0, "requests a tenant may send at once above its rate; 0: one second's worth"
    )
    tenant_max_in_flight: int = _opt(
        0, "RPCs one tenant may have in flight (token file entries may override); 0: unlimited"
    )
    # --- engine: admission and backpressure ---
    queue_capacity: int = _opt(
        4096, "items waiting for the provider; unary requests beyond it get RESOURCE_EXHAUSTED"
    )
    stream_window: int = _opt(
        256, "items in flight per stream; the server stops reading a stream while its window is full"
    )
    stream_window_bytes: int = _opt(
        64 * 1024 * 1024,
        "request bytes in flight per stream; the server also stops reading a stream while the requests "
        "it is working on hold this much (one larger request is worked on alone)",
    )
    retry_pushback_ms: int = _opt(200, "retry hint (grpc-retry-pushback-ms) sent with RESOURCE_EXHAUSTED")
    max_in_flight_rpcs: int = _opt(
        4096,
        "unary RPCs handled at once; beyond it an RPC gets RESOURCE_EXHAUSTED with the retry hint at "
        'once, before any work, counted in onespace_rejected_total{reason="rpcs_in_flight"}',
    )
    max_pending_rpcs: int = _opt(
        20000,
        "RPCs grpc-core may queue before the server's handlers take them; beyond it core cancels "
        "new ones (its own defaults, 1000 soft and 3000 hard, cancelled bursts of a few thousand)",
    )
    max_batch_wait_ms: float = _opt(2.0, "how long a partial provider batch may wait to fill")
    interactive_burst: int = _opt(
        8,
        "unary callers' items cut into provider calls ahead of queued stream items, at most this many in "
        "a row; then items go in arrival order until a stream item has gone, so unary load never stalls "
        "a stream (0: arrival order always)",
        bounds=(0, 1_000_000),
    )
    concurrency_min: int = _opt(1, "floor of the adaptive provider concurrency limit")
    concurrency_max: int = _opt(64, "ceiling of the adaptive provider concurrency limit")
    concurrency_initial: int = _opt(16, "starting provider concurrency limit")
    cache_bytes: int = _opt(64 * 1024 * 1024, "embedding cache size in bytes; 0 disables the cache")
    default_deadline_seconds: float = _opt(60.0, "deadline applied to RPCs that carry none")
    # --- search batcher ---
    search_max_batch: int = _opt(256, "most searches coalesced into one usearch call")
    search_max_wait_ms: float = _opt(1.0, "how long a search waits for others to join its batch")
    search_threads: int = _opt(0, "usearch threads per batch search; 0: one per core")
    search_inline_ms: float = _opt(
        5.0,
        "a batched index search expected to take at most this long (from the collection's recent "
        "searches) runs on the event loop, sparing the hand-off to a thread and back; longer ones, "
        "and those whose filters read metadata from disk, run on a thread. 0: always a thread",
    )
    recall_sample_budget: float = _opt(
        0.0,
        "share of one core spent re-running sampled searches as exact scans, to export their "
        "recall@k (onespace_search_recall); e.g. 0.01. 0: off",
        bounds=(0, 1),
    )
    # --- storage ---
    fsync: str = _opt(
        "batch",
        "when a write is acknowledged: batch = after the fsync of a group commit shared with the writes "
        "that arrived meanwhile (durable); always = after its own commit and fsync (durable, slower); "
        "off = once the commit reaches the OS, without fsync (survives a process crash, not a machine crash)",
        choices=("batch", "always", "off"),
    )
    commit_max_wait_ms: float = _opt(1.0, "how long an idle group commit waits for more writes to join it")
    commit_max_items: int = _opt(8192, "most items in one group commit")
    index_nice: int = _opt(
        10,
        "nice increment (0-19) of the threads that add committed rows to the HNSW index behind the "
        "acks (Linux): they yield the cores to the work callers wait for, which favours ingest; 0 "
        "keeps them at the server's priority, which favours searches run beside a heavy ingest",
        bounds=(0, 19),
    )
    checkpoint_interval_seconds: float = _opt(
        300.0,
        "checkpoint a collection's index this long after its first change since the last checkpoint "
        "(restart replays less)",
    )
    checkpoint_changes: int = _opt(100_000, "checkpoint a collection's index after this many changed items")
    maintenance_interval_seconds: float = _opt(
        1.0, "how often the background task looks for checkpoints and compactions to run"
    )
    # --- storage backend (docs/milvus.md) ---
    store: str = _opt(
        "embedded",
        "where collections live: embedded = in --data-dir (one gateway per directory); milvus = in the "
        "Milvus database at --milvus-uri (any number of gateway replicas; needs the `milvus` extra)",
        choices=("embedded", "milvus"),
    )
    milvus_uri: str = _opt(
        "",
        "with --store milvus: a Milvus address (http://host:19530, https://...) or a local path ending in "
        ".db, served inside this process by milvus-lite (development, tests)",
    )
    milvus_token_file: str = _opt(
        "",
        "file holding the Milvus token (user:password or an API key), read at start; a file so the token "
        "never shows in ps or --help. Empty: no authentication",
    )
    milvus_database: str = _opt("", "Milvus database holding the collections; empty: Milvus's default")
    milvus_consistency: str = _opt(
        "Strong",
        "consistency of every Milvus read: Strong = sees every write acknowledged before it, through any "
        "replica; Session = only this gateway's own writes (one replica); Bounded = may miss the last "
        "seconds of writes, lowest latency",
        choices=("Strong", "Session", "Bounded"),
    )
    milvus_timeout_seconds: float = _opt(
        30.0, "longest wait for one Milvus call; past it the request fails UNAVAILABLE (retryable)"
    )
    # --- local provider ---
    local_workers: int = _opt(
        0,
        "workers decoding and featurising for the local provider (processes or threads, see "
        "--local-executor); 0: one fewer than the cores (at least 1)",
    )
    local_executor: str = _opt(
        "process",
        "where the local provider's workers run: process = worker processes, so featurising never "
        "holds the gateway's GIL (each starts in ~0.4 s); thread = threads of the gateway's process",
        choices=("process", "thread"),
    )
    # --- media decoding ---
    decode_budget_bytes: int = _opt(
        256 * 1024 * 1024,
        "memory all concurrent media decodes may hold (local provider): each reserves its estimated "
        "decoded size first and, when the rest is in use, waits its turn (a decode larger than the "
        "whole budget waits to run alone)",
    )
    max_image_pixels: int = _opt(
        40_000_000,
        "pixels an image may declare (width x height in its header; also each video frame); more is "
        "refused with INVALID_ARGUMENT before decoding or sending it to Bedrock",
    )
    max_audio_samples: int = _opt(
        16 * 1024 * 1024,
        "samples an audio track may decode to (seconds x sample rate x channels, from the header, "
        "else counted while decoding); more is refused with INVALID_ARGUMENT",
    )
    max_video_frames: int = _opt(
        4000,
        "frames a video may decode to (its frame count, or duration x frame rate, else counted while "
        "decoding); more is refused with INVALID_ARGUMENT",
    )
    # --- bedrock provider ---
    bedrock_region: str = _opt("us-east-1", "AWS region of Bedrock Runtime")
    bedrock_endpoint_url: str = _opt("", "override the Bedrock Runtime endpoint (e.g. the emulator)")
    bedrock_profile: str = _opt("", "AWS profile name; empty: the default credential chain")
    bedrock_max_attempts: int = _opt(4, "attempts per Bedrock call for retryable errors, within the deadline")
    bedrock_connect_timeout: float = _opt(5.0, "seconds to open a connection to Bedrock")
    bedrock_read_timeout: float = _opt(60.0, "seconds to wait for a Bedrock response")
    bedrock_fast_path: bool = _opt(
        True,
        "after a model's first InvokeModel through aioboto3, send its calls from the learned request "
        "template (same URL, headers, SigV4 signer, credentials and connection pool, without botocore's "
        "per-call event hooks: ~0.4 ms less CPU per call); false = every call through invoke_model",
    )

    @property
    def search_thread_count(self) -> int:
        return self.search_threads or (os.cpu_count() or 1)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _env_name(name: str) -> str:
    return "ONESPACE_" + name.upper()


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    """A flag's or variable's text as the setting's type; ArgumentTypeError says why it is not."""
    default: Any = f.default
    if isinstance(default, bool):
        word = raw.strip().lower()
        if word not in {"1", "true", "yes", "on", "0", "false", "no", "off", ""}:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a boolean (true/false, 1/0, yes/no, on/off)")
        return word in {"1", "true", "yes", "on"}
    if isinstance(default, Path):
        return Path(raw)
    try:
        value = type(default)(raw)
    except ValueError:
        kind = {int: "an integer", float: "a number"}.get(type(default), "valid")
        raise argparse.ArgumentTypeError(f"{raw!r} is not {kind}") from None
    bounds = f.metadata.get("bounds")
    if bounds and not bounds[0] <= value <= bounds[1]:
        raise argparse.ArgumentTypeError(f"{raw!r} is not between {bounds[0]} and {bounds[1]}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:  # argparse checks flags, not values from the environment
        raise argparse.ArgumentTypeError(f"{raw!r} is not one of {', '.join(choices)}")
    return value


def add_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str] | None = None) -> None:
    """Add one `--flag` per setting; defaults come from `ONESPACE_*` variables when set.

    A variable that does not parse becomes the default as an `argparse.ArgumentTypeError` naming
    it (`ONESPACE_PORT: 'x' is not an integer`), not an exception here: building the parser must
    not fail for the commands that do not use the settings; the one that does reports it
    (`onespace serve` exits 2) unless a flag replaced it.
    """
    env = os.environ if env is None else env
    for f in dataclasses.fields(Settings):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        default = f.default
        if _env_name(f.name) in env:
            try:
                default = _parse(f, env[_env_name(f.name)])
            except argparse.ArgumentTypeError as exc:
                default = argparse.ArgumentTypeError(f"{_env_name(f.name)}: {exc}")
        parser.add_argument(
            flag,
            dest=f.name,
            type=functools.partial(_parse, f),
            default=default,
            choices=f.metadata.get("choices"),
            help=f"{f.metadata['help']} (env {_env_name(f.name)}; default: %(default)s)",
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    names = {f.name for f in dataclasses.fields(Settings)}
    return Settings(**{k: v for k, v in vars(args).items() if k in names})
