"""`score_shortlists` is `score_block` for many shortlists at once: the same kernel, the same
finishing step, so the same scores bit for bit, for every metric, stored dtype and rank length
(a renormalised prefix or the full vector), on strided prefix views as the rerank passes them."""

from __future__ import annotations

import numpy as np
import pytest

from onespace.index.config import Metric
from onespace.index.matryoshka import prefix
from onespace.index.scoring import score_block, score_shortlists

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
