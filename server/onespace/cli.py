"""The `onespace` command: `serve` and `emulate-bedrock` here, client commands from onespace_client."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from onespace import __version__
from onespace.config import add_arguments, settings_from_args

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from onespace.app import serve

    settings = settings_from_args(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onespace", description="One gRPC endpoint, one index, four modalities."
    )
    parser.add_argument("--version", action="version", version=f"onespace {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the gateway", description="Run the onespace gRPC gateway.")
    add_arguments(serve)
    serve.set_defaults(func=_serve)
    try:
        from onespace.emulator.cli import add_cli as add_emulator
    except ImportError:  # pragma: no cover - the emulator ships with the server package
        pass
    else:
        add_emulator(commands)
    from onespace_client.cli import register

    register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
