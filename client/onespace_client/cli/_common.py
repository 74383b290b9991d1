"""What every client command shares: connection flags, running a coroutine, error reporting.

gRPC failures print `error: <STATUS_CODE>: <details>` and exit 2, bad local input (a missing
file, a malformed key=value) prints `error: <message>` and exits 2 too; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
import grpc.aio

from onespace_client.async_client import DEFAULT_TARGET, AsyncClient
from onespace_client.errors import OnespaceClientError

__all__ = [
    "EXIT_ERROR",
    "EXIT_FAILURES",
    "CliError",
    "client_for",
    "connection_parent",
    "key_value",
    "positive",
    "print_json",
    "runner",
    "status_name",
    "uint",
]

EXIT_FAILURES = 1  # the command ran, some items failed
EXIT_ERROR = 2  # the command could not run: a gRPC error or bad input
_STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class CliError(Exception):
    """Bad local input, reported as `error: <message>` without a traceback."""


def status_name(code: int) -> str:
    """`3` as `INVALID_ARGUMENT`, for per-item errors that carry the number."""
    return _STATUS_NAMES.get(code, str(code))


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def connection_parent(*, timeout: float | None = 30.0) -> argparse.ArgumentParser:
    """--target, TLS and --timeout, shared by every command through `parents=`."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--target",
        default=os.environ.get("ONESPACE_TARGET", DEFAULT_TARGET),
        help="gateway address host:port (env ONESPACE_TARGET, default %(default)s); plaintext to a "
        "loopback address, TLS to any other",
    )
    parent.add_argument(
        "--token",
        default=os.environ.get("ONESPACE_TOKEN") or None,
        help="bearer token for a gateway run with --auth-tokens (env ONESPACE_TOKEN; prefer the env: "
        "a flag shows in the process list)",
    )
    tls = parent.add_argument_group("TLS (default: plaintext to a loopback --target, TLS to any other)")
    for flag, env, what in (
        ("--tls-ca", "ONESPACE_TLS_CA", "PEM CA certificates to trust (default: grpc's public roots)"),
        ("--tls-cert", "ONESPACE_CLIENT_TLS_CERT", "PEM client certificate (mutual TLS)"),
        ("--tls-key", "ONESPACE_CLIENT_TLS_KEY", "PEM private key of --tls-cert"),
    ):
        tls.add_argument(
            flag, default=os.environ.get(env) or None, metavar="FILE", help=f"{what} (env {env})"
        )
    tls.add_argument(
        "--plaintext",
        action="store_true",
        default=_env_flag("ONESPACE_PLAINTEXT"),
        help="no TLS even to a non-loopback target: a server run with --insecure (env ONESPACE_PLAINTEXT=1)",
    )
    what = f"default {timeout:g}" if timeout is not None else "default: none"
    parent.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        metavar="SECONDS",
        help=f"deadline of the call in seconds, 0 for none ({what})",
    )
    return parent


def client_for(args: argparse.Namespace) -> AsyncClient:
    """An AsyncClient for --target (TLS per the connection flags) whose deadline is --timeout."""
    timeout: float | None = args.timeout or None
    if (args.tls_cert is None) != (args.tls_key is None):
        raise CliError(
            "--tls-cert and --tls-key go together (env ONESPACE_CLIENT_TLS_CERT, ONESPACE_CLIENT_TLS_KEY)"
        )
    if args.plaintext and (args.tls_ca or args.tls_cert):
        raise CliError(
            "--plaintext contradicts --tls-ca/--tls-cert/--tls-key (or their ONESPACE_TLS_CA / "
            "ONESPACE_CLIENT_TLS_* env)"
        )
    try:
        return AsyncClient(
            args.target,
            timeout=timeout,
            stream_timeout=timeout,
            tls=False if args.plaintext else None,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            token=args.token,
        )
    except OSError as exc:
        raise CliError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from exc


def key_value(text: str) -> tuple[str, str]:
    """argparse type for `key=value`."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def uint(text: str) -> int:
    """argparse type for a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def positive(text: str) -> int:
    """argparse type for a whole number >= 1."""
    value = uint(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def runner(
    command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
) -> Callable[[argparse.Namespace], int]:
    """Wraps an async command as the `func=` argparse calls: runs it, maps errors to exit codes."""

    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(command(args))
        except OnespaceClientError as exc:
            return _fail(f"{exc.code.name}: {exc.details}")
        except grpc.aio.AioRpcError as exc:
            return _fail(f"{exc.code().name}: {exc.details()}")
        except CliError as exc:
            return _fail(str(exc))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    run.__doc__ = command.__doc__
    return run
