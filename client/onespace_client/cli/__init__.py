"""The client commands of `onespace`: collections, items, embed, ingest, search, info.

`register(subparsers)` adds them to the main `onespace` parser; each sets `func`, a callable
`(args) -> int` returning the exit code. `main(argv)` runs them standalone (`python -m
onespace_client`), for machines that have the client but not the server installed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from onespace_client.cli import collections, embed, info, ingest, items, search
from onespace_client.cli._common import EXIT_CODES, add_connection_options
from onespace_client.cli._stdout import quiet_on_broken_pipe

__all__ = ["CONNECTION_HELP", "build_parser", "main", "register", "run"]

CONNECTION_HELP = "connection (client commands; also accepted after the command)"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Adds every client command to `subparsers`."""
    collections.add_parser(subparsers)
    items.add_parser(subparsers)
    embed.add_parser(subparsers)
    ingest.add_parser(subparsers)
    search.add_parser(subparsers)
    info.add_parser(subparsers)


def build_parser(prog: str = "onespace") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Client for the onespace embedding gateway.",
        epilog=EXIT_CODES,
        allow_abbrev=False,  # an abbreviation meant for the command must not match an option here
    )
    add_connection_options(parser, timeout_help="default: the command's, 30 for most", title=CONNECTION_HELP)
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parses `argv` and runs the chosen command; a closed stdout ends it quietly (exit 141)."""

    def parse_and_run() -> int:
        args = parser.parse_args(argv)
        code: int = args.func(args)
        return code

    return quiet_on_broken_pipe(parse_and_run)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)
