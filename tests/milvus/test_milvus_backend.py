"""What only the Milvus backend has: coalesced searches as one Milvus call, the paged exact scan,
maintenance mapped onto Milvus, errors when Milvus is away, several gateways sharing one database,
and collections in that database that are not onespace's."""

# ruff: noqa: E402  (the imports follow the check that the `milvus` extra is installed)
from __future__ import annotations

from tests.milvus.conftest import skip_without_milvus

skip_without_milvus()

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pymilvus import MilvusClient

from onespace.errors import InvalidArgument, NotFound, Unavailable
from onespace.index import CollectionConfig, Filter, HnswParams, Query, Record, StoredDtype
from onespace.index.matryoshka import prefix
from onespace.index.writes import DeleteOp
from onespace.milvus import MilvusBackend, collection, layout, read_token_file, results
from onespace.milvus.names import to_milvus
from onespace.milvus.results import search_rows, search_rows_slow
from onespace.models import Modality
from tests.unit.index.helpers import mixture, reference_top

DIM = 32


def config(name: str = "docs", **changes: object) -> CollectionConfig:
    values: dict[str, object] = {
        "index_dimension": 16,
        "stored_dtype": StoredDtype.F32,
        "hnsw": HnswParams(expansion_search=256),
        **changes,
    }
    return CollectionConfig(name=name, model="m", dimension=DIM, **values)  # type: ignore[arg-type]


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return str(tmp_path / "milvus.db")


@pytest.fixture
def milvus(uri: str) -> Iterator[MilvusBackend]:
    backend = MilvusBackend(uri, refresh_seconds=0.0)
    backend.open()
    yield backend
    backend.close()


def test_a_coalesced_batch_is_one_milvus_search(milvus: MilvusBackend) -> None:
    c = milvus.create(config())
    data = mixture(500, DIM, seed=1)
    c.upsert([Record(f"i{i}", v) for i, v in enumerate(data)])
    queries = [Query(q, k=10) for q in mixture(32, DIM, seed=2)]
    before = c.searches
    together = c.search_many(queries)
    assert c.searches == before + 1
    alone = [c.search_many([q])[0] for q in queries]
    assert [[(h.id, h.score) for h in row] for row in together] == [
        [(h.id, h.score) for h in row] for row in alone
    ]
    mixed = [
        *queries[:4],
        Query(queries[0].vector, k=10, filter=Filter(metadata={"a": "b"})),
        Query(queries[1].vector, k=100),
    ]
    before = c.searches
    c.search_many(mixed)
    assert c.searches == before + 3  # one per distinct (filter, shortlist size)


def test_the_exact_scan_pages_by_escaped_ids(milvus: MilvusBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids with quotes and backslashes across many small pages: every matching row is scanned once."""
    monkeypatch.setattr(collection, "SCAN_BATCH", 7)
    c = milvus.create(config())
    data = mixture(60, DIM, seed=3)
    ids = [f'q"{i}\\' if i % 2 else f"p{i}" for i in range(60)]
    c.upsert(
        [
            Record(item_id, v, Modality.TEXT if i % 3 else None)
            for i, (item_id, v) in enumerate(zip(ids, data, strict=True))
        ]
    )
    q = mixture(1, DIM, seed=4)[0]
    hits = c.search_many([Query(q, k=60, dimension=8)])[0]  # below the index dimension: a scan
    assert [h.id for h in hits] == [ids[i] for i in reference_top(data, q, c.config.metric, 60, d=8)]
    text = c.search_many([Query(q, k=60, dimension=8, filter=Filter(modalities=frozenset({Modality.TEXT})))])[
        0
    ]
    assert sorted(h.id for h in text) == sorted(ids[i] for i in range(60) if i % 3)


def test_maintenance_maps_onto_milvus(milvus: MilvusBackend) -> None:
    c = milvus.create(config())
    c.upsert([Record(f"i{i}", v) for i, v in enumerate(mixture(20, DIM, seed=5))])
    stats = milvus.stats(c)
    assert (stats.items, stats.seq, stats.changes_since_checkpoint, stats.checkpoint_time) == (20, 1, 0, 0.0)
    assert (stats.dead_slots, stats.index_tombstones, stats.disk_bytes, stats.index_bytes) == (0, 0, 0, 0)
    assert milvus.checkpoint(c) is True and milvus.stats(c).checkpoint_time > 0
    assert milvus.compact(c) is False  # Milvus compacts on its own schedule
    assert milvus.compact(c, force=True) is True
    assert c.index_pending() is False and len(c) == 20


def test_a_tail_bound_is_refused_since_milvus_indexes_on_its_own(milvus: MilvusBackend) -> None:
    with pytest.raises(InvalidArgument, match="milvus backend") as refused:
        milvus.create(config("bulk", max_unindexed_rows=100_000))
    assert refused.value.field == "config.max_unindexed_rows"
    assert "bulk" not in [c.name for c in milvus.list()]
    assert milvus.create(config("bulk")).config.max_unindexed_rows == 0


def test_unreachable_milvus_is_unavailable() -> None:
    backend = MilvusBackend("http://127.0.0.1:1", timeout=2.0)
    assert backend.check() is not None  # not connected yet
    with pytest.raises(Unavailable) as refused:
        backend.open()
    assert refused.value.retry_after_seconds == 1.0


def test_credentials_never_reach_messages() -> None:
    backend = MilvusBackend("https://root:s3cret@milvus.example:19530", token="tok-123")
    assert backend.uri == "https://milvus.example:19530"
    assert "s3cret" not in (backend.check() or "") and "tok-123" not in (backend.check() or "")


def test_health_reports_a_closed_connection(uri: str) -> None:
    backend = MilvusBackend(uri)
    backend.open()
    assert backend.check() is None
    backend.close()
    assert "not connected" in (backend.check() or "")


def test_two_gateways_share_one_database(uri: str) -> None:
    """Replicas: a collection created, written or dropped through one is seen by the other; the
    other's item count (a cache) catches up at its next stats."""
    first, second = MilvusBackend(uri, refresh_seconds=0.0), MilvusBackend(uri, refresh_seconds=0.0)
    first.open()
    second.open()
    try:
        made = first.create(config("t~shared"))
        seen = second.get("t~shared")
        assert seen.config == made.config and [c.name for c in second.list()] == ["t~shared"]
        data = mixture(30, DIM, seed=6)
        made.upsert([Record(f"i{i}", v, Modality.IMAGE) for i, v in enumerate(data)])
        assert [h.id for h in seen.search_many([Query(data[3], k=1)])[0]] == ["i3"]  # Strong: visible
        assert seen.get(["i4"])[0] is not None
        assert len(seen) == 0 and seen.modalities() == frozenset()  # not re-counted yet
        assert second.stats(seen).items == 30 and seen.modalities() == {Modality.IMAGE}
        assert seen.apply([DeleteOp(("i0", "i1", "nope"))]) == [2]
        assert first.stats(made).items == 28
        first.delete("t~shared")
        with pytest.raises(NotFound):  # a request holding the other gateway's handle
            seen.get(["i2"])
        with pytest.raises(NotFound):
            second.get("t~shared")
        assert second.list() == []
    finally:
        second.close()
        first.close()


def test_foreign_and_half_made_collections(uri: str, caplog: pytest.LogCaptureFixture) -> None:
    """Other applications' collections are left alone; a create cut short before its indexes (a
    crash) is finished by the next open."""
    client = MilvusClient(uri)
    wanted = config("half").validated()
    client.create_collection(
        to_milvus("half"), schema=layout.schema(wanted), properties=layout.properties(wanted)
    )  # no index, not loaded
    client.create_collection("photos", dimension=4)
    client.create_collection(to_milvus("noconfig"), dimension=4)
    client.close()
    backend = MilvusBackend(uri)
    with caplog.at_level(logging.WARNING, logger="onespace.milvus.backend"):
        backend.open()
    try:
        assert [c.name for c in backend.list()] == ["half"]
        assert "has no onespace.config property" in caplog.text
        assert "lacked its index" in caplog.text
        half = backend.get("half")
        half.upsert([Record("a", mixture(1, DIM, seed=7)[0])])
        assert [h.id for h in half.search_many([Query(half.vector("a"), k=1)])[0]] == ["a"]
    finally:
        backend.close()


def test_search_rows_fast_path_equals_pymilvus_decoding(
    milvus: MilvusBackend, uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = milvus.create(config())
    data = mixture(200, DIM, seed=8)
    c.upsert([Record(f"i{i}", v, Modality.VIDEO, {"n": str(i)}) for i, v in enumerate(data)])
    client = MilvusClient(uri)

    def search() -> object:
        return client.search(
            c.milvus_name,
            data=[v for v in prefix(data[:5], 16, c.config.metric)],
            anns_field=layout.PREFIX,
            limit=12,
            output_fields=[layout.VECTOR, layout.MODALITY, layout.TAGS],
        )

    slow = search_rows_slow(search())

    def no_fallback(found: object) -> object:
        raise AssertionError("search_rows fell back to pymilvus's decoding")

    monkeypatch.setattr(results, "search_rows_slow", no_fallback)
    fast = search_rows(search(), DIM)
    assert [len(r) for r in fast] == [12] * 5
    for fast_rows, slow_rows in zip(fast, slow, strict=True):
        assert [r[layout.ID] for r in fast_rows] == [r[layout.ID] for r in slow_rows]
        for f, s in zip(fast_rows, slow_rows, strict=True):
            assert (f[layout.MODALITY], f[layout.TAGS]) == (s[layout.MODALITY], s[layout.TAGS])
            np.testing.assert_array_equal(f[layout.VECTOR], np.asarray(s[layout.VECTOR], dtype=np.float32))
    client.close()


def test_settings_are_checked_and_the_token_comes_from_a_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("root:Milvus\n")
    assert read_token_file(str(token)) == "root:Milvus" and read_token_file("") == ""
    with pytest.raises(ValueError, match="token file"):
        read_token_file(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="URI"):
        MilvusBackend("")
    with pytest.raises(ValueError, match="consistency"):
        MilvusBackend(str(tmp_path / "x.db"), consistency="Eventual")
