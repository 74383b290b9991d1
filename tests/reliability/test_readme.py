"""The README's quickstart works exactly as written, against `onespace serve` on the defaults."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.test_serve_process import Server

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def fenced_after(heading: str, language: str) -> str:
    section = README.split(heading, 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block after {heading}"
    return match.group(1)


def test_the_first_two_commands_are_setup_serve_and_the_ci_test_command() -> None:
    first = fenced_after("# onespace", "bash").strip().splitlines()
    assert first[0].startswith("bash .ci/setup && .venv/bin/onespace serve")
    assert first[1].startswith("bash .ci/run")
    assert "bash .ci/setup" in (ROOT / ".ci" / "run").read_text()


def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    try:
        env = {**os.environ, "ONESPACE_TARGET": f"127.0.0.1:{server.port}"}
        bindir = Path(sys.executable).parent
        outputs = []
        for line in fenced_after("## Quickstart", "bash").strip().splitlines():
            argv = shlex.split(line)
            assert argv[0] == ".venv/bin/onespace"
            argv[0] = str(bindir / "onespace")
            done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
        assert "ingested 10 items (0 failed)" in outputs[1]
        assert re.search(r"^\s+1\s+\S+\s+cats\.txt", outputs[2], re.M), outputs[2]
        assert re.search(r"^\s+1\s+1\.0000\s+sunset\.png", outputs[3], re.M), outputs[3]
    finally:
        assert server.terminate() == 0


def test_python_snippet_runs(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    try:
        target = f"127.0.0.1:{server.port}"
        setup = (
            f"from onespace_client import Client, content\n"
            f"with Client({target!r}) as c:\n"
            f"    c.create_collection('media')\n"
            f"    c.upsert('media', [__import__('onespace_client').item('h', 'a sunny harbour')])\n"
        )
        snippet = fenced_after("From Python:", "python").replace("127.0.0.1:50051", target)
        done = subprocess.run(
            [sys.executable, "-c", setup + snippet], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["h", "1.0"]
    finally:
        assert server.terminate() == 0


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
