"""Argument parsing of every client command (no server needed)."""

from __future__ import annotations

import argparse

import pytest

from onespace.cli import build_parser as onespace_parser
from onespace_client.cli import build_parser, register
from onespace_client.cli._common import Connection, connection


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def conn(*argv: str) -> Connection:
    return connection(parse(*argv))


def test_connection_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONESPACE_TARGET", raising=False)
    assert conn("info") == Connection(target="127.0.0.1:50051", timeout=30.0)
    assert not parse("info").json
    monkeypatch.setenv("ONESPACE_TARGET", "gw:9000")
    assert conn("collections", "list").target == "gw:9000"
    assert conn("info", "--target", "x:1", "--timeout", "2.5") == Connection(target="x:1", timeout=2.5)
    assert conn("ingest", "-c", "c", "p").timeout is None  # streams: no deadline unless asked
    assert conn("info", "--timeout", "0").timeout is None  # 0: none


@pytest.mark.parametrize(
    "argv",
    [
        ["--target", "x:1", "--token", "t", "--timeout", "2", "info"],
        ["info", "--target", "x:1", "--token", "t", "--timeout", "2"],
        ["--target", "x:1", "info", "--token", "t", "--timeout", "2"],
        ["--timeout", "2", "--target", "x:1", "collections", "get", "c", "--token", "t"],
        ["--target", "x:1", "--timeout", "2", "--token", "t", "ingest", "-c", "c", "p"],
    ],
)
def test_connection_options_go_before_or_after_the_command(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONESPACE_TARGET", "env:1")
    for parser in (build_parser(), onespace_parser()):
        resolved = connection(parser.parse_args(argv))
        assert (resolved.target, resolved.token, resolved.timeout) == ("x:1", "t", 2.0)


def test_an_option_after_the_command_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONESPACE_TARGET", raising=False)
    assert conn("--target", "a:1", "info", "--target", "b:2").target == "b:2"
    assert conn("--timeout", "5", "ingest", "-c", "c", "p").timeout == 5.0  # not the command's none
    assert conn("--plaintext", "info").plaintext


def test_collections_create() -> None:
    args = parse(
        "collections", "create", "photos", "--model", "m", "--dimension", "1024", "--index-dimension", "256",
        "--metric", "ip", "--dtype", "i8", "--connectivity", "32", "--expansion-add", "200",
        "--expansion-search", "100", "--rerank-factor", "8", "--stored-dtype", "f32", "--json",
        "--max-unindexed-rows", "100000",
    )  # fmt: skip
    assert (args.name, args.model, args.dimension, args.index_dimension) == ("photos", "m", 1024, 256)
    assert (args.stored_dtype, args.max_unindexed_rows) == ("f32", 100_000)
    assert (args.metric, args.dtype, args.connectivity, args.expansion_add) == ("ip", "i8", 32, 200)
    assert (args.expansion_search, args.rerank_factor, args.json) == (100, 8, True)
    defaults = parse("collections", "create", "c")
    assert (defaults.metric, defaults.dtype, defaults.dimension, defaults.model) == (None, None, 0, "")
    assert (defaults.stored_dtype, defaults.max_unindexed_rows) == (None, 0)
    assert parse("collections", "get", "c").name == "c"
    assert parse("collections", "delete", "c").func is not None


def test_collections_checkpoint_and_compact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONESPACE_TARGET", raising=False)
    for action in ("checkpoint", "compact"):
        args = parse("collections", action, "photos", "--json")
        assert (args.name, args.json, callable(args.func)) == ("photos", True, True)
        assert connection(args).timeout is None  # long work on a big collection: no deadline unless asked
        assert conn("collections", action, "c", "--timeout", "60").timeout == 60.0


@pytest.mark.parametrize(
    "argv",
    [
        ["collections"],
        ["collections", "create", "c", "--metric", "hamming"],
        ["collections", "create", "c", "--dimension", "-1"],
        ["collections", "create", "c", "--dtype", "f64"],
        ["collections", "create", "c", "--stored-dtype", "bf16"],
        ["collections", "create", "c", "--max-unindexed-rows", "-5"],
        ["collections", "checkpoint"],
        ["collections", "compact"],
        ["collections", "compact", "a", "b"],
        ["embed"],
        ["embed", "--text", "a", "--image", "b.png"],
        ["embed", "--text", "a", "--dimension", "0"],
        ["embed", "--text", "a", "--purpose", "nope"],
        ["search", "--text", "a"],
        ["search", "-c", "c"],
        ["search", "-c", "c", "--id", "x", "--vector-file", "q.npy"],
        ["search", "-c", "c", "--id", "x", "--modality", "smell"],
        ["ingest", "-c", "c"],
        ["ingest", "p"],
        ["ingest", "-c", "c", "p", "--metadata", "=v"],
        ["ingest", "-c", "c", "p", "--max-in-flight", "0"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse(*argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_embed_arguments() -> None:
    args = parse(
        "embed", "--video", "clip.mp4", "--model", "m", "--dimension", "384", "--purpose", "clustering"
    )
    assert (args.video, args.text, args.model, args.dimension, args.purpose) == (
        "clip.mp4",
        None,
        "m",
        384,
        "clustering",
    )


def test_search_arguments() -> None:
    args = parse(
        "search", "-c", "photos", "--image", "q.jpg", "-k", "5", "--dimension", "256",
        "--modality", "image", "--modality", "video", "--where", "lang=en", "--where", "k=a=b",
    )  # fmt: skip
    assert (args.collection, args.image, args.k, args.dimension) == ("photos", "q.jpg", 5, 256)
    assert args.modality == ["image", "video"]
    assert args.where == ["lang=en", "k=a=b"]  # parsed by the command: see test_filters.py
    assert parse("search", "-c", "c", "--id", "doc-1").k == 10


def test_ingest_arguments() -> None:
    args = parse(
        "ingest", "--collection", "c", "a", "b.jsonl", "--id-prefix", "x/", "--metadata", "src=cli",
        "--max-in-flight", "4", "--quiet",
    )  # fmt: skip
    assert args.paths == ["a", "b.jsonl"] and args.id_prefix == "x/"
    assert args.metadata == [("src", "cli")] and args.max_in_flight == 4 and args.quiet


def test_register_into_a_foreign_parser() -> None:
    parser = argparse.ArgumentParser(prog="onespace")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve")
    register(commands)
    args = parser.parse_args(["search", "-c", "c", "--text", "q"])
    assert callable(args.func)
    assert parser.parse_args(["serve"]).command == "serve"


def test_a_flag_replaces_a_bad_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from onespace.cli import _bad_settings

    monkeypatch.setenv("ONESPACE_PORT", "notanumber")
    args = onespace_parser().parse_args(["serve", "--port", "5"])
    assert args.port == 5 and _bad_settings(args) == []
    args = onespace_parser().parse_args(["serve"])
    assert _bad_settings(args) == ["ONESPACE_PORT: 'notanumber' is not an integer"]
    assert onespace_parser().parse_args(["info"]).command == "info"  # the server's settings unread


def test_serve_flags_say_what_is_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        onespace_parser().parse_args(["serve", "--port", "x"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "usage: onespace serve [OPTIONS]  (see --help)",
        "onespace serve: error: argument --port: 'x' is not an integer",
    ]
