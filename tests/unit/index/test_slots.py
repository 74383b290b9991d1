"""The slot table: `SlotView.rows_for_keys` (the slot of each HNSW key, by offset when the keys
have no gaps and by search when they do, after a compaction, with the same answers either way),
and the per-slot ids and metadata flags that name a search's hits without SQLite."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from onespace.index.slots import IDS_DTYPE, SlotTable, SlotView


def _append(table: SlotTable, keys: list[int]) -> None:
    n = len(keys)
    ids = [f"item-{k}" for k in keys]
    described = np.array([k % 3 == 0 for k in keys], dtype=bool)
    table.append(table.count, np.array(keys, dtype=np.uint64), np.zeros(n, dtype=np.int8), ids, described)


def _view(keys: list[int], dead: set[int]) -> SlotView:
    table = SlotTable()
    _append(table, keys)  # the arrays keep room past `count`, as a grown table has
    table.kill_keys(np.array(sorted(dead), dtype=np.uint64))
    return table.view(np.zeros((len(keys), 4), dtype=np.float32))


def _expected(keys: list[int], dead: set[int], asked: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    slot = {k: i for i, k in enumerate(keys) if k not in dead}
    return np.vectorize(lambda k: slot.get(int(k), -1), otypes=[np.int64])(asked)


def test_contiguous_keys_map_by_offset_dead_and_unknown_keys_give_minus_one() -> None:
    keys = list(range(100, 110))  # slots 0..9 hold keys 100..109
    dead = {102, 107}
    asked = np.array([[100, 109, 102], [99, 110, 0], [107, 104, 2**64 - 1]], dtype=np.uint64)
    rows = _view(keys, dead).rows_for_keys(asked)
    assert rows.shape == asked.shape and rows.dtype == np.int64
    assert rows.tolist() == [[0, 9, -1], [-1, -1, -1], [-1, 4, -1]]
    assert np.array_equal(rows, _expected(keys, dead, asked))


def test_keys_with_gaps_are_searched_with_the_same_answers() -> None:
    keys = [0, 1, 3, 4, 8, 20, 21]  # compacted: gaps between keys
    dead = {4}
    asked = np.array([0, 2, 3, 4, 8, 9, 21, 22, 5], dtype=np.uint64)
    rows = _view(keys, dead).rows_for_keys(asked)
    assert rows.tolist() == [0, -1, 2, -1, 4, -1, 6, -1, -1]
    assert np.array_equal(rows, _expected(keys, dead, asked))


def test_an_empty_table_knows_no_key() -> None:
    view = SlotTable().view(np.zeros((0, 2)))
    assert view.rows_for_keys(np.array([[0, 1]], dtype=np.uint64)).tolist() == [[-1, -1]]


def test_random_tables_agree_with_a_dictionary() -> None:
    rng = np.random.default_rng(7)
    for trial in range(50):
        n = int(rng.integers(1, 60))
        start = int(rng.integers(0, 1000))
        if trial % 2:
            keys = (start + np.arange(n)).tolist()
        else:
            keys = np.sort(rng.choice(np.arange(start, start + 3 * n), n, replace=False)).tolist()
        dead = {k for k in keys if rng.random() < 0.2}
        asked = rng.integers(max(0, start - 5), start + 3 * n + 5, size=(3, 8)).astype(np.uint64)
        assert np.array_equal(_view(keys, dead).rows_for_keys(asked), _expected(keys, dead, asked))


def test_ids_and_metadata_flags_follow_their_slots_through_growth_kills_and_reloads() -> None:
    table = SlotTable()
    _append(table, list(range(1000)))
    before = table.view(np.zeros((0, 4)))
    _append(table, list(range(1000, 2500)))  # past the first capacity: the arrays are replaced
    table.kill_keys(np.array([5, 1500], dtype=np.uint64))
    view = table.view(np.zeros((0, 4)))
    rows = view.rows_for_keys(np.array([0, 999, 1000, 2499, 5, 1500], dtype=np.uint64))
    assert rows.tolist() == [0, 999, 1000, 2499, -1, -1]
    assert view.ids[[0, 999, 1000, 2499]].tolist() == ["item-0", "item-999", "item-1000", "item-2499"]
    assert view.described[[0, 999, 1000, 2499, 1001]].tolist() == [True, True, False, True, False]
    # An earlier snapshot still reads what it saw; a killed slot is only not live.
    assert before.count == 1000 and before.ids[[0, 999]].tolist() == ["item-0", "item-999"]
    assert not view.live[5] and view.ids[5] == "item-5"
    # A reload (a compaction keeps the live slots) carries both columns along.
    keep = np.flatnonzero(view.live[: view.count])
    again = SlotTable()
    again.load(view.keys[keep], view.codes[keep], view.live[keep], view.ids[keep], view.described[keep])
    reloaded = again.view(np.zeros((0, 4)))
    assert reloaded.count == 2498
    assert reloaded.ids[: reloaded.count].tolist() == [f"item-{k}" for k in range(2500) if k not in (5, 1500)]
    assert reloaded.described[: reloaded.count].tolist() == [
        k % 3 == 0 for k in range(2500) if k not in (5, 1500)
    ]


def test_columns_of_different_lengths_are_refused() -> None:
    table = SlotTable()
    keys = np.array([1, 2], dtype=np.uint64)
    with pytest.raises(ValueError, match="differ in length"):
        table.append(0, keys, np.zeros(2, dtype=np.int8), ["a"], np.zeros(2, dtype=bool))
    with pytest.raises(ValueError, match="differ in length"):
        table.load(
            keys,
            np.zeros(2, dtype=np.int8),
            np.ones(2, dtype=bool),
            np.array(["a"], IDS_DTYPE),
            np.zeros(2, bool),
        )
    assert table.count == 0


def test_memory_counts_the_arrays_and_the_ids_too_long_to_sit_inline() -> None:
    short, long = SlotTable(), SlotTable()
    keys = np.arange(1, 4, dtype=np.uint64)
    codes, described = np.zeros(3, dtype=np.int8), np.zeros(3, dtype=bool)
    short.append(0, keys, codes, ["a", "b" * 15, "c"], described)
    long.append(0, keys, codes, ["a", "b" * 16, "c" * 40], described)
    assert short.memory_bytes() == 1024 * (8 + 1 + 1 + 16 + 1)  # capacity 1024: key, live, code, id, flag
    assert long.memory_bytes() == short.memory_bytes() + 16 + 40
    assert SlotTable().memory_bytes() == 0
