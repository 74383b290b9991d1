from __future__ import annotations

import pytest

from onespace.errors import InvalidArgument
from onespace.index import CollectionConfig, HnswParams, IndexDtype, Metric
from onespace.index.config import config_from_json, config_to_json


def make(**changes: object) -> CollectionConfig:
    fields: dict[str, object] = {"name": "docs", "model": "m", "dimension": 256}
    fields.update(changes)
    return CollectionConfig(**fields)  # type: ignore[arg-type]


def test_defaults_are_filled_in() -> None:
    config = make().validated()
    assert config.index_dimension == 256
    assert config.metric is Metric.COSINE
    assert config.dtype is IndexDtype.F16
    assert config.hnsw == HnswParams(16, 128, 64)
    assert config.rerank_factor == 4
    assert config.max_unindexed_rows == 0 and config.unindexed_limit == 43_008  # 0 stays 0; a 256-d index


def test_a_tail_bound_of_its_own() -> None:
    assert make(max_unindexed_rows=100).validated().unindexed_limit == 100
    assert make(max_unindexed_rows=1 << 20).validated().unindexed_limit == 1 << 20


def test_explicit_index_dimension_is_kept() -> None:
    assert make(index_dimension=64).validated().index_dimension == 64


@pytest.mark.parametrize(
    ("changes", "field", "reason_part"),
    [
        ({"index_dimension": 1024}, "config.index_dimension", "1024 is larger than the stored dimension 256"),
        ({"index_dimension": -1}, "config.index_dimension", "smaller than the minimum 0"),
        ({"dimension": 0}, "config.dimension", "smaller than the minimum 1"),
        ({"dimension": 10**6}, "config.dimension", "larger than the maximum"),
        ({"dimension": 12.5}, "config.dimension", "not an integer"),
        ({"dimension": True}, "config.dimension", "not an integer"),
        ({"name": ""}, "config.name", "must match"),
        ({"name": "a/b"}, "config.name", "must match"),
        ({"name": "x" * 65}, "config.name", "must match"),
        ({"name": ".."}, "config.name", "reserved"),
        ({"metric": "cos"}, "config.metric", "not a Metric"),
        ({"dtype": "f16"}, "config.dtype", "not an IndexDtype"),
        ({"hnsw": HnswParams(connectivity=1)}, "config.hnsw.connectivity", "minimum 2"),
        ({"hnsw": HnswParams(expansion_add=0)}, "config.hnsw.expansion_add", "minimum 1"),
        ({"hnsw": HnswParams(expansion_search=0)}, "config.hnsw.expansion_search", "minimum 1"),
        ({"rerank_factor": 0}, "config.rerank_factor", "minimum 1"),
        ({"max_unindexed_rows": -1}, "config.max_unindexed_rows", "smaller than the minimum 0"),
        ({"max_unindexed_rows": 2**20 + 1}, "config.max_unindexed_rows", "larger than the maximum 1048576"),
        ({"max_unindexed_rows": "many"}, "config.max_unindexed_rows", "not an integer"),
    ],
)
def test_invalid_fields_are_named(changes: dict[str, object], field: str, reason_part: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        make(**changes).validated()
    assert info.value.field == field
    assert reason_part in info.value.reason


def test_names_with_dots_dashes_and_underscores_are_fine() -> None:
    assert make(name="a.b-c_D9").validated().name == "a.b-c_D9"


def test_json_roundtrip() -> None:
    config = make(
        index_dimension=32,
        metric=Metric.L2,
        dtype=IndexDtype.BF16,
        hnsw=HnswParams(8, 40, 20),
        rerank_factor=7,
        max_unindexed_rows=50_000,
    ).validated()
    assert config_from_json(config_to_json(config)) == config


def test_json_written_before_the_tail_bound_existed_reads_as_the_default() -> None:
    data = config_to_json(make().validated())
    del data["max_unindexed_rows"]
    assert config_from_json(data).max_unindexed_rows == 0


def test_json_with_missing_field_names_it() -> None:
    data = config_to_json(make().validated())
    del data["dimension"]
    with pytest.raises(InvalidArgument) as info:
        config_from_json(data)
    assert info.value.field == "config.dimension"


def test_json_with_unknown_metric_is_refused() -> None:
    data = config_to_json(make().validated())
    data["metric"] = "manhattan"
    with pytest.raises(InvalidArgument, match="manhattan"):
        config_from_json(data)
