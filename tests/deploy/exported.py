"""The sample names the gateway can export, read from a real App's metrics registry, so that alert
rules and dashboard queries that name a metric the server does not have fail a test."""

from __future__ import annotations

import re
from pathlib import Path

from tests.harness import running_gateway

__all__ = ["exported_names", "metric_names"]

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}
# Metric-like words in PromQL that are not metrics: functions, keywords, label names.
_NAME = re.compile(r"\b((?:onespace|process|python)_[a-z0-9_]+)\b")


async def exported_names(data_dir: Path) -> set[str]:
    """Every sample name a running gateway's registry describes (a labelled family with no series
    yet included), and `up`, which Prometheus adds."""
    async with running_gateway(data_dir) as g:
        families = list(g.app.metrics.registry.collect())
    names = {"up"}
    for family in families:
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    return set(_NAME.findall(expr))
