"""SlotView.rows_for_keys: the slot of each HNSW key, by offset when the keys have no gaps and by
search when they do (after a compaction), with the same answers either way."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from onespace.index.slots import SlotView


def _view(keys: list[int], dead: set[int]) -> SlotView:
    n = len(keys)
    live = np.array([k not in dead for k in keys], dtype=bool)
    return SlotView(
        count=n,
        live_count=int(live.sum()),
        keys=np.array([*keys, 0, 0], dtype=np.uint64),  # room past `count`, as a grown table has
        live=np.concatenate([live, [True, True]]),
        codes=np.zeros(n + 2, dtype=np.int8),
        vectors=np.zeros((n + 2, 4), dtype=np.float32),
    )


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
    view = SlotView(0, 0, np.zeros(4, np.uint64), np.zeros(4, bool), np.zeros(4, np.int8), np.zeros((4, 2)))
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
