"""`score_shortlists` is `score_block` for many shortlists at once: the same kernel, the same
finishing step, so the same scores bit for bit, for every metric, stored dtype and rank length
(a renormalised prefix or the full vector), on strided prefix views as the rerank passes them."""

from __future__ import annotations

import numpy as np
import pytest

from onespace.index.config import Metric
from onespace.index.matryoshka import prefix
from onespace.index.scoring import as_dtype, score_block, score_shortlists

FULL = 96


@pytest.mark.parametrize("metric", list(Metric))
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("d", [32, FULL])
def test_shortlists_scored_together_equal_each_scored_alone(metric: Metric, dtype: type, d: int) -> None:
    rng = np.random.default_rng(d + len(metric.value))
    m, width = 7, 12
    stored = rng.standard_normal((m, width, FULL)).astype(dtype)
    queries = prefix(rng.standard_normal((m, FULL)).astype(np.float32), d, metric, full=FULL)
    blocks = stored[:, :, :d]  # strided when d < FULL, as the rerank slices the gathered rows
    together = score_shortlists(blocks, queries, metric, FULL)
    assert together.shape == (m, width) and together.dtype == np.float32
    for i in range(m):
        alone = score_block(blocks[i], queries[i][None, :], metric, FULL)[0]
        assert together[i].tobytes() == alone.tobytes(), i


def test_the_query_cast_to_f16_is_numpys_bit_for_bit() -> None:
    """`as_dtype` casts float32 queries to float16 with NumKong, not numpy (20x faster); scores
    depend on those bits, so they must be numpy's: round to nearest even (ties included),
    subnormals, the largest finite value, overflow to inf, signed zeros, on strided views too."""
    rng = np.random.default_rng(5)
    values = np.concatenate(
        [
            rng.standard_normal(20_000).astype(np.float32) * 10.0 ** rng.integers(-9, 5, 20_000),
            np.array(
                [0.0, -0.0, 65504.0, 65519.0, 65520.0, -70000.0, 6e-8, 3e-8, 2.98e-8, 1e-12], np.float32
            ),
            # exact halfway points between neighbouring halves: the tie goes to the even one
            (np.arange(1024, 2048, dtype=np.float32) + 0.5) / 1024,
        ]
    )
    rows = values.astype(np.float32)[: len(values) // 64 * 64].reshape(-1, 64)
    for a in (rows, rows[:, ::2], rows[::3, 5:40]):
        cast = as_dtype(a, np.dtype(np.float16))
        assert cast.dtype == np.float16 and cast.flags.c_contiguous and cast.shape == a.shape
        with np.errstate(over="ignore"):
            assert cast.view(np.uint16).tobytes() == a.astype(np.float16).view(np.uint16).tobytes()
    same = rng.standard_normal((4, 8)).astype(np.float32)
    assert as_dtype(same, np.dtype(np.float32)) is same  # already what is asked: no copy
