"""`onespace serve` as a real subprocess, for the reliability tests.

The server is started on port 0 and the port is read from its banner line. A thread keeps reading
its output (stdout and stderr together) into `lines`, so a chatty server never blocks on a full
pipe, and it can SIGKILL the process the moment a given line appears (`kill_on`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["BANNER", "Server"]

BANNER = re.compile(r"serving gRPC on [\d.]+:(\d+)")


class Server:
    def __init__(
        self, data_dir: Path, *args: str, start_timeout: float = 60.0, module: str = "onespace.cli"
    ) -> None:
        """`module` is what `python -m` runs with `serve ...`: the gateway's CLI, or a benchmark's
        variant of it."""
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "serve",
                "--port",
                "0",
                "--metrics-port",
                "-1",
                "--data-dir",
                str(data_dir),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self.port = 0
        self.killed_on: str | None = None  # the line that triggered `kill_on`, once it did
        self.kill_sent = False  # SIGKILL was sent (by `sigkill`, `kill` or `kill_on`)
        self._kill_pattern: re.Pattern[str] | None = None
        self._banner = threading.Event()
        self._reader = threading.Thread(target=self._read, name="server-output", daemon=True)
        self._reader.start()
        if not self._banner.wait(start_timeout) or not self.port:
            self.kill()
            raise AssertionError("server did not start serving:\n" + self.output)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self.lines.append(line)
                if not self.port:
                    match = BANNER.search(line)
                    if match:
                        self.port = int(match.group(1))
                        self._banner.set()
                pattern = self._kill_pattern
                if pattern is not None and self.killed_on is None and pattern.search(line):
                    self.killed_on = line
                    self.sigkill()
        finally:
            self._banner.set()  # exited before the banner: the constructor stops waiting

    def kill_on(self, pattern: re.Pattern[str]) -> None:
        """SIGKILL the server as soon as it prints a line matching `pattern` (from now on)."""
        self._kill_pattern = pattern

    def sigkill(self) -> None:
        """Send SIGKILL now, without waiting (`reap` waits)."""
        self.kill_sent = True
        self.proc.kill()

    def kill(self) -> int:
        """SIGKILL, then reap the process."""
        self.sigkill()
        return self.reap(30)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then reap the process (SIGKILL if it is not gone within `timeout`)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.reap(timeout)
        finally:
            if self.proc.poll() is None:
                self.kill()

    def reap(self, timeout: float) -> int:
        """Wait for the process to exit and for the rest of its output; its exit code."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code
