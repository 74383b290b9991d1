"""The `onespace` command: `serve`, `check` and `emulate-bedrock` here, client commands from
onespace_client."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

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


def _check(args: argparse.Namespace) -> int:
    from onespace.index.check import NotADataDir, check_data_dir, render

    try:
        report = check_data_dir(Path(args.data_dir), quick=args.quick)
    except NotADataDir as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(render(report))
    return report.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onespace", description="One gRPC endpoint, one index, four modalities."
    )
    parser.add_argument("--version", action="version", version=f"onespace {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the gateway", description="Run the onespace gRPC gateway.")
    add_arguments(serve)
    serve.set_defaults(func=_serve)
    check = commands.add_parser(
        "check",
        help="verify a data directory offline",
        description=(
            "Verify a data directory without a server and without changing anything: SQLite "
            "integrity and format, that the vector files hold every committed row, the crc32 of "
            "every live vector, the index checkpoint's sha256. Exit 0: no corruption (warnings "
            "are things the server repairs by itself on start), 1: a collection is corrupt, "
            "2: not a data directory. Run it while the server is stopped."
        ),
    )
    check.add_argument("data_dir", metavar="DATA_DIR", help="the server's --data-dir")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument(
        "--quick", action="store_true", help="SQLite quick_check instead of the slower integrity_check"
    )
    check.set_defaults(func=_check)
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
