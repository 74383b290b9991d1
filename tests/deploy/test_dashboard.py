"""deploy/grafana/dashboards/onespace.json: well-formed, naming only metrics the gateway exports,
and — against a real gateway scraped by a real Prometheus — every panel query parses and returns
data, and the alert rules load and evaluate cleanly."""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from onespace_client import AsyncClient, OnespaceClientError, item
from tests.deploy.exported import exported_names, metric_names
from tests.deploy.paths import DEPLOY
from tests.deploy.prometheus_server import Prometheus
from tests.harness import running_gateway

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "onespace.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
JOB = "onespace"  # the job the alert rules expect
# Grafana's variables as Grafana would fill them in for this test's Prometheus.
VARIABLES = {"$__rate_interval": "1m", "$job": JOB, "$instance": ".*"}
# Queries that rightly return nothing from a healthy gateway on the local provider, and why.
# Everything else must return data: the workload below makes it (errors included).
MAY_BE_EMPTY = {
    "onespace_provider_retries_total": "no provider call is retried in this workload (retries follow "
    "throttles, transient errors and refused batches); its series appear with the first retry",
}


def panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def targets() -> list[tuple[str, str]]:
    """(panel title and refId, query with the variables filled in)."""
    out = []
    for panel in panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, f"{panel['title']}: a variable this test does not fill in: {expr}"
            out.append((f"{panel['title']} [{target['refId']}]", expr))
    return out


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "job", "instance"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]


def test_the_dashboard_covers_what_an_operator_needs() -> None:
    used = set().union(*(metric_names(expr) for _, expr in targets()))
    for name in (
        "onespace_rpc_duration_seconds_count",
        "onespace_rpc_duration_seconds_bucket",
        "onespace_queue_wait_seconds_bucket",
        "onespace_provider_call_duration_seconds_bucket",
        "onespace_provider_throttles_total",
        "onespace_provider_batch_size_sum",
        "onespace_cache_requests_total",
        "onespace_provider_concurrency_limit",
        "onespace_provider_pace",
        "onespace_index_items",
        "onespace_index_unindexed_rows",
        "onespace_collection_bytes",
        "onespace_checkpoint_timestamp_seconds",
        "onespace_stream_window_items",
        "onespace_stream_window_bytes",
        "onespace_search_recall_count",
    ):
        assert name in used, f"no panel shows {name}"


async def test_every_metric_in_the_dashboard_is_exported(tmp_path: Path) -> None:
    exported = await exported_names(tmp_path)
    for title, expr in targets():
        unknown = metric_names(expr) - exported
        assert not unknown, f"{title}: the gateway exports no {sorted(unknown)}"
    for name in MAY_BE_EMPTY:
        assert name in exported


async def _workload(client: AsyncClient, turn: int) -> int:
    """Every kind of call the dashboard shows, one client error included; returns the RPC count.
    Each turn embeds new texts, so it calls the provider instead of only hitting the cache."""
    calls = 8
    if turn == 1:
        await client.create_collection("docs")
        calls += 1
    await client.list_collections()
    await client.upsert("docs", [item(f"d{n}", f"turn {turn}, document {n}") for n in range(8)])
    await client.search("docs", text=f"turn {turn}, document 3", k=3)
    await client.embed([f"turn {turn}: the same text"])
    await client.embed([f"turn {turn}: the same text"])  # a cache hit
    await client.get("docs", ["d1", "nope"])
    await client.checkpoint_collection("docs")
    acks = [
        a
        async for a in client.ingest("docs", [item(f"s{n}", f"turn {turn}, streamed {n}") for n in range(4)])
    ]
    assert len(acks) == 4  # a stream: counted in onespace_stream_*, not in the unary RPC count
    with pytest.raises(OnespaceClientError):
        await client.search("missing", text="no such collection", k=1)  # NOT_FOUND
    return calls


def _rpc_count(prometheus: Prometheus) -> float:
    result = prometheus.query(f'sum(onespace_rpc_duration_seconds_count{{job="{JOB}"}})')
    return float(result[0]["value"][1]) if result else 0.0


async def _wait_until_scraped(prometheus: Prometheus, at_least: int, samples: int) -> None:
    """Until Prometheus holds a scrape with `at_least` RPCs counted, the collection's gauges and
    `samples` recall samples."""

    def scraped() -> bool:
        return (
            _rpc_count(prometheus) >= at_least
            and bool(prometheus.query('onespace_checkpoint_timestamp_seconds{collection="docs"} > 0'))
            and bool(prometheus.query(f'onespace_search_recall_count{{collection="docs"}} >= {samples}'))
        )

    await asyncio.to_thread(prometheus.wait_for, f"a scrape with {at_least} RPCs", scraped)


@pytest.mark.slow
async def test_every_panel_query_returns_data_from_a_real_prometheus(tmp_path: Path) -> None:
    # checkpoints follow the first change at once, so the checkpoint panel has data
    data = tmp_path / "data"
    # recall sampling on (off by default), so the recall panel has data: each turn's search is
    # scanned while the sampler's budget allows, and the turn waits for that scan
    settings = {"checkpoint_interval_seconds": 0.0, "recall_sample_budget": 1.0}
    async with running_gateway(data, **settings) as g, AsyncClient(g.target) as client:
        assert g.app.metrics_port is not None
        prometheus = await asyncio.to_thread(
            Prometheus,
            tmp_path / "prometheus",
            scrape_target=f"127.0.0.1:{g.app.metrics_port}",
            rule_files=[ALERTS],
            job=JOB,
        )
        try:
            await asyncio.to_thread(prometheus.wait_for, "ready", prometheus.ready)
            # Two turns, each scraped before the next: every counter has two samples, so each rate()
            # and histogram_quantile() over the window has something to work with.
            first = await _workload(client, 1)
            await g.app.gateway.recall.settled()
            await _wait_until_scraped(prometheus, first, samples=1)
            second = await _workload(client, 2)
            await g.app.gateway.recall.settled()
            await _wait_until_scraped(prometheus, first + second, samples=2)
            assert g.app.gateway.recall.samples == 2  # one search a turn, each sampled

            empty = []
            for title, expr in targets():
                result = await asyncio.to_thread(prometheus.query, expr)  # raises unless it parses
                values = [float(sample["value"][1]) for sample in result]
                # NaN is a quantile or ratio of nothing: no data either.
                if not any(not math.isnan(v) for v in values) and not any(n in expr for n in MAY_BE_EMPTY):
                    empty.append(title)
            assert not empty, f"panels without data: {empty}"

            targets_up = await asyncio.to_thread(prometheus.api, "targets")
            assert [t["health"] for t in targets_up["activeTargets"]] == ["up"]

            def evaluated() -> list[dict[str, Any]] | None:
                groups = prometheus.api("rules")["groups"]
                rules = [r for group in groups for r in group["rules"]]
                return rules if rules and all(r["health"] != "unknown" for r in rules) else None

            rules = await asyncio.to_thread(prometheus.wait_for, "the rules evaluated", evaluated)
            loaded = {r["name"] for r in rules}
            assert loaded == set(re.findall(r"- alert: (\w+)", ALERTS.read_text()))
            assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
            # A healthy gateway under light load: no alert even pending (latency aside: a busy
            # CI machine may really be slow).
            active = [r["name"] for r in rules if r["state"] != "inactive"]
            assert [name for name in active if "Latency" not in name] == []
        finally:
            await asyncio.to_thread(prometheus.close)
