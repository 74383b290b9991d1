"""Content builders, modality detection from extensions, enum names, request builders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onespace_client import build, content, enums, vector
from onespace_client.v1 import collections_pb2, common_pb2


@pytest.mark.parametrize(
    ("name", "modality"),
    [
        ("a.txt", common_pb2.MODALITY_TEXT),
        ("notes.MD", common_pb2.MODALITY_TEXT),
        ("a.png", common_pb2.MODALITY_IMAGE),
        ("a.JPG", common_pb2.MODALITY_IMAGE),
        ("a.jpeg", common_pb2.MODALITY_IMAGE),
        ("a.gif", common_pb2.MODALITY_IMAGE),
        ("a.webp", common_pb2.MODALITY_IMAGE),
        ("a.wav", common_pb2.MODALITY_AUDIO),
        ("a.mp3", common_pb2.MODALITY_AUDIO),
        ("a.ogg", common_pb2.MODALITY_AUDIO),
        *(
            (f"clip.{ext}", common_pb2.MODALITY_VIDEO)
            for ext in ["mp4", "mov", "mkv", "webm", "flv", "mpeg", "mpg", "wmv", "3gp"]
        ),
    ],
)
def test_modality_for_path(name: str, modality: int) -> None:
    assert content.modality_for_path(name) == modality


@pytest.mark.parametrize("name", ["a.pdf", "archive.tar.gz", "Makefile", "a.jsonl"])
def test_unknown_extension_is_a_clear_error(name: str) -> None:
    with pytest.raises(ValueError, match="unsupported file type") as failure:
        content.modality_for_path(name)
    assert name in str(failure.value) and ".png" in str(failure.value)


def test_from_path_reads_text_as_utf8_and_media_as_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("héllo ✓", encoding="utf-8")
    (tmp_path / "b.webm").write_bytes(b"\x1a\x45\xdf\xa3rest")
    (tmp_path / "c.ogg").write_bytes(b"OggS")
    assert content.from_path(tmp_path / "a.md").text == "héllo ✓"
    video = content.from_path(tmp_path / "b.webm")
    assert video.WhichOneof("kind") == "video" and video.video.startswith(b"\x1a\x45")
    assert video.format == ""  # sniffed by the server
    assert content.from_path(str(tmp_path / "c.ogg")).audio == b"OggS"


def test_from_path_rejects_bad_utf8(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UnicodeDecodeError):
        content.from_path(tmp_path / "bad.txt")


def test_builders(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"abc")
    assert content.text("t", truncation="none").truncation_mode == common_pb2.TRUNCATION_MODE_NONE
    image = content.image(tmp_path / "x.bin", "png", detail="document")
    assert image.image == b"abc" and image.format == "png"
    assert image.detail_level == common_pb2.DETAIL_LEVEL_DOCUMENT_IMAGE
    assert content.audio(b"RIFF").audio == b"RIFF"
    assert content.video(b"v", mode="separate").video_embedding_mode == (
        common_pb2.VIDEO_EMBEDDING_MODE_AUDIO_VIDEO_SEPARATE
    )
    s3 = content.s3("s3://bucket/key.mp4", "video", bucket_owner="123")
    assert s3.s3_uri == "s3://bucket/key.mp4" and s3.s3_modality == common_pb2.MODALITY_VIDEO
    assert s3.s3_bucket_owner == "123"
    with pytest.raises(ValueError, match="s3://"):
        content.s3("https://bucket/key")
    with pytest.raises(ValueError, match="unknown truncation"):
        content.text("t", truncation="middle")


def test_to_content() -> None:
    given = content.image(b"x")
    assert content.to_content(given) is given
    assert content.to_content("plain").text == "plain"


def test_enum_names_both_ways() -> None:
    assert enums.modality("IMAGE") == common_pb2.MODALITY_IMAGE
    assert enums.modality(common_pb2.MODALITY_AUDIO) == common_pb2.MODALITY_AUDIO
    assert enums.metric("inner_product") == collections_pb2.METRIC_INNER_PRODUCT
    assert enums.dtype("bf16") == collections_pb2.INDEX_DTYPE_BF16
    assert enums.purpose("Document_Retrieval") == common_pb2.EMBEDDING_PURPOSE_DOCUMENT_RETRIEVAL
    assert enums.metric_name(collections_pb2.METRIC_L2) == "l2"
    assert enums.modality_name(0) == "-"
    assert enums.embedding_type_name(common_pb2.EMBEDDING_TYPE_AUDIO_VIDEO_COMBINED) == "audio_video_combined"
    with pytest.raises(ValueError, match="unknown metric 'hamming'"):
        enums.metric("hamming")


def test_item_vector_or_content() -> None:
    vector_item = build.item("v", [1, 2.5])
    assert vector_item.WhichOneof("source") == "vector" and list(vector(vector_item.vector)) == [1.0, 2.5]
    assert vector_item.vector.f32 == np.array([1, 2.5], dtype="<f4").tobytes()  # packed on the wire
    packed_item = build.item("n", np.array([0.5, -1.0], dtype=np.float64))  # numpy arrays too
    assert list(vector(packed_item.vector)) == [0.5, -1.0]
    text_item = build.item("t", "hello", {"k": "v"})
    assert text_item.content.text == "hello" and text_item.metadata["k"] == "v"
    assert build.item("w", common_pb2.Vector(values=[3])).vector.values[0] == 3


def test_search_request_fields() -> None:
    request = build.search_request(
        "c", vector=[0.5, 0.5], k=3, dimension=2, modalities=["text", "video"], metadata={"a": "b"}
    )
    assert request.WhichOneof("query") == "vector" and request.dimension == 2
    assert list(request.filter.modalities) == [common_pb2.MODALITY_TEXT, common_pb2.MODALITY_VIDEO]
    assert not build.search_request("c", id="x").HasField("dimension")
    with pytest.raises(ValueError, match="got none"):
        build.search_request("c")
