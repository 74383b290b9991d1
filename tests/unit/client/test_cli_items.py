"""`onespace items get|delete` against the in-process fake: output, JSON, missing ids, exit codes."""

from __future__ import annotations

import json

import pytest

from onespace_client import Client, item, vectors
from onespace_client.cli import main
from onespace_client.cli.items import render
from onespace_client.v1 import data_pb2
from tests.unit.client.fake_gateway import FakeGateway

Capture = pytest.CaptureFixture[str]


def run(gateway: FakeGateway, *argv: str) -> int:
    return main([*argv, "--target", gateway.target])


@pytest.fixture
def stored(gateway: FakeGateway) -> FakeGateway:
    with Client(gateway.target) as client:
        client.create_collection("c")
        client.upsert(
            "c",
            [
                item("doc", "a text", {"lang": "en", "year": "2024"}),
                item("raw", [0.5] * 8),
            ],
        )
    return gateway


def test_get_prints_id_modality_and_all_metadata(stored: FakeGateway, capsys: Capture) -> None:
    assert run(stored, "items", "get", "-c", "c", "doc", "raw") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "MODALITY", "METADATA"]
    assert lines[2].split() == ["doc", "text", "lang=en,", "year=2024"]
    assert lines[3].split() == ["raw", "-", "-"]  # stored from a vector: no modality, no metadata


def test_get_with_vectors(stored: FakeGateway, capsys: Capture) -> None:
    assert run(stored, "items", "get", "-c", "c", "raw", "--vectors") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "VECTOR"
    assert "[0.5000, 0.5000, 0.5000, 0.5000, ...] dim 8, norm 1.4142" in lines[2]
    assert run(stored, "items", "get", "-c", "c", "raw", "--vectors", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["items"][0]["vector"] == [0.5] * 8 and data["missing_ids"] == []
    assert run(stored, "items", "get", "-c", "c", "raw", "--json") == 0
    assert json.loads(capsys.readouterr().out)["items"][0]["vector"] == []


def test_render_reads_packed_vectors_once_expanded() -> None:
    response = data_pb2.GetResponse(items=[data_pb2.StoredItem(id="x", vector_f32=vectors.pack([3.0, 4.0]))])
    for stored in response.items:
        vectors.expand(stored)
    assert "[3.0000, 4.0000] dim 2, norm 5.0000" in render(response, with_vectors=True)


def test_missing_ids_are_named_and_exit_1(stored: FakeGateway, capsys: Capture) -> None:
    assert run(stored, "items", "get", "-c", "c", "doc", "nope", "gone") == 1
    captured = capsys.readouterr()
    assert "doc" in captured.out and "nope" not in captured.out
    assert captured.err == "not found: nope, gone\n"
    assert run(stored, "items", "get", "-c", "c", "nope", "--json") == 1
    assert json.loads(capsys.readouterr().out) == {"items": [], "missing_ids": ["nope"]}
    assert run(stored, "items", "get", "-c", "nothere", "x") == 1
    assert capsys.readouterr().err == "error: NOT_FOUND: collection 'nothere' not found\n"


def test_delete(stored: FakeGateway, capsys: Capture) -> None:
    assert run(stored, "items", "delete", "-c", "c", "doc", "nope") == 0
    assert capsys.readouterr().out == "deleted 1 of 2 items from c (1 did not exist)\n"
    assert run(stored, "items", "delete", "-c", "c", "raw", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": 1, "requested": 1}
    assert run(stored, "items", "get", "-c", "c", "doc", "raw") == 1
    assert capsys.readouterr().err == "not found: doc, raw\n"


@pytest.mark.parametrize(
    "argv",
    [["items"], ["items", "get", "x"], ["items", "get", "-c", "c"], ["items", "delete", "-c", "c"]],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: Capture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err
