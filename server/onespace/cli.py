"""The `onespace` command: `serve`, `check`, `token` and `emulate-bedrock` here, client commands from
onespace_client."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from onespace import __version__
from onespace.config import add_arguments, settings_from_args

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from onespace.app import serve

    settings = settings_from_args(args)
    from onespace.auth.tokens import TokenFileError
    from onespace.logs import configure_logging
    from onespace.rpc.exposure import ExposureError
    from onespace.rpc.tls import TlsConfigError

    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except (ExposureError, TokenFileError, TlsConfigError) as exc:
        print(f"onespace serve: {exc}", file=sys.stderr)
        return 2
    return 0


def _token(args: argparse.Namespace) -> int:
    from onespace.auth.tenancy import check_tenant_id
    from onespace.auth.tokens import hash_token, new_token

    try:
        tenant = check_tenant_id(args.tenant)
    except ValueError as exc:
        print(f"onespace token: {exc}", file=sys.stderr)
        return 2
    token = new_token()
    name = args.name or f"{tenant}-{args.role}"
    print(token)
    print(
        f"# add to the token file (it keeps only the hash; the line above is shown once):\n"
        f'[[tokens]]\nname = "{name}"\nsha256 = "{hash_token(token)}"\ntenant = "{tenant}"\n'
        f'role = "{args.role}"',
        file=sys.stderr,
    )
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
    token = commands.add_parser(
        "token",
        help="make a bearer token and its token-file entry",
        description=(
            "Print a new random bearer token on stdout and, on stderr, the [[tokens]] entry to "
            "append to the server's --auth-tokens file (it holds only the token's SHA-256)."
        ),
    )
    token.add_argument("--tenant", required=True, help="tenant id: [a-z0-9][a-z0-9_-]{0,31}")
    token.add_argument("--role", required=True, choices=("reader", "writer", "admin"))
    token.add_argument("--name", default="", help="a label for the entry (default: tenant-role)")
    token.set_defaults(func=_token)
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
