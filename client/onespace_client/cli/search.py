"""`onespace search`: nearest items to a text, a file, a vector file or a stored id, with
`--modality` and `--where` filters."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from onespace_client import enums
from onespace_client.cli._common import CliError, client_for, connection_parent, positive, print_json, runner
from onespace_client.cli.embed import add_content_arguments, content_from_args
from onespace_client.cli.format import abbreviate, message_dict, table, timings_text
from onespace_client.cli.vectors import load_vector
from onespace_client.filters import WHERE_SYNTAX, parse_condition
from onespace_client.v1 import search_pb2

__all__ = ["WHERE_HELP", "add_parser", "parse_where", "render"]

WHERE_HELP = (
    f"metadata filter, repeatable (all must hold): {WHERE_SYNTAX}. Values are compared as exact "
    "strings; != and !=in: also match items without the key; numeric tests match only values "
    "that read as numbers. Quote it for the shell: --where 'year>=2000'"
)


def parse_where(clauses: Sequence[str]) -> tuple[dict[str, str], list[search_pb2.Condition]]:
    """`--where` clauses as the filter's `metadata` and `conditions`.

    A plain KEY=VALUE goes in `metadata` (as it always did, so servers that predate conditions
    still apply it); every other clause, and a second equality on the same key, becomes a
    condition, in the order given. CliError names the first malformed clause.
    """
    metadata: dict[str, str] = {}
    conditions: list[search_pb2.Condition] = []
    for clause in clauses:
        try:
            condition = parse_condition(clause)
        except ValueError as exc:
            raise CliError(f"--where {exc}") from None
        if condition.WhichOneof("test") == "equals" and condition.key not in metadata:
            metadata[condition.key] = condition.equals
        else:
            conditions.append(condition)
    return metadata, conditions


def render(response: search_pb2.SearchResponse) -> str:
    """A table of hits (rank, score to 4 decimals, id, modality, metadata), then model and timings."""
    rows = [
        [rank, f"{hit.score:.4f}", hit.id, enums.modality_name(hit.modality), abbreviate(hit.metadata)]
        for rank, hit in enumerate(response.hits, start=1)
    ]
    body = (
        table(("RANK", "SCORE", "ID", "MODALITY", "METADATA"), rows, right=(0, 1)) if rows else "no results"
    )
    footer = f"model {response.model}, dimension {response.dimension}, {timings_text(response.timings)}"
    return f"{body}\n{footer}"


@runner
async def _search(args: argparse.Namespace) -> int:
    """Search a collection."""
    metadata, conditions = parse_where(args.where or ())
    vector: list[float] | None = None
    if args.vector_file is not None:
        try:
            vector = load_vector(args.vector_file)
        except OSError as exc:
            raise CliError(f"cannot read {exc.filename}: {exc.strerror}") from None
        except ValueError as exc:
            raise CliError(f"bad vector file {args.vector_file}: {exc}") from None
    query = content_from_args(args)
    async with client_for(args) as client:
        response = await client.search(
            args.collection,
            content=query,
            vector=vector,
            id=args.id,
            k=args.k,
            dimension=args.dimension,
            modalities=args.modality or (),
            metadata=metadata,
            conditions=conditions,
            purpose=args.purpose,
        )
    if args.json:
        print_json(message_dict(response))
    else:
        print(render(response))
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `search`."""
    parser = commands.add_parser("search", parents=[connection_parent()], help="search a collection")
    parser.add_argument("--collection", "-c", required=True, help="collection to search")
    query = parser.add_mutually_exclusive_group(required=True)
    add_content_arguments(query)
    query.add_argument("--vector-file", metavar="FILE", help="query vector: .npy, .json list or plain text")
    query.add_argument("--id", help="use a stored item's vector as the query")
    parser.add_argument("--k", "-k", type=positive, default=10, help="number of results (default 10)")
    parser.add_argument("--dimension", type=positive, help="Matryoshka dimension to rank with")
    parser.add_argument(
        "--modality", action="append", choices=list(enums.MODALITY_NAMES), help="only these modalities"
    )
    parser.add_argument("--where", action="append", metavar="CONDITION", help=WHERE_HELP)
    parser.add_argument("--purpose", choices=list(enums.PURPOSE_NAMES), help="query embedding purpose")
    parser.add_argument("--json", action="store_true", help="print the full response as JSON")
    parser.set_defaults(func=_search)
