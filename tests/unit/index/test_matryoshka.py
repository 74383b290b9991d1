from __future__ import annotations

import numpy as np
import pytest

from onespace.index import Metric, prefix, truncate
from onespace.index.matryoshka import renormalises


def test_shorter_prefix_is_renormalised_1d() -> None:
    v = np.array([3.0, 4.0, 100.0, -7.0], dtype=np.float32)
    out = truncate(v, 2)
    np.testing.assert_allclose(out, [0.6, 0.8], rtol=1e-6)
    assert out.dtype == np.float32


def test_shorter_prefix_is_renormalised_2d() -> None:
    x = np.array([[3.0, 4.0, 1.0], [0.0, 2.0, 5.0]], dtype=np.float32)
    out = truncate(x, 2)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), [1.0, 1.0], rtol=1e-6)


def test_full_length_is_unchanged_unless_asked() -> None:
    v = np.array([3.0, 4.0], dtype=np.float32)
    np.testing.assert_array_equal(truncate(v, 2), v)
    np.testing.assert_allclose(truncate(v, 2, normalise_full=True), [0.6, 0.8], rtol=1e-6)


def test_truncate_returns_a_copy() -> None:
    v = np.array([3.0, 4.0], dtype=np.float32)
    out = truncate(v, 2)
    out[0] = 99.0
    assert v[0] == 3.0


def test_zero_prefix_stays_zero_instead_of_nan() -> None:
    x = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    out = truncate(x, 2)
    np.testing.assert_array_equal(out[0], [0.0, 0.0])
    assert np.isfinite(out).all()


@pytest.mark.parametrize("d", [0, 5])
def test_out_of_range_prefix_is_refused(d: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        truncate(np.ones(4, dtype=np.float32), d)


def test_prefix_rule_per_metric() -> None:
    v = np.array([3.0, 4.0], dtype=np.float32)
    np.testing.assert_allclose(prefix(v, 2, Metric.COSINE), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(prefix(v, 2, Metric.INNER_PRODUCT), v)
    np.testing.assert_array_equal(prefix(v, 2, Metric.L2), v)
    # A vector already at a rank dimension shorter than the stored one is renormalised.
    np.testing.assert_allclose(prefix(v, 2, Metric.L2, full=8), [0.6, 0.8], rtol=1e-6)
    assert renormalises(2, 8, Metric.INNER_PRODUCT)
    assert not renormalises(8, 8, Metric.INNER_PRODUCT)
    assert renormalises(8, 8, Metric.COSINE)


def test_batch_renormalisation_divides_each_row_by_its_norm_exactly() -> None:
    """Stored prefixes and query prefixes must agree bit for bit across versions: each nonzero row
    is its own float32 quotient by its row norm, zero rows stay zero, whatever the batch."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((33, 64)).astype(np.float32) * np.float32(3.0)
    x[[0, 5, 32]] = 0.0
    out = truncate(x, 48)
    norms = np.linalg.norm(np.ascontiguousarray(x[:, :48]), axis=1)
    for i, row in enumerate(x[:, :48]):
        expected = row if norms[i] == 0.0 else row / norms[i]
        assert out[i].tobytes() == expected.astype(np.float32).tobytes(), i
    assert not out[[0, 5, 32]].any()
