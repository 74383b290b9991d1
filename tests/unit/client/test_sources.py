"""Ingest sources: folder walks, ids, metadata, and JSONL manifests including bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from onespace_client.cli.sources import ManifestError, Source, SourceReader, load, parse_manifest_line


def _tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "a.txt").write_text("alpha", encoding="utf-8")
    (root / "sub" / "b.png").write_bytes(b"\x89PNGdata")
    (root / "sub" / "deeper" / "c.MP3").write_bytes(b"ID3data")
    (root / "sub" / "notes.pdf").write_bytes(b"%PDF")
    (root / ".hidden" / "d.txt").write_text("secret", encoding="utf-8")
    (root / ".e.txt").write_text("dotfile", encoding="utf-8")


def test_folder_ids_are_relative_paths_and_unknown_types_are_skipped(tmp_path: Path) -> None:
    _tree(tmp_path)
    reader = SourceReader([str(tmp_path)], metadata={"batch": "1"})
    sources = list(reader)
    assert [s.id for s in sources] == ["a.txt", "sub/b.png", "sub/deeper/c.MP3"]
    assert reader.skipped == 1
    assert reader.count() == 3
    assert sources[1].metadata == {"batch": "1", "path": str(tmp_path / "sub" / "b.png"), "modality": "image"}
    assert sources[2].metadata["modality"] == "audio"
    assert all(s.error is None for s in sources)


def test_id_prefix_and_single_files(tmp_path: Path) -> None:
    _tree(tmp_path)
    reader = SourceReader([str(tmp_path / "sub"), str(tmp_path / "a.txt")], id_prefix="run1/")
    assert [s.id for s in reader] == ["run1/b.png", "run1/deeper/c.MP3", "run1/a.txt"]


def test_an_explicit_file_of_unknown_type_is_a_failure(tmp_path: Path) -> None:
    _tree(tmp_path)
    (source,) = SourceReader([str(tmp_path / "sub" / "notes.pdf")])
    assert source.error is not None and "unsupported file type" in source.error
    with pytest.raises(ValueError, match="unsupported"):
        load(source)


def test_missing_paths_fail_before_anything_is_sent(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        SourceReader([str(tmp_path), str(tmp_path / "nope")]).check()


def test_load_reads_content_lazily(tmp_path: Path) -> None:
    _tree(tmp_path)
    text, image, _ = SourceReader([str(tmp_path)])
    assert load(text).content.text == "alpha"
    loaded = load(image)
    assert loaded.id == "sub/b.png" and loaded.content.image == b"\x89PNGdata"
    assert loaded.metadata["modality"] == "image"
    (tmp_path / "sub" / "b.png").unlink()
    with pytest.raises(FileNotFoundError):
        load(image)


def test_manifest_lines(tmp_path: Path) -> None:
    parsed = parse_manifest_line('{"id": "x", "text": "hi"}', where="m:1", base=tmp_path, extra={"k": "v"})
    assert parsed == Source(id="x", text="hi", metadata={"k": "v"})
    parsed = parse_manifest_line(
        '{"id": "y", "path": "img/a.png", "metadata": {"n": 3, "ok": true, "k": "own", "f": 0.5}}',
        where="m:2",
        base=tmp_path,
        extra={"k": "v"},
    )
    assert parsed.path == tmp_path / "img" / "a.png"
    assert parsed.metadata == {"k": "own", "n": "3", "ok": "true", "f": "0.5"}
    absolute = parse_manifest_line('{"id": "z", "path": "/data/a.wav"}', where="m:3", base=tmp_path)
    assert absolute.path == Path("/data/a.wav")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "x", "text": "hi"', "m.jsonl:7: invalid JSON"),
        ('["x"]', "m.jsonl:7: expected a JSON object, got list"),
        ('{"text": "hi"}', 'm.jsonl:7: "id" must be a non-empty string'),
        ('{"id": 5, "text": "hi"}', '"id" must be a non-empty string'),
        ('{"id": "x"}', 'give exactly one of "text" or "path"'),
        ('{"id": "x", "text": "a", "path": "b.png"}', 'give exactly one of "text" or "path"'),
        ('{"id": "x", "text": 3}', '"text" must be a string'),
        ('{"id": "x", "path": ""}', '"path" must be a non-empty string'),
        ('{"id": "x", "text": "a", "metadata": [1]}', '"metadata" must be an object'),
        ('{"id": "x", "text": "a", "metadata": {"k": {"n": 1}}}', 'metadata "k" must be a string'),
        ('{"id": "x", "txt": "a"}', 'unknown key "txt"'),
    ],
)
def test_bad_manifest_lines_say_where_and_why(line: str, message: str) -> None:
    with pytest.raises(ManifestError, match=r"^m\.jsonl:7: ") as failure:
        parse_manifest_line(line, where="m.jsonl:7", base=Path("."))
    assert message in str(failure.value)


def test_manifest_file_keeps_going_past_bad_lines(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "a.png").write_bytes(b"\x89PNG")
    manifest = tmp_path / "items.jsonl"
    manifest.write_bytes(
        b'{"id": "t1", "text": "first"}\n'
        b"\n"
        b"not json\n"
        b'{"id": "p1", "path": "media/a.png", "metadata": {"src": "m"}}\n'
        b'{"id": "u", "text": "\xff"}\n'
        b'{"id": "gone", "path": "media/missing.png"}\n'
    )
    reader = SourceReader([str(manifest)], metadata={"run": "7"})
    sources = list(reader)
    assert [s.id for s in sources] == ["t1", "items.jsonl:3", "p1", "items.jsonl:5", "gone"]
    assert sources[1].error is not None and sources[1].error.startswith("invalid JSON")
    assert sources[3].error == "not valid UTF-8"
    assert load(sources[2]).content.image == b"\x89PNG"
    assert load(sources[2]).metadata == {"run": "7", "src": "m"}
    with pytest.raises(FileNotFoundError):
        load(sources[4])
    assert reader.count() == 5
