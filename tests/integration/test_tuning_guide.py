"""docs/tuning.md's recipe runs as written: its Python block, executed as is, tunes a real
`onespace serve` (a subprocess) through the sync client, and leaves the collection on a setting
whose measured recall reaches the target; an unreachable target restores the defaults."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from onespace_client import Client, item
from tests.reliability.serve import Server
from tests.unit.index.helpers import mixture

ROOT = Path(__file__).resolve().parents[2]
DIM = 256


def recipe() -> dict[str, Any]:
    """The names the guide's (first) Python block defines."""
    text = (ROOT / "docs" / "tuning.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, "docs/tuning.md has no python block"
    names: dict[str, Any] = {}
    exec(compile(match.group(1), "docs/tuning.md", "exec"), names)
    return names


def test_the_tuning_recipe_runs_as_written(tmp_path: Path) -> None:
    guide = recipe()
    data = mixture(3200, DIM, seed=21, decay=0.5)
    vectors, queries = data[:3000], data[3000:]
    ids = [f"v{i}" for i in range(len(vectors))]
    server = Server(tmp_path / "data")
    try:
        with Client(f"127.0.0.1:{server.port}") as client:
            client.create_collection("docs", dimension=DIM, index_dimension=64, dtype="i8")
            for start in range(0, len(vectors), 250):
                chunk = range(start, min(start + 250, len(vectors)))
                client.upsert("docs", [item(ids[i], vectors[i].tolist()) for i in chunk])
            exact = guide["exact_top_k"](vectors, ids, queries)
            assert len(exact) == 200 and all(len(row) == 10 for row in exact)

            chosen = guide["tune"](client, "docs", queries, exact, target=0.9)
            assert chosen is not None, "no setting reached recall 0.9"
            ef, rerank_factor, recall = chosen
            assert (ef, rerank_factor) in guide["SETTINGS"] and recall >= 0.9
            config = client.get_collection("docs").config
            assert (config.hnsw.expansion_search, config.rerank_factor) == (ef, rerank_factor)
            assert guide["recall_at_k"](client, "docs", queries, exact) == recall  # same answers

            assert guide["tune"](client, "docs", queries, exact, target=1.01) is None
            config = client.get_collection("docs").config
            assert (config.hnsw.expansion_search, config.rerank_factor) == (64, 4)  # the defaults
    finally:
        server.terminate()
