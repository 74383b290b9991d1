"""`onespace collections create|list|get|delete`: readable tables, or `--json` for machines."""

from __future__ import annotations

import argparse

from onespace_client import enums
from onespace_client.cli._common import client_for, connection_parent, print_json, runner, uint
from onespace_client.cli.format import key_values, message_dict, table
from onespace_client.v1 import collections_pb2

__all__ = ["add_parser", "collection_rows", "describe"]

_HEADERS = ("NAME", "MODEL", "DIM", "INDEX DIM", "METRIC", "DTYPE", "HNSW M/EFC/EF", "RERANK", "COUNT")


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
            _hnsw(c.config),
            c.config.rerank_factor,
            c.count,
        ]
        for c in collections
    ]


def describe(collection: collections_pb2.Collection) -> str:
    """One collection as aligned `key  value` lines."""
    config = collection.config
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
            ("count", collection.count),
        ]
    )


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
        )
    if args.json:
        print_json(message_dict(collection))
    else:
        print(f"created collection {collection.config.name}")
        print(describe(collection))
    return 0


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
        print(table(_HEADERS, collection_rows(collections), right=(2, 3, 7, 8)))
    return 0


@runner
async def _get(args: argparse.Namespace) -> int:
    """Show one collection."""
    async with client_for(args) as client:
        collection = await client.get_collection(args.name)
    if args.json:
        print_json(message_dict(collection))
    else:
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
    """Registers `collections` and its four subcommands."""
    common = connection_parent()
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    group = commands.add_parser("collections", help="create, list, show and delete collections")
    sub = group.add_subparsers(dest="collections_command", required=True, metavar="ACTION")

    create = sub.add_parser("create", parents=[common, output], help="create a collection")
    create.add_argument("name")
    create.add_argument("--model", default="", help="model id (default: the server's default model)")
    create.add_argument("--dimension", type=uint, default=0, help="stored dimension (default: the model's)")
    create.add_argument(
        "--index-dimension", type=uint, default=0, help="Matryoshka prefix indexed by HNSW (default: all)"
    )
    create.add_argument("--metric", choices=sorted(enums.METRIC_NAMES), help="default cosine")
    create.add_argument("--dtype", choices=list(enums.DTYPE_NAMES), help="index dtype, default f16")
    create.add_argument("--connectivity", type=uint, default=0, help="HNSW M (default 16)")
    create.add_argument("--expansion-add", type=uint, default=0, help="HNSW ef_construction (default 128)")
    create.add_argument("--expansion-search", type=uint, default=0, help="HNSW ef (default 64)")
    create.add_argument("--rerank-factor", type=uint, default=0, help="shortlist k*factor (default 4)")
    create.set_defaults(func=_create)

    sub.add_parser("list", parents=[common, output], help="list collections").set_defaults(func=_list)
    get = sub.add_parser("get", parents=[common, output], help="show one collection")
    get.add_argument("name")
    get.set_defaults(func=_get)
    delete = sub.add_parser("delete", parents=[common, output], help="delete a collection")
    delete.add_argument("name")
    delete.set_defaults(func=_delete)
