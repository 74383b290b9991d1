"""What a fresh server exports on /metrics: process and build series, every known counter at 0,
no `_created` noise, and text that `promtool check metrics` accepts."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.harness import running_gateway


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


async def test_a_fresh_server_exports_every_known_series(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as g:
        assert g.app.metrics_port is not None
        text = await asyncio.to_thread(_scrape, g.app.metrics_port)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    names = {name for name, _ in samples}
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "python_info",
        "onespace_build_info",
    ):
        assert name in names, name
    assert not [n for n in names if n.endswith("_created")]
    zero = [
        ("onespace_provider_throttles_total", (("model", "onespace.local-multimodal-v1"),)),
        ("onespace_rejected_total", (("reason", "queue_full"),)),
        ("onespace_rejected_total", (("reason", "rpcs_in_flight"),)),
        ("onespace_items_dropped_total", (("reason", "deadline"),)),
        ("onespace_expired_total", (("stage", "search"),)),
        ("onespace_cache_requests_total", (("result", "hit"),)),
        ("onespace_auth_failures_total", (("reason", "invalid_token"),)),
    ]
    for key in zero:
        assert samples.get(key) == 0.0, key
    assert samples[("onespace_rpc_in_flight", (("method", "Search"),))] == 0.0
    build = [labels for name, labels in samples if name == "onespace_build_info"]
    assert dict(build[0])["version"] != "unknown"
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool comes from .ci/setup (Debian's prometheus package)"
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
