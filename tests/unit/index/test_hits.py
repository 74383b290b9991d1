"""Naming a search batch's hits from the slot arrays (`collection._hits`): order kept, items
deleted since they were ranked left out (a dead slot, or a described item whose metadata row is
gone), metadata only where the item has some, vectors only for the queries that ask."""

from __future__ import annotations

import numpy as np

from onespace.index.collection import _hits
from onespace.index.records import Filter
from onespace.index.search import Ranked
from onespace.index.slots import SlotTable
from onespace.index.validate import CheckedQuery
from onespace.models import Modality


def _query(include_vectors: bool) -> CheckedQuery:
    return CheckedQuery(np.zeros(4, dtype=np.float32), 4, 10, Filter(), include_vectors)


def test_hits_keep_rank_order_and_leave_out_items_deleted_since_ranking() -> None:
    table = SlotTable()
    n = 8
    keys = np.arange(100, 100 + n, dtype=np.uint64)
    codes = np.array([1, 0] * (n // 2), dtype=np.int8)  # even slots text, odd ones raw vectors
    described = np.array([i in (2, 3, 5) for i in range(n)], dtype=bool)
    table.append(0, keys, codes, [f"id{i}" for i in range(n)], described)
    table.kill_keys(np.array([104], dtype=np.uint64))  # slot 4 deleted after ranking
    vectors = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    view = table.view(vectors)
    ranked = [
        Ranked(np.array([3, 4, 0], dtype=np.int64), np.array([0.9, 0.8, 0.7], dtype=np.float32)),
        Ranked(np.array([5, 2, 1], dtype=np.int64), np.array([0.6, 0.5, 0.4], dtype=np.float32)),
        Ranked(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)),
    ]
    rows = np.concatenate([r.rows for r in ranked])
    # slot 5's row left SQLite before its slot was killed: no metadata for key 105
    metadata = {102: {"a": "2"}, 103: {"a": "3"}}
    first, second, third = _hits(view, [_query(True), _query(False), _query(False)], ranked, rows, metadata)
    assert [(h.id, h.score, h.modality, h.metadata) for h in first] == [
        ("id3", np.float32(0.9), None, {"a": "3"}),
        ("id0", np.float32(0.7), Modality.TEXT, {}),
    ]
    assert first[0].vector is not None and first[0].vector.tolist() == vectors[3].tolist()
    assert [(h.id, h.modality, h.metadata, h.vector) for h in second] == [
        ("id2", Modality.TEXT, {"a": "2"}, None),
        ("id1", None, {}, None),
    ]
    assert third == []
    # every hit gets a dict of its own
    assert first[1].metadata is not second[1].metadata


def test_a_batch_with_nothing_deleted_names_every_hit() -> None:
    table = SlotTable()
    table.append(0, np.arange(1, 4, dtype=np.uint64), np.ones(3, np.int8), ["x", "y", "z"], np.zeros(3, bool))
    view = table.view(np.zeros((3, 4), dtype=np.float32))
    ranked = [Ranked(np.array([2, 0, 1], dtype=np.int64), np.array([3, 2, 1], dtype=np.float32))]
    (hits,) = _hits(view, [_query(False)], ranked, ranked[0].rows, {})
    assert [(h.id, h.score) for h in hits] == [("z", 3.0), ("x", 2.0), ("y", 1.0)]
