"""The typed condition builder (`where`), the `--where` grammar, and how clauses become a filter."""

from __future__ import annotations

import math

import pytest
from google.protobuf import json_format

from onespace_client import build, where
from onespace_client.cli._common import CliError
from onespace_client.cli.search import parse_where
from onespace_client.filters import parse_condition
from onespace_client.v1 import common_pb2, search_pb2


def as_dict(condition: search_pb2.Condition) -> dict[str, object]:
    return json_format.MessageToDict(condition, preserving_proto_field_name=True)


def test_where_builds_each_test() -> None:
    assert as_dict(where("lang").equals("en")) == {"key": "lang", "equals": "en"}
    assert as_dict(where("lang").not_equals("")) == {"key": "lang", "not_equals": ""}
    assert as_dict(where("year").equals(2024)) == {"key": "year", "equals": "2024"}
    assert as_dict(where("lang").in_(["en", "fr"])) == {"key": "lang", "in": {"values": ["en", "fr"]}}
    assert as_dict(where("n").not_in(v for v in (1, "2"))) == {"key": "n", "not_in": {"values": ["1", "2"]}}
    assert as_dict(where("y").range(gte=2000, lt=2010.5)) == {
        "key": "y",
        "range": {"gte": 2000.0, "lt": 2010.5},
    }
    only_gt = where("y").range(gt=0)
    assert only_gt.range.HasField("gt") and not only_gt.range.HasField("lte")
    assert only_gt.range.gt == 0.0  # a zero bound is still a bound: the fields have presence
    assert where("y").range(gte=3, lte=3).WhichOneof("test") == "range"  # a single point is fine
    assert repr(where("k")) == "where('k')"


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: where(""), ValueError, "non-empty key"),
        (lambda: where("k").in_("abc"), TypeError, "not a single string"),
        (lambda: where("k").not_in([]), ValueError, "at least one value"),
        (lambda: where("k").equals(1.5), TypeError, "strings"),
        (lambda: where("k").equals(True), TypeError, "strings"),
        (lambda: where("k").range(), ValueError, "at least one of gt, gte, lt, lte"),
        (lambda: where("k").range(gt=1, gte=2), ValueError, "gt or gte, not both"),
        (lambda: where("k").range(lt=1, lte=2), ValueError, "lt or lte, not both"),
        (lambda: where("k").range(gte=10, lt=1), ValueError, "lower bound 10 is above the upper bound 1"),
        (lambda: where("k").range(gt=math.nan), ValueError, "finite"),
        (lambda: where("k").range(lt=math.inf), ValueError, "finite"),
        (lambda: where("k").range(gt="1"), TypeError, "must be a number"),
    ],
)
def test_where_refuses_malformed_conditions(make: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()  # type: ignore[operator]


def test_search_request_carries_conditions_next_to_metadata_and_modalities() -> None:
    request = build.search_request(
        "c",
        text="q",
        modalities=["image"],
        metadata={"lang": "en"},
        conditions=[where("year").range(gte=2000), where("draft").not_equals("yes")],
    )
    assert list(request.filter.modalities) == [common_pb2.MODALITY_IMAGE]
    assert dict(request.filter.metadata) == {"lang": "en"}
    assert [c.key for c in request.filter.conditions] == ["year", "draft"]
    single = build.search_request("c", id="x", conditions=where("a").equals("b"))  # type: ignore[arg-type]
    assert [c.equals for c in single.filter.conditions] == ["b"]
    with pytest.raises(TypeError, match=r"conditions\[0\] is a tuple"):
        build.search_request("c", id="x", conditions=[("a", "b")])  # type: ignore[list-item]
    assert len(build.search_request("c", id="x").filter.conditions) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lang=en", {"key": "lang", "equals": "en"}),
        ("note=a=b", {"key": "note", "equals": "a=b"}),  # the value is everything after the operator
        ("note==x", {"key": "note", "equals": "=x"}),
        ("empty=", {"key": "empty", "equals": ""}),
        ("lang!=en", {"key": "lang", "not_equals": "en"}),
        ("wow!=", {"key": "wow", "not_equals": ""}),
        ("a!b=c", {"key": "a!b", "equals": "c"}),  # a lone ! is part of the key
        ("lang=in:en,fr,de", {"key": "lang", "in": {"values": ["en", "fr", "de"]}}),
        ("lang=in:en", {"key": "lang", "in": {"values": ["en"]}}),
        ("tag=in:in:x", {"key": "tag", "in": {"values": ["in:x"]}}),  # the literal value "in:x"
        ("lang!=in:en,fr", {"key": "lang", "not_in": {"values": ["en", "fr"]}}),
        ("size>=1.5", {"key": "size", "range": {"gte": 1.5}}),
        ("size>3", {"key": "size", "range": {"gt": 3.0}}),
        ("size<10", {"key": "size", "range": {"lt": 10.0}}),
        ("size<=-7e2", {"key": "size", "range": {"lte": -700.0}}),
        ("size>=0", {"key": "size", "range": {"gte": 0.0}}),
        ("país=España", {"key": "país", "equals": "España"}),
    ],
)
def test_parse_condition(text: str, expected: dict[str, object]) -> None:
    assert as_dict(parse_condition(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("novalue", "'novalue': expected one of KEY=VALUE (equal), KEY!=VALUE"),
        ("=en", "'=en': the key before '=' is missing"),
        ("!=en", "'!=en': the key before '!=' is missing"),
        (">=3", "'>=3': the key before '>=' is missing"),
        ("size>=big", "'size>=big': expected a number after '>=', got 'big'"),
        ("size<", "'size<': expected a number after '<', got ''"),
        ("size>nan", "'size>nan': expected a finite number after '>', got 'nan'"),
        ("size<=inf", "'size<=inf': expected a finite number after '<=', got 'inf'"),
        ("lang=in:", "'lang=in:': in: needs at least one value (A,B,C)"),
        ("lang!=in:", "'lang!=in:': in: needs at least one value (A,B,C)"),
    ],
)
def test_parse_condition_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_condition(text)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_parse_where_keeps_plain_equality_in_metadata_and_the_rest_in_order() -> None:
    metadata, conditions = parse_where(
        ["lang=en", "year>=2000", "year<2010", "lang=fr", "kind!=in:draft,spam", "n=in:1"]
    )
    assert metadata == {"lang": "en"}  # what servers without conditions understand, too
    assert [as_dict(c) for c in conditions] == [
        {"key": "year", "range": {"gte": 2000.0}},
        {"key": "year", "range": {"lt": 2010.0}},
        {"key": "lang", "equals": "fr"},  # a second equality on a key ANDs (and matches nothing)
        {"key": "kind", "not_in": {"values": ["draft", "spam"]}},
        {"key": "n", "in": {"values": ["1"]}},
    ]
    assert parse_where([]) == ({}, [])
    with pytest.raises(CliError) as error:
        parse_where(["lang=en", "year>=soon"])
    assert str(error.value) == "--where 'year>=soon': expected a number after '>=', got 'soon'"
