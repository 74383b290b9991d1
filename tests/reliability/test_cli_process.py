"""The `onespace` command as real processes, where a user meets it: output into a closed pipe, a
port already taken, a bad ONESPACE_* value, a gateway that is not running. Each ends with one line
on stderr and a documented exit code, never a traceback; and a client command loads no server code."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.serve import Server

ONESPACE = [sys.executable, "-m", "onespace.cli"]


def onespace(
    *argv: str, env: dict[str, str] | None = None, stdout: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ONESPACE, *argv],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("cli") / "data")
    try:
        yield running
    finally:
        assert running.terminate() == 0, running.output


@pytest.fixture
def target(server: Server) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A port someone else is already listening on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken


def into_a_closed_pipe(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader is already gone (`| head` that has exited)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return onespace(*argv, stdout=write_end)
    finally:
        os.close(write_end)


def one_line(text: str) -> str:
    assert "Traceback" not in text, text
    assert text.endswith("\n") and text.count("\n") == 1, text
    return text.strip()


@pytest.mark.parametrize(
    "argv",
    [["collections", "list", "--json"], ["info"], ["info", "--json"], ["items", "get", "-c", "x", "a"]],
)
def test_output_into_a_closed_pipe_exits_141_quietly(target: str, argv: list[str]) -> None:
    if argv[0] == "items":
        assert onespace("collections", "create", "x", "--target", target).returncode in (0, 1)
    done = into_a_closed_pipe("--target", target, *argv)
    assert (done.returncode, done.stderr) == (141, "")


def test_help_into_a_closed_pipe_has_no_traceback() -> None:
    done = into_a_closed_pipe("--help")
    assert done.returncode in (0, 141) and done.stderr == ""


def test_a_port_in_use_is_one_line_and_exit_1(listening: socket.socket, tmp_path: Path) -> None:
    port = listening.getsockname()[1]
    done = onespace("serve", "--port", str(port), "--metrics-port", "-1", "--data-dir", str(tmp_path))
    assert done.returncode == 1
    assert one_line(done.stderr) == (
        f"onespace serve: cannot listen on 127.0.0.1:{port} (--port, env ONESPACE_PORT): "
        "Address already in use"
    )
    assert not (tmp_path / "data").exists()


def test_a_metrics_port_in_use_names_its_flag(listening: socket.socket, tmp_path: Path) -> None:
    port = listening.getsockname()[1]
    done = onespace("serve", "--port", "0", "--metrics-port", str(port), "--data-dir", str(tmp_path))
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith(f"onespace serve: cannot listen on 127.0.0.1:{port} (--metrics-port, env ")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ONESPACE_PORT", "notanumber", "ONESPACE_PORT: 'notanumber' is not an integer"),
        ("ONESPACE_GRACE_SECONDS", "soon", "ONESPACE_GRACE_SECONDS: 'soon' is not a number"),
        ("ONESPACE_INSECURE", "maybe", "ONESPACE_INSECURE: 'maybe' is not a boolean"),
        ("ONESPACE_PROVIDER", "magic", "ONESPACE_PROVIDER: 'magic' is not one of local, bedrock"),
        ("ONESPACE_INDEX_NICE", "-1", "ONESPACE_INDEX_NICE: '-1' is not between 0 and 19"),
        (
            "ONESPACE_RECALL_SAMPLE_BUDGET",
            "1.5",
            "ONESPACE_RECALL_SAMPLE_BUDGET: '1.5' is not between 0 and 1",
        ),
    ],
)
def test_a_bad_environment_value_names_the_variable_and_exits_2(
    variable: str, value: str, message: str, tmp_path: Path
) -> None:
    done = onespace("serve", "--data-dir", str(tmp_path), env={variable: value})
    assert done.returncode == 2
    assert one_line(done.stderr).startswith(f"onespace serve: {message}")


def test_a_flag_out_of_its_bounds_names_the_flag_and_exits_2(tmp_path: Path) -> None:
    done = onespace("serve", "--data-dir", str(tmp_path), "--index-nice", "25")
    assert done.returncode == 2
    assert "argument --index-nice: '25' is not between 0 and 19" in done.stderr


def test_a_bad_server_variable_does_not_break_client_commands(target: str) -> None:
    done = onespace("info", "--json", "--target", target, env={"ONESPACE_PORT": "notanumber"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["models"]


def test_a_gateway_that_is_not_running_is_one_line_with_a_hint() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for argv in (
        ["info", "--target", f"127.0.0.1:{port}"],
        ["--target", f"127.0.0.1:{port}", "collections", "list"],
    ):
        done = onespace(*argv)
        assert done.returncode == 1
        line = one_line(done.stderr)
        assert line.startswith("error: UNAVAILABLE: ")
        assert f"the gateway at 127.0.0.1:{port} is unavailable" in line
        assert "--target or ONESPACE_TARGET" in line


_SERVER_ONLY = ("numpy", "aiohttp", "PIL", "av", "soundfile", "usearch", "tqdm", "onespace.config",
                "onespace.app", "onespace.emulator", "onespace.providers", "onespace.engine")  # fmt: skip
_PROBE = """
import json, sys
from onespace.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize(
    "argv", [["info", "--help"], ["info"], ["collections", "list"], ["search", "--help"]]
)
def test_client_commands_load_no_server_or_media_modules(target: str, argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv, *([] if "--help" in argv else ["--target", target])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stderr.splitlines()[-1])
    loaded = [m for m in modules if any(m == name or m.startswith(name + ".") for name in _SERVER_ONLY)]
    assert loaded == []


def test_ingest_json_and_items_against_a_real_gateway(target: str, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a cat on a mat", encoding="utf-8")
    (tmp_path / "b.txt").write_text("a dog in a fog", encoding="utf-8")
    assert onespace("--target", target, "collections", "create", "real").returncode == 0
    done = onespace("--target", target, "ingest", "-c", "real", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["sent"], report["stored"], report["failed"], report["failures"]) == (2, 2, 0, [])
    done = onespace("items", "get", "-c", "real", "a.txt", "--vectors", "--json", "--target", target)
    assert done.returncode == 0, done.stderr
    (stored,) = json.loads(done.stdout)["items"]
    assert stored["id"] == "a.txt" and stored["modality"] == "MODALITY_TEXT" and len(stored["vector"]) > 0
    done = onespace("items", "delete", "-c", "real", "a.txt", "zzz", "--target", target)
    assert (done.returncode, done.stdout) == (0, "deleted 1 of 2 items from real (1 did not exist)\n")
    missing = onespace("ingest", "-c", "nope", str(tmp_path), "--target", target)
    assert missing.returncode == 1 and missing.stdout == ""
    assert one_line(missing.stderr) == "error: NOT_FOUND: collection 'nope' not found"


def test_a_port_taken_after_the_check_is_still_one_line(
    listening: socket.socket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The race the early check cannot see: grpc's own bind fails (tls.add_port makes its bare
    RuntimeError an OSError naming the address)."""
    from onespace import cli

    monkeypatch.setattr(cli, "_bind_error", lambda host, port: None)
    monkeypatch.setattr("onespace.logs.configure_logging", lambda *args: None)  # keep pytest's logging
    port = listening.getsockname()[1]
    code = cli.main(["serve", "--port", str(port), "--metrics-port", "-1", "--data-dir", str(tmp_path)])
    assert code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("onespace serve:")]
    assert len(lines) == 1 and lines[0].startswith(f"onespace serve: cannot listen on 127.0.0.1:{port}: ")
