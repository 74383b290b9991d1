"""What a fresh server exports on /metrics: process and build series, every known counter at 0,
no `_created` noise, and text that `promtool check metrics` accepts."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from onespace.metrics import code_label
from onespace_client import AsyncClient, content, item
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


async def test_a_deleted_collection_leaves_no_series(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as g, AsyncClient(g.target) as client:
        await client.create_collection("gone", dimension=256)
        await client.upsert("gone", [item(f"i{n}", [float(n + 1)] * 256) for n in range(4)])
        await client.search("gone", vector=[1.0] * 256, k=2)
        await client.checkpoint_collection("gone")
        await client.compact_collection("gone")

        def series() -> set[str]:
            return {
                s.name
                for family in g.app.metrics.registry.collect()
                for s in family.samples
                if s.labels.get("collection") == "gone"
            }

        assert {
            "onespace_index_items",
            "onespace_index_unindexed_rows",
            "onespace_commit_duration_seconds_count",
        } <= series()
        await client.delete_collection("gone")
        assert series() == set()


async def test_cache_evictions_are_counted(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, cache_bytes=30_000) as g, AsyncClient(g.target) as client:
        for n in range(6):  # a 3072-d float32 embedding (the default) is over 12 KiB: at most two fit
            await client.embed([content.text(f"text {n}")])
        value = g.app.metrics.registry.get_sample_value
        entries = value("onespace_cache_entries")
        assert entries is not None and 1 <= entries <= 2
        assert value("onespace_cache_evictions_total") == 6 - entries


async def test_streams_have_their_own_histograms(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as g, AsyncClient(g.target) as client:
        await client.create_collection("s", dimension=256)
        acks = [a async for a in client.ingest("s", [item(f"i{n}", [float(n + 1)] * 256) for n in range(5)])]
        assert len(acks) == 5
        await client.info()
        value = g.app.metrics.registry.get_sample_value
        # the client ingests through the packed form; its items are counted one by one
        assert value("onespace_stream_duration_seconds_count", {"method": "IngestPacked", "code": "OK"}) == 1
        assert value("onespace_stream_item_duration_seconds_count", {"method": "IngestPacked"}) == 5
        assert value("onespace_rpc_duration_seconds_count", {"method": "IngestPacked", "code": "OK"}) is None
        assert value("onespace_rpc_duration_seconds_count", {"method": "Info", "code": "OK"}) == 1


async def test_provider_outcomes_use_the_grpc_status_names(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as g, AsyncClient(g.target) as client:
        await client.embed([content.text("one casing")])
        outcomes = {
            s.labels["outcome"]
            for family in g.app.metrics.registry.collect()
            for s in family.samples
            if s.name == "onespace_provider_call_duration_seconds_count"
        }
        assert outcomes == {"OK"}
    assert [code_label(c) for c in ("ResourceExhausted", "Internal", "PermissionDenied")] == [
        "RESOURCE_EXHAUSTED",
        "INTERNAL",
        "PERMISSION_DENIED",
    ]
