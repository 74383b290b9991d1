"""Benchmarks write their own figures into docs/benchmarks.md (never typed by hand).

Each benchmark owns one section between marker comments,

    <!-- bench:<key>:start -->
    ...generated...
    <!-- bench:<key>:end -->

which `write_section` replaces (or appends before "## Caveats", or at the end, the first time).
Every section carries the machine (CPU, cores, RAM, Python, numpy/usearch/grpcio versions), the
load average before and after the run (other test suites may share the machine), the date, the
git revision and the exact command. The raw figures also go to docs/benchmarks/<key>.json.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.benchmarks._common import _cell, print_table

__all__ = [
    "ROOT",
    "Part",
    "command_line",
    "machine",
    "markdown_table",
    "rss_bytes",
    "write_parts",
    "write_section",
]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "benchmarks.md"
RAW = ROOT / "docs" / "benchmarks"
ENV_PREFIX = "ONESPACE_BENCH_"


def _sources() -> list[Path]:
    return sorted([*(ROOT / "server").rglob("*.py"), *(ROOT / "client").rglob("*.py")])


def source_fingerprint() -> str:
    """A hash of the server and client sources, to tell which code a run measured: other people
    edit the tree while benchmarks run, and git's HEAD does not say what the working tree held."""
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(str(path.relative_to(ROOT)).encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            continue
    return digest.hexdigest()[:12]


def _loaded_files() -> set[Path]:
    return {Path(f).resolve() for m in list(sys.modules.values()) if (f := getattr(m, "__file__", None))}


# What the benchmark had imported when this module was (the benchmarks import it after the code
# they measure), and the sources' hash then: Python never reloads a module, so a file changed
# later does not change what those modules run.
LOADED_AT_START = _loaded_files()
FINGERPRINT_AT_START = source_fingerprint()


def changed_sources(since: float) -> list[str]:
    """Server/client sources modified after `since` (unix time), each saying whether the run could
    have picked the change up (a module imported before the change keeps its old code)."""
    loaded_now = _loaded_files()
    out = []
    for path in _sources():
        try:
            modified = path.stat().st_mtime
        except OSError:
            continue
        if modified <= since:
            continue
        resolved = path.resolve()
        if resolved in LOADED_AT_START:
            how = "imported before the change: the run used the earlier version"
        elif resolved in loaded_now:
            how = "imported during the run: may have picked the change up"
        else:
            how = "not imported by this process"
        out.append(f"`{path.relative_to(ROOT)}` ({how})")
    return out


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "n/a"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (working tree with uncommitted changes)" if dirty else head


def machine() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "nproc": os.cpu_count(),
        "ram_bytes": _mem_total(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "usearch": _version("usearch"),
        "grpcio": _version("grpcio"),
        "kernel": platform.release(),
        "git": _git_revision(),
        "source_fingerprint": FINGERPRINT_AT_START,
    }


def command_line() -> str:
    """The command as typed (relative to the repo), with any ONESPACE_BENCH_* variables in front."""
    argv = list(sys.argv)
    if argv:
        with contextlib.suppress(ValueError):
            argv[0] = os.path.relpath(argv[0], ROOT)
        if argv[0].endswith("__main__.py") or argv[0].endswith(".py"):
            argv = [os.path.relpath(sys.executable, ROOT), *argv]
    env = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIX)]
    return " ".join([*env, *(shlex.quote(a) for a in argv)])


def rss_bytes() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile and VmHWM of this process, in bytes."""
    out: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in {"VmRSS", "RssAnon", "RssFile", "VmHWM"}:
            out[name] = int(rest.split()[0]) * 1024
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(
    key: str,
    title: str,
    body: str,
    *,
    started: dt.datetime,
    load_before: str,
    raw: Mapping[str, Any] | None = None,
    document: bool = True,
) -> Path:
    """Replace (or add) the `key` section of docs/benchmarks.md; returns the path written.

    With `document` false (a scaled-down or otherwise non-default run) only the raw JSON is
    written, unless ONESPACE_BENCH_WRITE_DOC=1 asks for a section anyway.
    """
    document = document or os.environ.get("ONESPACE_BENCH_WRITE_DOC") == "1"
    info = machine()
    changed = changed_sources(started.timestamp())
    info["sources_changed_during_run"] = changed
    finished = dt.datetime.now().astimezone()
    command = command_line()
    header = (
        f"### {title}\n\n"
        f"*Written by the benchmark itself on {finished:%Y-%m-%d %H:%M %Z} "
        f"(run took {(finished - started).total_seconds() / 60:.1f} min); do not edit by hand, rerun it.*\n\n"
        f"- command: `{command}`\n"
        f"- machine: {info['cpu']}, {info['nproc']} cores (`nproc`), "
        f"{info['ram_bytes'] / 2**30:.1f} GiB RAM, Linux {info['kernel']}\n"
        f"- software: Python {info['python']}, numpy {info['numpy']}, usearch {info['usearch']}, "
        f"grpcio {info['grpcio']}; git {info['git']}; server+client source hash "
        f"`{info['source_fingerprint']}` when it started\n"
        + (
            "- **sources changed while it ran**: " + ", ".join(changed) + "\n"
            if changed
            else "- no server/client source changed while it ran\n"
        )
        + f"- load average (1/5/15 min) before: {load_before}; after: {load_average()} "
        "(other test suites may have been running on the same 2 cores)\n"
    )
    if changed:
        print("WARNING: server/client sources changed while the benchmark ran: " + ", ".join(changed))
    start_mark, end_mark = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    section = f"{start_mark}\n{header}\n{body.strip()}\n{end_mark}"
    raw_path = RAW / f"{key}.json"
    if raw is not None:
        RAW.mkdir(parents=True, exist_ok=True)
        payload = {
            "key": key,
            "written": finished.isoformat(timespec="seconds"),
            "command": command,
            "machine": info,
            "load_before": load_before,
            "load_after": load_average(),
            "figures": raw,
        }
        raw_path.write_text(json.dumps(payload, indent=2, default=str) + "\n", "utf-8")
    if not document:
        print(
            f"not a default run: figures only in {raw_path.relative_to(ROOT)} "
            "(ONESPACE_BENCH_WRITE_DOC=1 writes a docs/benchmarks.md section too)"
        )
        return raw_path
    text = DOC.read_text("utf-8") if DOC.exists() else "# Benchmarks\n"
    if start_mark in text and end_mark in text:
        before, rest = text.split(start_mark, 1)
        _, after = rest.split(end_mark, 1)
        text = before + section + after
    elif "\n## Caveats" in text:
        before, after = text.split("\n## Caveats", 1)
        text = before.rstrip("\n") + "\n\n" + section + "\n\n## Caveats" + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, DOC)
    print(f"written to {DOC.relative_to(ROOT)} (section {key}) and {raw_path.relative_to(ROOT)}")
    return DOC


@dataclass
class Part:
    """One comparison of a benchmark: its table (console and docs), the prose that reads it, and the
    figures its test asserts on."""

    title: str
    header: list[str]
    rows: list[list[object]]
    note: str = ""
    figures: dict[str, float] = field(default_factory=dict)

    def markdown(self) -> str:
        text = f"{self.title}:\n\n{markdown_table(self.header, self.rows)}"
        return f"{text}\n\n{self.note}" if self.note else text


def write_parts(
    key: str, title: str, parts: Sequence[Part], *, started: dt.datetime, load_before: str
) -> Path:
    """Print each part's table, then write them all as the `key` section of the docs."""
    for part in parts:
        print_table(part.title, part.header, part.rows)
    body = "\n\n".join(part.markdown() for part in parts)
    raw = {part.title: part.figures for part in parts}
    return write_section(key, title, body, started=started, load_before=load_before, raw=raw)
