"""The `onespace` command: `serve`, `check`, `token` and `emulate-bedrock` here, client commands from
onespace_client.

Scripts run one client command per process, so start time counts: `serve` and `emulate-bedrock`
get their arguments only when they are the command parsed or their help is shown (`_Parser.defer`),
and `onespace info` imports neither the server's modules nor numpy, aiohttp or the media libraries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from onespace import __version__
from onespace_client.cli import CONNECTION_HELP, register, run
from onespace_client.cli._common import EXIT_CODES, add_connection_options

__all__ = ["build_parser", "main"]

log = logging.getLogger("onespace.cli")

SERVE_EXIT_CODES = (
    "Every option also reads ONESPACE_<NAME> (e.g. ONESPACE_PORT); a flag wins over the environment. "
    "exit codes: 0 stopped by SIGTERM/SIGINT after draining; 1 failed at run time (a port in use, an "
    "unusable data directory; --log-level DEBUG logs the traceback); 2 bad settings (a flag or "
    "ONESPACE_* value, the token file, the TLS files, an exposed --host)"
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that can add its arguments when first used rather than when built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, add_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
        """Call `add_arguments(self)` just before this parser parses or formats its help."""
        self._deferred.append(add_arguments)

    def _complete(self) -> None:
        while self._deferred:
            self._deferred.pop(0)(self)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        self._complete()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._complete()
        return super().format_help()

    def format_usage(self) -> str:
        self._complete()
        return super().format_usage()


def _bad_settings(args: argparse.Namespace) -> list[str]:
    """`config.add_arguments` turns a bad ONESPACE_* value into an ArgumentTypeError default, so
    it stops only the command that uses the settings, and only when no flag replaced it."""
    return [str(value) for value in vars(args).values() if isinstance(value, argparse.ArgumentTypeError)]


def _bind_error(host: str, port: int) -> OSError | None:
    """Why `host:port` cannot be bound, found before the server loads its collections; None when
    it can (or when the host does not resolve: the server reports that itself)."""
    if port <= 0:
        return None
    try:
        addresses = socket.getaddrinfo(
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError:
        return None
    error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own bind
            try:
                probe.bind(address)
            except OSError as exc:
                error = exc
                continue
        return None  # one address is enough, as for the server
    return error


def _serve(args: argparse.Namespace) -> int:
    bad = _bad_settings(args)
    if bad:
        for message in bad:
            print(f"onespace serve: {message}", file=sys.stderr)
        return 2
    from onespace.config import settings_from_args

    settings = settings_from_args(args)
    for host, port, flag in (
        (settings.host, settings.port, "port"),
        (settings.metrics_host, settings.metrics_port, "metrics-port"),
    ):
        error = _bind_error(host, port)
        if error is not None:
            variable = "ONESPACE_" + flag.replace("-", "_").upper()
            print(
                f"onespace serve: cannot listen on {host}:{port} (--{flag}, env {variable}): "
                f"{error.strerror or error}",
                file=sys.stderr,
            )
            return 1

    from onespace.app import serve
    from onespace.auth.tokens import TokenFileError
    from onespace.logs import configure_logging
    from onespace.rpc.exposure import ExposureError
    from onespace.rpc.tls import TlsConfigError
    from onespace.tracing import TracingError

    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except (ExposureError, TokenFileError, TlsConfigError, TracingError) as exc:
        print(f"onespace serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a port taken since the check, a data directory it cannot use
        log.debug("onespace serve failed", exc_info=True)
        print(f"onespace serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    from onespace.config import add_arguments

    add_arguments(parser)


def _emulator_arguments(parser: argparse.ArgumentParser) -> None:
    from onespace.emulator.cli import DESCRIPTION, add_arguments

    parser.description = DESCRIPTION
    add_arguments(parser)


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
    parser = _Parser(
        prog="onespace",
        description="One gRPC endpoint, one index, four modalities.",
        epilog=f"Client commands: {EXIT_CODES}. serve: see `onespace serve --help`.",
        allow_abbrev=False,  # an abbreviation meant for the command must not match an option here
    )
    parser.add_argument("--version", action="version", version=f"onespace {__version__}")
    add_connection_options(parser, timeout_help="default: the command's, 30 for most", title=CONNECTION_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the onespace gRPC gateway.",
        usage="%(prog)s [OPTIONS]  (see --help)",
        epilog=SERVE_EXIT_CODES,
    )
    serve.defer(_serve_arguments)
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
    emulator = commands.add_parser(
        "emulate-bedrock",
        help="run a local Bedrock Runtime InvokeModel emulator (Nova, Titan, Cohere embeddings)",
    )
    emulator.defer(_emulator_arguments)
    register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
