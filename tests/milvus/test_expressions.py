"""Names and expressions: stored names map to Milvus names and back; caller text reaches a Milvus
expression only as an escaped string literal that parses back to exactly that text; metadata keys
and values cannot change what a filter selects (injection through both, against real data)."""

# ruff: noqa: E402  (the imports follow the check that the `milvus` extra is installed)
from __future__ import annotations

from tests.milvus.conftest import skip_without_milvus

skip_without_milvus()

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from milvus_lite.search.filter import parse_expr

from onespace.errors import InvalidArgument
from onespace.index import CollectionConfig, Condition, Filter, Query, Record, StoredDtype
from onespace.index import Test as Op
from onespace.index.backend import Backend
from onespace.milvus.expr import filter_expr, ids_expr, quote
from onespace.milvus.names import from_milvus, to_milvus
from onespace.milvus.rows import metadata, tag

NAME_CHARS = st.sampled_from("abcXYZ019_.-")
LOCAL_NAMES = st.text(NAME_CHARS, min_size=1, max_size=64).filter(lambda n: n not in {".", ".."})
TENANTS = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True)
MILVUS_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,254}"


@given(tenant=st.none() | TENANTS, local=LOCAL_NAMES)
def test_stored_names_map_to_valid_milvus_names_and_back(tenant: str | None, local: str) -> None:
    stored = local if tenant is None else f"{tenant}~{local}"
    milvus = to_milvus(stored)
    import re

    assert re.fullmatch(MILVUS_NAME, milvus), milvus
    assert from_milvus(milvus) == stored


def test_names_stay_readable_and_foreign_names_are_ignored() -> None:
    assert to_milvus("acme~photos-2024.v1_a") == "os_acme_tphotos_h2024_dv1__a"
    assert to_milvus("A") != to_milvus("a")
    for foreign in ("photos", "os_", "os_a_", "os_a_x", "os_a_t", "os_a_tb_tc", "os__d"):
        assert from_milvus(foreign) is None, foreign
    with pytest.raises(InvalidArgument):
        to_milvus("no/slashes")


@settings(max_examples=300)
@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=5))
def test_any_text_parses_back_to_itself(values: list[str]) -> None:
    """What milvus-lite's parser reads from `id in [...]` is exactly the ids given; Milvus's
    grammar reads the same escapes (\\\\, \\", \\n, \\r) the same way."""
    parsed = parse_expr(ids_expr(values))
    assert [e.value for e in parsed.values.elements] == values  # type: ignore[union-attr]


def test_quote_escapes_only_what_would_break_the_literal() -> None:
    assert quote('a"b\\c\nd\re\tf') == '"a\\"b\\\\c\\nd\\re\tf"'


def test_filters_are_one_conjunction_with_hex_keys() -> None:
    flt = Filter(
        metadata={'k"]': "v"},
        conditions=(
            Condition("n", Op.NOT_IN, ("1", 'x" or "')),
            Condition("n", Op.RANGE, low=-1e-5, high=3.0, high_inclusive=False),
            Condition("m", Op.RANGE, high=math.inf, low=2.5),
        ),
    )
    assert filter_expr(flt) == (
        '(array_contains_any(tags, ["6b225d=v"])) and '
        '(not array_contains_any(tags, ["6e=1", "6e=x\\" or \\""])) and '
        '(nums["6e"] >= -1e-05 and nums["6e"] < 3.0) and (nums["6d"] >= 2.5)'
    )
    assert filter_expr(Filter()) == ""
    assert metadata([tag("6b225d", "v=w")]) == {'k"]': "v=w"}


HOSTILE_KEYS = ['k"]', 'a"] or true or tags["', "back\\slash", "new\nline", "=", "ключ", "tab\tkey"]
HOSTILE_VALUES = ['" or 1 == 1 or "', "\\", '\\"', "x\ny", "\r", "' or '1'=='1", "", "v=w", "\u2028"]


def test_injection_through_keys_and_values_selects_nothing_else(backend: Backend) -> None:
    """Hostile keys and values are stored, read back and filtered on as plain text, on both backends."""
    dim = 8
    c = backend.create(CollectionConfig(name="inj", model="m", dimension=dim, stored_dtype=StoredDtype.F32))
    rng = np.random.default_rng(0)
    records = [
        Record(f"h{i}", rng.normal(size=dim).astype(np.float32), metadata={key: value})
        for i, (key, value) in enumerate((k, v) for k in HOSTILE_KEYS for v in HOSTILE_VALUES)
    ]
    records.append(
        Record('id"] or true or ["', rng.normal(size=dim).astype(np.float32), metadata={"plain": "1"})
    )
    c.apply([c.prepare_upsert(records)])
    for r in records:
        got = c.get([r.id])[0]
        assert got is not None and got.metadata == r.metadata
    q = rng.normal(size=dim).astype(np.float32)
    everything = len(records)
    for i, r in enumerate(records[:-1]):
        ((key, value),) = r.metadata.items()
        same = [x.id for x in records if x.metadata == {key: value}]
        hits = c.search_many([Query(q, k=everything, filter=Filter(metadata={key: value}))])[0]
        assert sorted(h.id for h in hits) == sorted(same), (key, value)
        others = c.search_many(
            [Query(q, k=everything, filter=Filter(conditions=(Condition(key, Op.NOT_IN, (value,)),)))]
        )[0]
        assert len(others) == everything - len(same), (key, value)
        if i % 9 == 0:
            ranged = Filter(conditions=(Condition(key, Op.RANGE, low=0),))
            assert c.search_many([Query(q, k=everything, filter=ranged)])[0] == []
    assert [h.id for h in c.search_many([Query(q, k=3, filter=Filter(metadata={"plain": "1"}))])[0]] == [
        records[-1].id
    ]
