"""What every client command shares: connection options, running a coroutine, exit codes.

Exit codes (`EXIT_CODES`, shown in `--help`): 0 done; 1 the command ran and failed: the gateway
is unreachable, a call failed (`error: <STATUS_CODE>: <details>`) or some items failed; 2 the
command could not start: bad arguments or local input (a missing file, a malformed --where),
`error: <message>`; 130 interrupted; 141 stdout was closed early (`| head`). One line on stderr,
never a traceback.

The connection options are accepted before the command (`onespace --target h:p info`) and after
it (`onespace info --target h:p`): both parsers declare them without an argparse default, so a
value given before the command is not overwritten by the sub-parser's default; `connection()`
fills in the environment and the defaults when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onespace_client.async_client import AsyncClient

__all__ = [
    "EXIT_CODES",
    "EXIT_FAILURES",
    "EXIT_USAGE",
    "CliError",
    "Connection",
    "add_connection_options",
    "client_for",
    "connection",
    "connection_parent",
    "key_value",
    "positive",
    "print_json",
    "runner",
    "status_name",
    "uint",
]

EXIT_FAILURES = 1  # the command ran and failed: unreachable, a failed call, failed items
EXIT_USAGE = 2  # the command could not start: bad arguments or local input
EXIT_INTERRUPTED = 130
EXIT_CODES = (
    "exit codes: 0 done; 1 failed: the gateway is unreachable, a call failed or some items failed; "
    "2 bad arguments or local input (nothing was sent); 130 interrupted; 141 stdout was closed "
    "early (e.g. `| head`: like a tool stopped by SIGPIPE, the rest of the output is dropped "
    "quietly)"
)
DEFAULT_TARGET = "127.0.0.1:50051"  # = async_client.DEFAULT_TARGET, kept here so --help needs no grpc
_TRUE = {"1", "true", "yes", "on"}


class CliError(Exception):
    """Bad local input, reported as `error: <message>` without a traceback."""


@functools.cache
def _status_names() -> dict[int, str]:
    import grpc

    return {status.value[0]: status.name for status in grpc.StatusCode}


def status_name(code: int) -> str:
    """`3` as `INVALID_ARGUMENT`, for per-item errors that carry the number."""
    return _status_names().get(code, str(code))


def add_connection_options(
    parser: argparse.ArgumentParser, *, timeout_help: str, title: str | None = None
) -> None:
    """--target, --token, TLS and --timeout on `parser` (in one group when `title` is given), with
    no argparse defaults: `connection()` resolves them."""
    none = argparse.SUPPRESS
    options: argparse._ActionsContainer = parser.add_argument_group(title) if title else parser
    tls = options if title else parser.add_argument_group(_TLS_TITLE)
    options.add_argument(
        "--target",
        default=none,
        help=f"gateway address host:port (env ONESPACE_TARGET, default {DEFAULT_TARGET}); plaintext "
        "to a loopback address, TLS to any other",
    )
    options.add_argument(
        "--token",
        default=none,
        help="bearer token for a gateway run with --auth-tokens (env ONESPACE_TOKEN; prefer the env: "
        "a flag shows in the process list)",
    )
    for flag, env, what in _TLS_FLAGS:
        tls.add_argument(flag, default=none, metavar="FILE", help=f"{what} (env {env})")
    tls.add_argument(
        "--plaintext",
        action="store_true",
        default=none,
        help="no TLS even to a non-loopback target: a server run with --insecure (env ONESPACE_PLAINTEXT=1)",
    )
    options.add_argument(
        "--timeout",
        type=float,
        default=none,
        metavar="SECONDS",
        help=f"deadline of the call in seconds, 0 for none ({timeout_help})",
    )


_TLS_TITLE = "TLS (default: plaintext to a loopback --target, TLS to any other)"
_TLS_FLAGS = (
    ("--tls-ca", "ONESPACE_TLS_CA", "PEM CA certificates to trust (default: grpc's public roots)"),
    ("--tls-cert", "ONESPACE_CLIENT_TLS_CERT", "PEM client certificate (mutual TLS)"),
    ("--tls-key", "ONESPACE_CLIENT_TLS_KEY", "PEM private key of --tls-cert"),
)


def connection_parent(*, timeout: float | None = 30.0) -> argparse.ArgumentParser:
    """The connection options for a command's `parents=`; `timeout` is the command's default."""
    parent = argparse.ArgumentParser(add_help=False)
    what = "default: none" if timeout is None else f"default {timeout:g}"
    add_connection_options(parent, timeout_help=what)
    parent.set_defaults(command_timeout=timeout)
    return parent


@dataclass(frozen=True, slots=True)
class Connection:
    """Where and how a command connects: flag > environment > default, resolved when it runs."""

    target: str = DEFAULT_TARGET
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    plaintext: bool = False
    timeout: float | None = 30.0


def connection(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Connection:
    """The command's Connection: its flags (before or after the command), else `ONESPACE_*`."""
    env = os.environ if env is None else env
    given = vars(args)

    def pick(dest: str, variable: str) -> str | None:
        return given.get(dest) or env.get(variable) or None

    timeout = given["timeout"] if "timeout" in given else given.get("command_timeout", 30.0)
    return Connection(
        target=pick("target", "ONESPACE_TARGET") or DEFAULT_TARGET,
        token=pick("token", "ONESPACE_TOKEN"),
        tls_ca=pick("tls_ca", "ONESPACE_TLS_CA"),
        tls_cert=pick("tls_cert", "ONESPACE_CLIENT_TLS_CERT"),
        tls_key=pick("tls_key", "ONESPACE_CLIENT_TLS_KEY"),
        plaintext=bool(given.get("plaintext")) or env.get("ONESPACE_PLAINTEXT", "").strip().lower() in _TRUE,
        timeout=timeout or None,
    )


def client_for(args: argparse.Namespace) -> AsyncClient:
    """An AsyncClient for the command's Connection, whose deadline is --timeout."""
    from onespace_client.async_client import AsyncClient

    conn = connection(args)
    if (conn.tls_cert is None) != (conn.tls_key is None):
        raise CliError(
            "--tls-cert and --tls-key go together (env ONESPACE_CLIENT_TLS_CERT, ONESPACE_CLIENT_TLS_KEY)"
        )
    if conn.plaintext and (conn.tls_ca or conn.tls_cert):
        raise CliError(
            "--plaintext contradicts --tls-ca/--tls-cert/--tls-key (or their ONESPACE_TLS_CA / "
            "ONESPACE_CLIENT_TLS_* env)"
        )
    try:
        return AsyncClient(
            conn.target,
            timeout=conn.timeout,
            stream_timeout=conn.timeout,
            tls=False if conn.plaintext else None,
            tls_ca=conn.tls_ca,
            tls_cert=conn.tls_cert,
            tls_key=conn.tls_key,
            token=conn.token,
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


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _call_failed(code_name: str, details: str, args: argparse.Namespace) -> int:
    """One line for a failed call, with a hint where the flags can help."""
    if code_name == "UNAVAILABLE":
        hint = (
            f"the gateway at {connection(args).target} is unavailable; is it running? Set its "
            "address with --target or ONESPACE_TARGET"
        )
        return _fail(f"UNAVAILABLE: {details} ({hint})", EXIT_FAILURES)
    if code_name == "DEADLINE_EXCEEDED":
        hint = "a longer --timeout, or 0 for none, may help"
        return _fail(f"DEADLINE_EXCEEDED: {details} ({hint})", EXIT_FAILURES)
    return _fail(f"{code_name}: {details}", EXIT_FAILURES)


def runner(
    command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
) -> Callable[[argparse.Namespace], int]:
    """Wraps an async command as the `func=` argparse calls: runs it, maps errors to exit codes."""

    def run(args: argparse.Namespace) -> int:
        import grpc.aio

        from onespace_client.errors import OnespaceClientError

        try:
            return asyncio.run(command(args))
        except OnespaceClientError as exc:
            return _call_failed(exc.code.name, exc.details, args)
        except grpc.aio.AioRpcError as exc:
            return _call_failed(exc.code().name, exc.details() or "", args)
        except CliError as exc:
            return _fail(str(exc), EXIT_USAGE)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    run.__doc__ = command.__doc__
    return run
