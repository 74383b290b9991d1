"""`onespace items get|delete`: read stored items back by id, or remove them.

`get` prints a table (id, modality, every metadata key) or, with `--json`, the Get response with
vectors as numbers; ids that are not stored are named on stderr and make the exit code 1, like a
lookup that found nothing. `delete` is idempotent: ids that did not exist are counted, not failed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from onespace_client import enums, vectors
from onespace_client.cli._common import EXIT_FAILURES, client_for, connection_parent, print_json, runner
from onespace_client.cli.format import l2_norm, message_dict, table, vector_preview
from onespace_client.v1 import data_pb2

__all__ = ["add_parser", "metadata_text", "render"]


def metadata_text(metadata: Any) -> str:
    """Every `k=v` in key order; `-` when there is none."""
    return ", ".join(f"{k}={metadata[k]}" for k in sorted(metadata)) or "-"


def render(response: data_pb2.GetResponse, *, with_vectors: bool = False) -> str:
    """One row per item found: id, modality, metadata, and the start of the vector (read from the
    float field: `vectors.expand` the items first) when asked for."""
    headers = ["ID", "MODALITY", "METADATA"]
    rows: list[list[object]] = []
    for stored in response.items:
        row: list[object] = [stored.id, enums.modality_name(stored.modality), metadata_text(stored.metadata)]
        if with_vectors:
            values = list(stored.vector)
            row.append(f"{vector_preview(values, 4)} dim {len(values)}, norm {l2_norm(values):.4f}")
        rows.append(row)
    if with_vectors:
        headers.append("VECTOR")
    return table(headers, rows) if rows else "no items found"


@runner
async def _get(args: argparse.Namespace) -> int:
    """Show stored items."""
    async with client_for(args) as client:
        response = await client.get(args.collection, args.ids, include_vectors=args.vectors)
    for stored in response.items:
        vectors.expand(stored)  # numbers, in the table and in JSON (not base64 of packed floats)
    if args.json:
        print_json(message_dict(response))
    else:
        print(render(response, with_vectors=args.vectors))
    if response.missing_ids:
        print(f"not found: {', '.join(response.missing_ids)}", file=sys.stderr)
        return EXIT_FAILURES
    return 0


@runner
async def _delete(args: argparse.Namespace) -> int:
    """Delete items."""
    async with client_for(args) as client:
        deleted = await client.delete(args.collection, args.ids)
    requested = len(set(args.ids))
    if args.json:
        print_json({"deleted": deleted, "requested": requested})
    else:
        absent = f" ({requested - deleted} did not exist)" if deleted < requested else ""
        print(f"deleted {deleted} of {requested} items from {args.collection}{absent}")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `items` and its subcommands."""
    common = connection_parent()
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--collection", "-c", required=True, help="the collection holding the items")
    target.add_argument("ids", nargs="+", metavar="ID", help="item ids")
    target.add_argument("--json", action="store_true", help="print JSON instead of text")
    group = commands.add_parser("items", help="read stored items back by id, or delete them")
    sub = group.add_subparsers(dest="items_command", required=True, metavar="ACTION")
    get = sub.add_parser(
        "get",
        parents=[common, target],
        help="show items: id, modality, metadata (and vectors)",
        description="Show stored items. Ids that are not stored are listed on stderr; the exit code "
        "is then 1.",
    )
    get.add_argument("--vectors", action="store_true", help="include the stored vectors")
    get.set_defaults(func=_get)
    delete = sub.add_parser(
        "delete",
        parents=[common, target],
        help="delete items by id",
        description="Delete items by id; ids that do not exist are counted, not an error.",
    )
    delete.set_defaults(func=_delete)
