"""The contract's hygiene: `buf lint` (STANDARD rules) and `buf breaking` (FILE rules) against the
previous commit, so a renamed field or a changed number never lands by accident."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".ci" / "cache" / "buf" / "node_modules" / ".bin" / "buf"


def _buf(*args: str) -> subprocess.CompletedProcess[str]:
    assert BUF.exists(), "buf is installed by .ci/setup (npm registry) into .ci/cache/buf"
    return subprocess.run([str(BUF), *args], cwd=ROOT / "protos", capture_output=True, text=True, timeout=120)


def test_buf_lint() -> None:
    result = _buf("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_breaking_change_against_the_previous_commit() -> None:
    inside = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True)
    if inside.returncode != 0 or Path(inside.stdout.strip()).resolve() != ROOT:
        pytest.skip("not a git checkout of onespace (an unpacked archive): no previous commit to compare")
    previous = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "HEAD~1"], cwd=ROOT, capture_output=True, text=True
    )
    if previous.returncode != 0:  # a shallow clone: the previous commit is not there to compare
        history = subprocess.run(
            ["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True
        )
        assert history.stdout.strip() == "true", "HEAD~1 is missing in a full clone"
        return
    result = _buf("breaking", "--against", f"{ROOT / '.git'}#ref=HEAD~1,subdir=protos")
    assert result.returncode == 0, result.stdout + result.stderr
