from __future__ import annotations

import numpy as np
import pytest

from onespace.errors import InvalidArgument, NotFound
from onespace.index import Collection, CollectionConfig, Metric, Query, Record
from onespace.models import Modality
from tests.unit.index.helpers import new_collection

DIM = 16


def collection(metric: Metric = Metric.COSINE, index_dimension: int = 0) -> Collection:
    return new_collection(
        CollectionConfig(name="c", model="m", dimension=DIM, index_dimension=index_dimension, metric=metric)
    )


def vec(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=DIM).astype(np.float32)


def test_upsert_get_roundtrip() -> None:
    c = collection()
    v = vec(1)
    assert c.upsert([Record("a", v, Modality.IMAGE, {"lang": "en"}), Record("b", vec(2))]) == 2
    assert len(c) == 2
    a, missing, b = c.get(["a", "zzz", "b"], include_vectors=True)
    assert missing is None
    assert a is not None and b is not None
    assert (a.id, a.modality, a.metadata) == ("a", Modality.IMAGE, {"lang": "en"})
    assert (b.modality, b.metadata) == (None, {})
    assert a.vector is not None
    np.testing.assert_array_equal(a.vector, v)
    item = c.get(["a"])[0]
    assert item is not None and item.vector is None


def test_stored_vector_is_a_private_copy() -> None:
    c = collection()
    v = vec(1)
    c.upsert([Record("a", v)])
    v[:] = 0.0
    assert c.vector("a").any()
    got = c.vector("a")
    got[:] = 0.0
    assert c.vector("a").any()


def test_upsert_replaces_existing_id() -> None:
    c = collection()
    c.upsert([Record("a", vec(1), Modality.TEXT, {"v": "1"}), Record("b", vec(2))])
    c.upsert([Record("a", vec(3), Modality.AUDIO, {"v": "2"})])
    assert len(c) == 2
    item = c.get(["a"], include_vectors=True)[0]
    assert item is not None and item.metadata == {"v": "2"} and item.modality is Modality.AUDIO
    np.testing.assert_array_equal(c.vector("a"), vec(3))
    # The old vector is gone from the index: searching for it finds the new "a" only once.
    hits = c.search(Query(vec(1), k=5))
    assert sorted(h.id for h in hits) == ["a", "b"]


def test_repeated_id_within_one_batch_keeps_the_last() -> None:
    c = collection()
    assert c.upsert([Record("a", vec(1)), Record("a", vec(2))]) == 2
    assert len(c) == 1
    np.testing.assert_array_equal(c.vector("a"), vec(2))


def test_delete_counts_existing_ids_only() -> None:
    c = collection()
    c.upsert([Record(str(i), vec(i)) for i in range(5)])
    assert c.delete(["1", "3", "nope", "1"]) == 2
    assert len(c) == 3
    assert c.get(["1", "3"]) == [None, None]
    assert c.delete(["1"]) == 0
    assert all(h.id not in {"1", "3"} for h in c.search(Query(vec(1), k=5)))


def test_vector_of_unknown_id_is_not_found() -> None:
    c = collection()
    with pytest.raises(NotFound, match="'x' not found in collection 'c'"):
        c.vector("x")


def test_modalities_follow_the_live_items() -> None:
    c = collection()
    c.upsert([Record("t", vec(1), Modality.TEXT), Record("i", vec(2), Modality.IMAGE), Record("r", vec(3))])
    assert c.modalities() == {Modality.TEXT, Modality.IMAGE}
    c.delete(["i"])
    assert c.modalities() == {Modality.TEXT}
    c.upsert([Record("t", vec(1), Modality.VIDEO)])
    assert c.modalities() == {Modality.VIDEO}


def _bad_records() -> list[tuple[Record, str, str]]:
    nan = vec(9)
    nan[3] = np.nan
    inf = vec(9)
    inf[0] = np.inf
    return [
        (
            Record("x", np.ones(100, dtype=np.float32)),
            "items[1].vector",
            "length 100 does not match the collection's dimension 16",
        ),
        (Record("x", nan), "items[1].vector", "contains NaN or infinity"),
        (Record("x", inf), "items[1].vector", "contains NaN or infinity"),
        (Record("x", np.zeros(DIM, dtype=np.float32)), "items[1].vector", "all zeros"),
        (Record("x", np.ones((2, 8), dtype=np.float32)), "items[1].vector", "one-dimensional"),
        (Record("", vec(9)), "items[1].id", "1..256 bytes"),
        (Record("é" * 129, vec(9)), "items[1].id", "got 258"),
        (Record("\ud800", vec(9)), "items[1].id", "not valid UTF-8"),
        (
            Record("x", vec(9), metadata={str(i): "v" for i in range(65)}),
            "items[1].metadata",
            "65 keys; at most 64",
        ),
        (Record("x", vec(9), metadata={"k" * 129: "v"}), "items[1].metadata", "keys must be 1..128"),
        (Record("x", vec(9), metadata={"": "v"}), "items[1].metadata", "keys must be 1..128"),
        (Record("x", vec(9), metadata={"k": "v" * 4097}), "items[1].metadata", "at most 4096"),
        (Record("x", vec(9), metadata={"k": 3}), "items[1].metadata", "must be a string"),  # type: ignore[dict-item]
        (Record("x", vec(9), modality="text"), "items[1].modality", "not a Modality"),  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize(("bad", "field", "reason"), _bad_records())
def test_invalid_record_leaves_the_collection_untouched(bad: Record, field: str, reason: str) -> None:
    c = collection()
    c.upsert([Record("keep", vec(1), Modality.TEXT, {"a": "b"})])
    before_version = c.seq
    with pytest.raises(InvalidArgument) as info:
        c.upsert([Record("keep", vec(2)), bad, Record("new", vec(3))])
    assert info.value.field == field
    assert reason in info.value.reason
    assert c.seq == before_version
    assert len(c) == 1
    assert c.get(["new", "x"]) == [None, None]
    np.testing.assert_array_equal(c.vector("keep"), vec(1))
    assert [h.id for h in c.search(Query(vec(1), k=3))] == ["keep"]


def test_zero_vector_is_fine_for_inner_product_at_full_dimension() -> None:
    c = collection(Metric.INNER_PRODUCT)
    c.upsert([Record("z", np.zeros(DIM, dtype=np.float32)), Record("a", vec(1))])
    assert len(c) == 2


def test_zero_index_prefix_is_refused_when_the_prefix_is_renormalised() -> None:
    c = collection(Metric.INNER_PRODUCT, index_dimension=4)
    v = vec(1)
    v[:4] = 0.0
    with pytest.raises(InvalidArgument, match="first 4 components"):
        c.upsert([Record("z", v)])


def test_longest_id_is_accepted() -> None:
    c = collection()
    c.upsert([Record("é" * 128, vec(1))])
    assert c.get(["é" * 128])[0] is not None


def test_empty_upsert_and_delete_change_nothing() -> None:
    c = collection()
    assert c.upsert([]) == 0
    assert c.delete([]) == 0
    assert c.seq == 0


def test_error_field_follows_the_gateway_naming() -> None:
    c = collection()
    bad = Record("x", np.ones(3, dtype=np.float32))
    with pytest.raises(InvalidArgument) as info:
        c.upsert([bad])
    assert info.value.field == "items[0].vector"
    with pytest.raises(InvalidArgument) as info:
        c.upsert([bad], field="item")
    assert info.value.field == "item.vector"
    with pytest.raises(InvalidArgument) as info:
        c.upsert([Record("ok", vec(1)), bad], field="item")
    assert info.value.field == "item[1].vector"
