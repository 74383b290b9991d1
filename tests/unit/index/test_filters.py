"""Filters: equality, in, not-in (absent keys match), numeric ranges, modality; selective filters
ranked exactly on their candidates, large ones tested on shortlists (the Predicate path)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onespace.index import Condition, Filter, Query, Record, collection
from onespace.index import Test as Op
from onespace.index.config import CollectionConfig, HnswParams, Metric
from onespace.models import Modality
from tests.unit.index.helpers import mixture, new_collection, reference_scores

N, DIM = 3000, 32
MODALITIES = [Modality.TEXT, Modality.IMAGE, Modality.AUDIO]


def meta(i: int) -> dict[str, str]:
    m = {"shard": str(i % 100), "rare": str(i % 1000), "size": str(i % 50), "parity": str(i % 2)}
    if i % 7 == 0:
        m["size"] = "n/a"  # not a number: ranges never match it
    if i % 10 == 0:
        del m["parity"]  # absent: not_in matches it
    return m


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return mixture(N, DIM, seed=11)


@pytest.fixture(scope="module")
def filled(data: np.ndarray) -> collection.Collection:
    c = new_collection(
        CollectionConfig(
            name="f", model="m", dimension=DIM, index_dimension=16, hnsw=HnswParams(expansion_search=256)
        )
    )
    c.upsert([Record(f"i{i}", v, MODALITIES[i % 3], meta(i)) for i, v in enumerate(data)])
    return c


def passes(i: int, flt: Filter) -> bool:
    m = meta(i)
    if flt.modalities and MODALITIES[i % 3] not in flt.modalities:
        return False
    for c in flt.all_conditions:
        value = m.get(c.key)
        if c.test is Op.IN and value not in c.values:
            return False
        if c.test is Op.NOT_IN and value in c.values:
            return False
        if c.test is Op.RANGE:
            try:
                x = float(value) if value is not None else math.nan
            except ValueError:
                return False
            low_ok = x >= c.low if c.low_inclusive else x > c.low
            high_ok = x <= c.high if c.high_inclusive else x < c.high
            if not (low_ok and high_ok):
                return False
    return True


def exact(data: np.ndarray, q: np.ndarray, flt: Filter, k: int) -> list[str]:
    ok = np.array([passes(i, flt) for i in range(N)])
    idx = np.flatnonzero(ok)
    scores = reference_scores(data[idx], q, Metric.COSINE) if len(idx) else np.zeros(0)
    return [f"i{idx[j]}" for j in np.argsort(-scores, kind="stable")[:k]]


FILTERS = {
    "1%": Filter(metadata={"shard": "7"}),
    "0.1%": Filter(conditions=(Condition("rare", Op.IN, ("7",)),)),
    "in": Filter(conditions=(Condition("shard", Op.IN, ("1", "2", "3")),)),
    "not_in": Filter(conditions=(Condition("parity", Op.NOT_IN, ("1",)),)),
    "range": Filter(conditions=(Condition("size", Op.RANGE, low=10, high=12, low_inclusive=False),)),
    "open range": Filter(conditions=(Condition("size", Op.RANGE, high=3, high_inclusive=False),)),
    "and": Filter(
        modalities=frozenset({Modality.IMAGE}),
        conditions=(Condition("size", Op.RANGE, low=40), Condition("parity", Op.IN, ("1",))),
    ),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_filters_return_exactly_the_best_matching_items(
    name: str, filled: collection.Collection, data: np.ndarray
) -> None:
    flt = FILTERS[name]
    for qi in (5, 123, 2222):
        got = [h.id for h in filled.search(Query(data[qi], k=10, filter=flt))]
        assert got == exact(data, data[qi], flt, 10), name
        assert all(passes(int(h[1:]), flt) for h in got)


@pytest.mark.parametrize("name", ["not_in", "open range", "and"])
def test_large_filters_take_the_shortlist_path_with_the_same_results(
    name: str, filled: collection.Collection, data: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collection, "LIST_LIMIT", 50)  # so these filters count as "many"
    flt = FILTERS[name]
    candidates = filled._candidates(filled.view, flt)
    assert isinstance(candidates, collection.Predicate)
    assert candidates.estimate > 50
    for qi in (5, 123, 2222):
        got = [h.id for h in filled.search(Query(data[qi], k=10, filter=flt))]
        assert got == exact(data, data[qi], flt, 10), name


def test_modality_filter_never_leaks(filled: collection.Collection, data: np.ndarray) -> None:
    for modality in MODALITIES:
        hits = filled.search(Query(data[0], k=50, filter=Filter(modalities=frozenset({modality}))))
        assert len(hits) == 50 and {h.modality for h in hits} == {modality}


def test_filter_matching_nothing_returns_nothing(filled: collection.Collection, data: np.ndarray) -> None:
    flt = Filter(conditions=(Condition("size", Op.RANGE, low=1e9),))
    assert filled.search(Query(data[0], k=5, filter=flt)) == []


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("42", 42.0),
        ("-1.5e3", -1500.0),
        ("+.5", 0.5),
        ("7.", 7.0),
        (" 42", None),
        ("1_000", None),
        ("\uff14\uff12", None),
        ("inf", None),
        ("nan", None),
        ("1e999", None),
        ("", None),
        ("0x10", None),
    ],
)
def test_only_plain_decimal_numbers_are_numeric(value: str, number: float | None) -> None:
    from onespace.index.sqlstore import numeric_value

    assert numeric_value(value) == number
