"""A real `prometheus` (Debian's package, installed by .ci/setup) on a free loopback port, with a
generated config, for the dashboard and alert-rule tests; and a client for its HTTP API.

Prometheus scrapes and evaluates on its own clock, so waiting for it is polling with a deadline.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["Prometheus"]

T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, workdir: Path, *, scrape_target: str, rule_files: list[Path], job: str) -> None:
        binary = shutil.which("prometheus")
        assert binary is not None, "prometheus comes from .ci/setup (Debian's prometheus package)"
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [scrape_target]}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address={self.url.removeprefix('http://')}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer (an error answer raises)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        assert body["status"] == "success", f"{path} {params}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return list(data["result"])

    def wait_for(self, what: str, check: Callable[[], T | None], deadline: float = 30.0) -> T:
        """Poll `check` until it returns something other than None (or False)."""
        end = time.monotonic() + deadline
        while True:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log.read_text()}"
            try:
                value = check()
            except (OSError, AssertionError):  # not listening yet, or the query's data not there yet
                value = None
            if value is not None and value is not False:
                return value
            assert time.monotonic() < end, f"prometheus: gave up waiting for {what}\n{self.log.read_text()}"
            time.sleep(0.2)

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as response:
            return bool(response.status == 200)
