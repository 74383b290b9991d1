"""The client commands of `onespace`: collections, embed, ingest, search, info.

`register(subparsers)` adds them to the main `onespace` parser; each sets `func`, a callable
`(args) -> int` returning the exit code. `main(argv)` runs them standalone (`python -m
onespace_client`), for machines that have the client but not the server installed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from onespace_client.cli import collections, embed, info, ingest, search

__all__ = ["build_parser", "main", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds every client command to `subparsers`."""
    collections.add_parser(subparsers)
    embed.add_parser(subparsers)
    ingest.add_parser(subparsers)
    search.add_parser(subparsers)
    info.add_parser(subparsers)


def build_parser(prog: str = "onespace") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Client for the onespace embedding gateway.")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
