"""TLS connection flags and their environment variables, and how the client picks its channel."""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc
import pytest

from onespace_client import AsyncClient, Client
from onespace_client.async_client import _credentials_for, is_local_target
from onespace_client.cli import build_parser
from onespace_client.cli._common import CliError, Connection, client_for, connection

_TLS_ENV = ("ONESPACE_TLS_CA", "ONESPACE_CLIENT_TLS_CERT", "ONESPACE_CLIENT_TLS_KEY", "ONESPACE_PLAINTEXT")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*_TLS_ENV, "ONESPACE_TARGET"):
        monkeypatch.delenv(name, raising=False)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def conn(*argv: str) -> Connection:
    return connection(parse(*argv))


def test_tls_flags_default_to_off() -> None:
    args = conn("info")
    assert (args.tls_ca, args.tls_cert, args.tls_key, args.plaintext) == (None, None, None, False)


@pytest.mark.parametrize(
    "argv",
    [
        ["info"],
        ["collections", "list"],
        ["collections", "compact", "c"],
        ["embed", "--text", "a"],
        ["search", "-c", "c", "--text", "a"],
        ["ingest", "-c", "c", "p"],
    ],
)
def test_every_command_takes_the_tls_flags(argv: list[str]) -> None:
    args = conn(*argv, "--tls-ca", "ca.pem", "--tls-cert", "me.pem", "--tls-key", "me.key", "--plaintext")
    assert (args.tls_ca, args.tls_cert, args.tls_key, args.plaintext) == ("ca.pem", "me.pem", "me.key", True)


def test_tls_flags_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONESPACE_TLS_CA", "env-ca.pem")
    monkeypatch.setenv("ONESPACE_CLIENT_TLS_CERT", "env.pem")
    monkeypatch.setenv("ONESPACE_CLIENT_TLS_KEY", "env.key")
    monkeypatch.setenv("ONESPACE_PLAINTEXT", "yes")
    args = conn("info")
    assert (args.tls_ca, args.tls_cert, args.tls_key) == ("env-ca.pem", "env.pem", "env.key")
    assert args.plaintext
    assert conn("info", "--tls-ca", "flag.pem").tls_ca == "flag.pem"  # flag > environment
    assert conn("--tls-ca", "flag.pem", "info").tls_ca == "flag.pem"  # before the command too
    monkeypatch.setenv("ONESPACE_TLS_CA", "")  # empty: unset
    monkeypatch.setenv("ONESPACE_PLAINTEXT", "0")
    args = conn("info")
    assert (args.tls_ca, args.plaintext) == (None, False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls-cert", "me.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-key", "me.key"], "--tls-cert and --tls-key go together"),
        (["--plaintext", "--tls-ca", "ca.pem"], "--plaintext contradicts"),
        (["--tls-ca", "/no/such/ca.pem"], "cannot read TLS file /no/such/ca.pem"),
    ],
)
def test_bad_tls_flags_are_cli_errors(argv: list[str], message: str) -> None:
    with pytest.raises(CliError, match=message):
        client_for(parse("info", *argv))


@pytest.mark.parametrize(
    ("target", "local"),
    [
        ("127.0.0.1:50051", True),
        ("127.1.2.3:1", True),
        ("localhost:50051", True),
        ("LOCALHOST", True),
        ("[::1]:50051", True),
        ("::1", True),
        ("0.0.0.0:50051", True),
        ("dns:///localhost:50051", True),
        ("ipv4:127.0.0.1:50051", True),
        ("unix:/run/onespace.sock", True),
        ("gw:50051", False),
        ("gateway.example.com:443", False),
        ("10.0.0.5:50051", False),
        ("[2001:db8::1]:50051", False),
        ("dns:///gateway.example.com:443", False),
    ],
)
def test_local_targets(target: str, local: bool) -> None:
    assert is_local_target(target) is local


def test_the_channel_is_plaintext_only_to_local_targets_by_default(tmp_path: Path) -> None:
    assert _credentials_for("127.0.0.1:1", None, None, None, None, None) is None
    assert isinstance(_credentials_for("gw:1", None, None, None, None, None), grpc.ChannelCredentials)
    assert _credentials_for("gw:1", False, None, None, None, None) is None  # a server run with --insecure
    assert _credentials_for("127.0.0.1:1", True, None, None, None, None) is not None
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")  # read, not parsed, by the client
    for source in (ca, str(ca), ca.read_bytes()):
        assert _credentials_for("127.0.0.1:1", None, None, source, None, None) is not None
    ready = grpc.ssl_channel_credentials()
    assert _credentials_for("127.0.0.1:1", None, ready, None, None, None) is ready


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"tls_cert": b"c"}, "tls_cert and tls_key go together"),
        ({"tls_key": b"k"}, "tls_cert and tls_key go together"),
        ({"tls": False, "tls_ca": b"ca"}, "contradicts"),
        ({"tls": False, "credentials": grpc.ssl_channel_credentials()}, "contradicts"),
        ({"tls_ca": b"ca", "credentials": grpc.ssl_channel_credentials()}, "not both"),
    ],
)
def test_contradictory_client_options_are_refused(kwargs: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Client("127.0.0.1:1", **kwargs)  # type: ignore[arg-type]


async def test_a_missing_file_fails_at_construction() -> None:
    with pytest.raises(FileNotFoundError):
        AsyncClient("127.0.0.1:1", tls_ca="/no/such/ca.pem")
