"""`check_vector` measures a vector in one float64 pass; its shortcuts must refuse exactly what the
element-by-element checks refuse."""

from __future__ import annotations

import numpy as np
import pytest

from onespace.errors import InvalidArgument
from onespace.index import CollectionConfig, Metric
from onespace.index.config import IndexDtype, StoredDtype
from onespace.index.validate import check_vector

F16_MAX = 65504.0


def _config(**kw: object) -> CollectionConfig:
    return CollectionConfig(name="c", model="m", dimension=8, **kw).validated()  # type: ignore[arg-type]


def test_a_norm_beyond_f16_with_every_value_inside_it_is_stored() -> None:
    # |v| = 60000 * sqrt(8) > 65504, but no single value passes 65504: the norm shortcut must not refuse
    vector = np.full(8, 60000.0, dtype=np.float32)
    checked = check_vector(vector, _config(metric=Metric.INNER_PRODUCT, stored_dtype=StoredDtype.F16))
    np.testing.assert_array_equal(checked, vector)
    assert checked is not vector  # a private copy, even when the input is already float32


@pytest.mark.parametrize("value", [F16_MAX * 1.01, -F16_MAX * 1.01])
def test_one_value_beyond_f16_is_refused_by_name(value: float) -> None:
    vector = np.zeros(8, dtype=np.float32)
    vector[0], vector[5] = 1.0, value
    with pytest.raises(InvalidArgument, match=r"a value of magnitude 6\.6.e\+04 exceeds the f16 range"):
        check_vector(vector, _config(metric=Metric.INNER_PRODUCT, stored_dtype=StoredDtype.F16))
    # an f32 collection holds it
    f32 = _config(metric=Metric.INNER_PRODUCT, stored_dtype=StoredDtype.F32, dtype=IndexDtype.F32)
    assert check_vector(vector, f32)[5] == np.float32(value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("as_list", [False, True])
def test_a_non_finite_value_is_found_at_its_position(bad: float, as_list: bool) -> None:
    vector = np.ones(8, dtype=np.float32)
    vector[6] = bad
    raw = vector.tolist() if as_list else vector
    with pytest.raises(InvalidArgument, match=r"vector: contains NaN or infinity .*\[6\] is"):
        check_vector(raw, _config())


def test_a_float64_value_beyond_float32_is_refused_not_wrapped() -> None:
    raw = np.ones(8, dtype=np.float64)
    raw[2] = 1e39  # becomes inf as float32
    with pytest.raises(InvalidArgument, match=r"beyond float32\): \[2\] is inf"):
        check_vector(raw, _config())


def test_the_indexed_prefix_needs_a_direction_even_when_the_rest_has_one() -> None:
    vector = np.zeros(8, dtype=np.float32)
    vector[6] = 1.0
    config = _config(index_dimension=4)
    with pytest.raises(InvalidArgument, match=r"its first 4 components \(the indexed prefix\) are all zeros"):
        check_vector(vector, config)
    vector[1] = 1e-30  # a direction float64 sees, but float32 normalisation loses
    with pytest.raises(InvalidArgument, match="values too small"):
        check_vector(vector, config)
    vector[1] = 0.5
    assert check_vector(vector, config)[1] == np.float32(0.5)
