"""`onespace collections create|list|get|update|tune|checkpoint|compact|delete`: readable tables, or
`--json` for machines (the proto3 JSON mapping: 64-bit counters are strings there)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from onespace_client import enums
from onespace_client.cli._common import (
    EXIT_FAILURES,
    CliError,
    client_for,
    connection_parent,
    print_json,
    runner,
    uint,
)
from onespace_client.cli.format import key_values, message_dict, table
from onespace_client.cli.vectors import load_vectors
from onespace_client.v1 import collections_pb2

__all__ = ["add_parser", "collection_rows", "describe", "human_bytes", "stats_pairs"]

_HEADERS = (
    "NAME", "MODEL", "DIM", "INDEX DIM", "METRIC", "DTYPE", "STORED", "HNSW M/EFC/EF", "RERANK", "COUNT",
)  # fmt: skip
_RIGHT = (2, 3, 8, 9)


def _hnsw(config: collections_pb2.CollectionConfig) -> str:
    h = config.hnsw
    return f"{h.connectivity}/{h.expansion_add}/{h.expansion_search}"


def collection_rows(collections: list[collections_pb2.Collection]) -> list[list[object]]:
    """One table row per collection, in the order of `_HEADERS`."""
    return [
        [
            c.config.name,
            c.config.model or "-",
            c.config.dimension,
            c.config.index_dimension,
            enums.metric_name(c.config.metric),
            enums.dtype_name(c.config.dtype),
            enums.stored_dtype_name(c.config.stored_dtype),
            _hnsw(c.config),
            c.config.rerank_factor,
            c.count,
        ]
        for c in collections
    ]


def human_bytes(n: int) -> str:
    """`1536` as `1.5 KiB`; below 1 KiB just the number of bytes."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def _when(seconds: float) -> str:
    if seconds <= 0:
        return "never"
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def stats_pairs(stats: collections_pb2.CollectionStats) -> list[tuple[str, object]]:
    """The storage statistics as `key  value` pairs (sizes with their exact byte counts)."""

    def size(n: int) -> str:
        return f"{human_bytes(n)} ({n} bytes)" if n >= 1024 else human_bytes(n)

    return [
        ("items", stats.items),
        ("dead rows", stats.dead_rows),
        ("index tombstones", stats.index_tombstones),
        ("unindexed rows", f"{stats.unindexed_rows} (writes wait past {stats.unindexed_limit})")
        if stats.unindexed_limit
        else ("unindexed rows", stats.unindexed_rows),
        ("disk bytes", size(stats.disk_bytes)),
        ("index bytes", size(stats.index_bytes)),
        ("vector bytes", size(stats.vector_bytes)),
        ("log bytes", size(stats.log_bytes)),
        ("seq", stats.seq),
        ("checkpoint seq", stats.checkpoint_seq),
        ("checkpoint time", _when(stats.checkpoint_time)),
    ]


def describe(collection: collections_pb2.Collection) -> str:
    """One collection as aligned `key  value` lines, with its storage statistics when it has them."""
    config = collection.config
    stats = stats_pairs(collection.stats) if collection.HasField("stats") else []
    return key_values(
        [
            ("name", config.name),
            ("model", config.model or "-"),
            ("dimension", config.dimension),
            ("index dimension", config.index_dimension),
            ("metric", enums.metric_name(config.metric)),
            ("dtype", enums.dtype_name(config.dtype)),
            (
                "hnsw",
                f"connectivity {config.hnsw.connectivity}, expansion_add {config.hnsw.expansion_add}, "
                f"expansion_search {config.hnsw.expansion_search}",
            ),
            ("rerank factor", config.rerank_factor),
            ("stored dtype", enums.stored_dtype_name(config.stored_dtype)),
            ("max unindexed", config.max_unindexed_rows or "server default"),
            ("count", collection.count),
            *stats,
        ]
    )


def _shown(args: argparse.Namespace, collection: collections_pb2.Collection, headline: str = "") -> int:
    """Print `collection` as `--json` asks, or described under `headline`; the command's exit code."""
    if args.json:
        print_json(message_dict(collection))
    else:
        if headline:
            print(headline)
        print(describe(collection))
    return 0


@runner
async def _create(args: argparse.Namespace) -> int:
    """Create a collection."""
    async with client_for(args) as client:
        collection = await client.create_collection(
            args.name,
            model=args.model,
            dimension=args.dimension,
            index_dimension=args.index_dimension,
            metric=args.metric or collections_pb2.METRIC_UNSPECIFIED,
            dtype=args.dtype or collections_pb2.INDEX_DTYPE_UNSPECIFIED,
            connectivity=args.connectivity,
            expansion_add=args.expansion_add,
            expansion_search=args.expansion_search,
            rerank_factor=args.rerank_factor,
            stored_dtype=args.stored_dtype or collections_pb2.STORED_DTYPE_UNSPECIFIED,
            max_unindexed_rows=args.max_unindexed_rows,
        )
    return _shown(args, collection, f"created collection {collection.config.name}")


@runner
async def _list(args: argparse.Namespace) -> int:
    """List collections."""
    async with client_for(args) as client:
        collections = await client.list_collections()
    if args.json:
        print_json({"collections": [message_dict(c) for c in collections]})
    elif not collections:
        print("no collections")
    else:
        print(table(_HEADERS, collection_rows(collections), right=_RIGHT))
    return 0


@runner
async def _get(args: argparse.Namespace) -> int:
    """Show one collection."""
    async with client_for(args) as client:
        collection = await client.get_collection(args.name)
    return _shown(args, collection)


@runner
async def _update(args: argparse.Namespace) -> int:
    """Change a collection's search-time settings or its unindexed bound."""
    async with client_for(args) as client:
        collection = await client.update_collection(
            args.name,
            expansion_search=args.expansion_search,
            rerank_factor=args.rerank_factor,
            max_unindexed_rows=args.max_unindexed_rows,
        )
    return _shown(args, collection, f"updated collection {args.name}")


@runner
async def _tune(args: argparse.Namespace) -> int:
    """Find (and unless --dry-run apply) the cheapest search settings reaching a recall target;
    exit status 1 when none reaches it."""
    try:
        queries = load_vectors(args.queries) if args.queries is not None else []
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"--queries: {exc}") from None
    async with client_for(args) as client:
        result = await client.tune_collection(
            args.name, queries, target_recall=args.target_recall, k=args.k, apply=not args.dry_run
        )
    if args.json:
        print_json(message_dict(result))
        return 0 if result.reached else EXIT_FAILURES
    rows = [
        [t.expansion_search, t.rerank_factor, f"{t.recall:.4f}", f"{t.micros_per_query:,.0f}"]
        for t in result.trials
    ]
    recall_at = f"RECALL@{args.k}" if queries else "RECALL@K"  # live queries each ask their own k
    print(table(["EF", "RERANK", recall_at, "US/QUERY"], rows, right=(0, 1, 2, 3)))
    if not result.reached:
        print(f"no setting reached recall {args.target_recall} on {result.queries} queries; nothing changed")
        return EXIT_FAILURES
    best = result.trials[-1]
    found = f"expansion_search {best.expansion_search}, rerank_factor {best.rerank_factor}"
    if args.dry_run:
        print(f"{found} reaches recall {args.target_recall} (--dry-run: not applied)")
    else:
        print(f"collection {args.name} now searches with {found}")
    return 0


@runner
async def _checkpoint(args: argparse.Namespace) -> int:
    """Checkpoint a collection's index now."""
    async with client_for(args) as client:
        collection = await client.checkpoint_collection(args.name)
    seq = collection.stats.checkpoint_seq
    return _shown(args, collection, f"checkpointed the index of collection {args.name} at seq {seq}")


@runner
async def _compact(args: argparse.Namespace) -> int:
    """Reclaim a collection's dead rows and removed index entries now."""
    async with client_for(args) as client:
        before = (await client.get_collection(args.name)).stats
        collection = await client.compact_collection(args.name)
    if args.json:
        print_json(message_dict(collection))
        return 0
    after = collection.stats
    rows = max(before.dead_rows - after.dead_rows, 0)
    tombstones = max(before.index_tombstones - after.index_tombstones, 0)
    if rows or tombstones:
        print(
            f"compacted collection {args.name}: reclaimed {rows} dead rows and {tombstones} index tombstones"
        )
    else:
        print(f"compacted collection {args.name}: nothing to reclaim")
    print(describe(collection))
    return 0


@runner
async def _delete(args: argparse.Namespace) -> int:
    """Delete a collection and everything in it."""
    async with client_for(args) as client:
        await client.delete_collection(args.name)
    if args.json:
        print_json({"deleted": args.name})
    else:
        print(f"deleted collection {args.name}")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `collections` and its subcommands."""
    common = connection_parent()
    slow = connection_parent(timeout=None)  # checkpoint and compact take long on big collections
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    group = commands.add_parser(
        "collections", help="create, list, show, update, tune, checkpoint, compact and delete collections"
    )
    sub = group.add_subparsers(dest="collections_command", required=True, metavar="ACTION")

    create = sub.add_parser("create", parents=[common, output], help="create a collection")
    create.add_argument("name")
    create.add_argument("--model", default="", help="model id (default: the server's default model)")
    create.add_argument("--dimension", type=uint, default=0, help="stored dimension (default: the model's)")
    create.add_argument(
        "--index-dimension", type=uint, default=0, help="Matryoshka prefix indexed by HNSW (default: all)"
    )
    create.add_argument("--metric", choices=sorted(enums.METRIC_NAMES), help="default cosine")
    create.add_argument("--dtype", choices=list(enums.DTYPE_NAMES), help="HNSW index dtype, default f16")
    create.add_argument(
        "--stored-dtype",
        choices=list(enums.STORED_DTYPE_NAMES),
        help="dtype of the stored full vectors: f16 (default, half the bytes, ~1e-3 relative "
        "rounding) or f32 (read back exactly)",
    )
    create.add_argument("--connectivity", type=uint, default=0, help="HNSW M (default 16)")
    create.add_argument("--expansion-add", type=uint, default=0, help="HNSW ef_construction (default 128)")
    create.add_argument("--expansion-search", type=uint, default=0, help="HNSW ef (default 64)")
    create.add_argument("--rerank-factor", type=uint, default=0, help="shortlist k*factor (default 4)")
    create.add_argument(
        "--max-unindexed-rows",
        type=uint,
        default=0,
        help="written rows that may wait for the HNSW index before writes wait for it (default: "
        "16384 from a 1024-d index up, 43008 for a 256-d one); raise it for a bulk load: acks "
        "at storage speed, searches scan those rows meanwhile",
    )
    create.set_defaults(func=_create)

    sub.add_parser("list", parents=[common, output], help="list collections").set_defaults(func=_list)
    get = sub.add_parser("get", parents=[common, output], help="show one collection and its storage stats")
    get.add_argument("name")
    get.set_defaults(func=_get)
    update = sub.add_parser(
        "update",
        parents=[common, output],
        help="change a collection's search settings (no rebuild)",
        description="Change the settings that touch no stored data: they apply to the next search or "
        "write, without a rebuild. An option left out keeps its value; 0 sets the server default.",
    )
    update.add_argument("name")
    update.add_argument("--expansion-search", type=uint, help="HNSW ef: higher finds more, slower")
    update.add_argument(
        "--rerank-factor", type=uint, help="shortlist k*factor reranked on the full vectors (a lossy index)"
    )
    update.add_argument(
        "--max-unindexed-rows", type=uint, help="raise for a bulk load, set back (0) after it"
    )
    update.set_defaults(func=_update)
    tune = sub.add_parser(
        "tune",
        parents=[slow, output],
        help="find the cheapest search settings reaching a recall target on sample queries",
        description="The server computes each query's exact top k (a scan of the stored vectors; "
        "without --queries, on the live searches its recall sampler last drew), "
        "then searches the sample with settings from the cheapest up until one reaches the target "
        "mean recall@k, and (unless --dry-run) keeps it, durably. Other searches are not affected "
        "meanwhile. Exit status 1 when no setting reaches the target (then nothing changes).",
    )
    tune.add_argument("name")
    tune.add_argument(
        "--queries",
        metavar="FILE",
        help="sample queries like your callers' (a few hundred): a 2-D float .npy, a .json list "
        "of lists, or text with one vector a line (default: the live searches the server's recall "
        "sampler last drew; needs --recall-sample-budget > 0 on the server)",
    )
    tune.add_argument("--target-recall", type=float, required=True, help="mean recall@k to reach, in (0, 1]")
    tune.add_argument(
        "--k", type=uint, default=10, help="hits per query of --queries, as your callers ask (default 10)"
    )
    tune.add_argument("--dry-run", action="store_true", help="report what reaches it, change nothing")
    tune.set_defaults(func=_tune)
    checkpoint = sub.add_parser(
        "checkpoint",
        parents=[slow, output],
        help="save a collection's index now (restarts replay less)",
        description="Save the HNSW index of a collection now, so a restart replays fewer commits; "
        "a no-op when nothing changed since the last checkpoint. The server also does this by itself.",
    )
    checkpoint.add_argument("name")
    checkpoint.set_defaults(func=_checkpoint)
    compact = sub.add_parser(
        "compact",
        parents=[slow, output],
        help="reclaim dead rows and removed index entries now",
        description="Copy the live rows of a collection into a fresh vector file and rebuild its index "
        "without removed entries, now (the server also does this by itself past a threshold). "
        "Searches and writes go on meanwhile.",
    )
    compact.add_argument("name")
    compact.set_defaults(func=_compact)
    delete = sub.add_parser("delete", parents=[common, output], help="delete a collection")
    delete.add_argument("name")
    delete.set_defaults(func=_delete)
