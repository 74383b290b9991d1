from __future__ import annotations

import base64
import uuid
from typing import Any

import numpy as np
import pytest

from onespace.content import Content, TruncationMode, VideoMode
from onespace.models import NOVA_MODEL, Modality
from onespace.providers.local import embed_content
from tests import media
from tests.unit.emulator.conftest import Bedrock

NOVA = NOVA_MODEL.id


def body(params: dict[str, Any], **top: Any) -> dict[str, Any]:
    base = {"embeddingPurpose": "GENERIC_INDEX", "embeddingDimension": 256}
    return {
        "schemaVersion": "nova-multimodal-embed-v1",
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {**base, **params},
        **top,
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def text(value: str, mode: str = "END") -> dict[str, Any]:
    return {"text": {"truncationMode": mode, "value": value}}


def expected(content: Content, dimension: int) -> list[np.ndarray]:
    return [e.vector for e in embed_content(content, dimension, NOVA_MODEL).embeddings]


async def test_text_response_shape_headers_and_vector(bedrock: Bedrock) -> None:
    answer = await bedrock.invoke(NOVA, body(text("Hello, World!")))
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert int(answer.headers["Content-Length"]) == len(answer.raw)
    uuid.UUID(answer.headers["x-amzn-RequestId"])
    assert int(answer.headers["x-amzn-bedrock-invocation-latency"]) >= 0
    payload = answer.json
    assert list(payload) == ["embeddings"]
    (item,) = payload["embeddings"]
    assert set(item) == {"embeddingType", "embedding"}
    assert item["embeddingType"] == "TEXT"
    vector = np.asarray(item["embedding"], dtype=np.float32)
    (want,) = expected(Content(Modality.TEXT, text="Hello, World!"), 256)
    assert np.array_equal(vector, want)


@pytest.mark.parametrize("dimension", [256, 384, 1024, 3072])
async def test_dimensions(bedrock: Bedrock, dimension: int) -> None:
    answer = await bedrock.invoke(NOVA, body({**text("dims"), "embeddingDimension": dimension}))
    assert len(answer.json["embeddings"][0]["embedding"]) == dimension


async def test_default_dimension_is_3072(bedrock: Bedrock) -> None:
    payload = body(text("default"))
    del payload["singleEmbeddingParams"]["embeddingDimension"]
    answer = await bedrock.invoke(NOVA, payload)
    assert len(answer.json["embeddings"][0]["embedding"]) == 3072


@pytest.mark.parametrize(("mode", "cut"), [("END", 8192), ("START", 9000 - 8192)])
async def test_truncation_reports_truncated_char_length(bedrock: Bedrock, mode: str, cut: int) -> None:
    long_text = "word " * 1800
    answer = await bedrock.invoke(NOVA, body(text(long_text, mode)))
    item = answer.json["embeddings"][0]
    assert item["truncatedCharLength"] == cut
    want = expected(Content(Modality.TEXT, text=long_text, truncation=TruncationMode(mode)), 256)
    assert np.array_equal(np.asarray(item["embedding"], dtype=np.float32), want[0])


async def test_truncation_none_fails_when_too_long(bedrock: Bedrock) -> None:
    answer = await bedrock.invoke(NOVA, body(text("word " * 1800, "NONE")))
    assert (answer.status, answer.error_type) == (400, "ValidationException")
    assert "truncationMode is NONE" in answer.message


@pytest.mark.parametrize(
    ("modality", "fmt", "data"),
    [
        ("image", "png", media.png(1)),
        ("image", "jpeg", media.jpeg(2)),
        ("audio", "wav", media.wav(440.0)),
    ],
)
async def test_media(bedrock: Bedrock, modality: str, fmt: str, data: bytes) -> None:
    answer = await bedrock.invoke(NOVA, body({modality: {"format": fmt, "source": {"bytes": b64(data)}}}))
    assert answer.status == 200, answer.raw
    (item,) = answer.json["embeddings"]
    assert item["embeddingType"] == modality.upper()
    (want,) = expected(Content(Modality(modality), data=data, format=fmt), 256)
    assert np.array_equal(np.asarray(item["embedding"], dtype=np.float32), want)


async def test_video_separate_returns_video_and_audio(bedrock: Bedrock) -> None:
    clip = media.mp4(3)
    video = {"format": "mp4", "embeddingMode": "AUDIO_VIDEO_SEPARATE", "source": {"bytes": b64(clip)}}
    answer = await bedrock.invoke(NOVA, body({"video": video}))
    assert answer.status == 200, answer.raw
    items = answer.json["embeddings"]
    assert [i["embeddingType"] for i in items] == ["VIDEO", "AUDIO"]
    content = Content(Modality.VIDEO, data=clip, format="mp4", video_mode=VideoMode.AUDIO_VIDEO_SEPARATE)
    for item, want in zip(items, expected(content, 256), strict=True):
        assert np.array_equal(np.asarray(item["embedding"], dtype=np.float32), want)


async def test_video_combined_returns_one(bedrock: Bedrock) -> None:
    video = {"format": "mp4", "embeddingMode": "AUDIO_VIDEO_COMBINED", "source": {"bytes": b64(media.mp4(4))}}
    answer = await bedrock.invoke(NOVA, body({"video": video}))
    assert len(answer.json["embeddings"]) == 1


async def test_s3_sources(bedrock: Bedrock) -> None:
    picture = media.png(5)
    assert (await bedrock.admin("PUT", "s3/bucket/docs/note.txt", data=b"from s3")).status == 200
    assert (await bedrock.admin("PUT", "s3/bucket/pics/a.png", data=picture)).status == 200
    location = {"s3Location": {"uri": "s3://bucket/docs/note.txt", "bucketOwner": "123456789012"}}
    answer = await bedrock.invoke(NOVA, body({"text": {"truncationMode": "END", "source": location}}))
    assert answer.status == 200, answer.raw
    (want,) = expected(Content(Modality.TEXT, text="from s3"), 256)
    assert np.array_equal(np.asarray(answer.json["embeddings"][0]["embedding"], dtype=np.float32), want)
    image = {"format": "png", "source": {"s3Location": {"uri": "s3://bucket/pics/a.png"}}}
    answer = await bedrock.invoke(NOVA, body({"image": image}))
    (want,) = expected(Content(Modality.IMAGE, data=picture, format="png"), 256)
    assert np.array_equal(np.asarray(answer.json["embeddings"][0]["embedding"], dtype=np.float32), want)
    missing = {"format": "png", "source": {"s3Location": {"uri": "s3://bucket/nope.png"}}}
    answer = await bedrock.invoke(NOVA, body({"image": missing}))
    assert answer.error_type == "ValidationException" and "s3://bucket/nope.png" in answer.message


def _without(params: dict[str, Any], key: str) -> dict[str, Any]:
    out = body(params)
    del out["singleEmbeddingParams"][key]
    return out


PNG = b64(media.png(9))
INVALID: list[tuple[str, Any, str]] = [
    ("not json", b"{nope", "not valid JSON"),
    ("array body", [1], "expected type: JSONObject, found: JSONArray"),
    ("no taskType", {"singleEmbeddingParams": {}}, "required key [taskType] not found"),
    ("bad taskType", {**body(text("x")), "taskType": "EMBED"}, "#/taskType: EMBED is not a valid enum value"),
    ("segmented", {**body(text("x")), "taskType": "SEGMENTED_EMBEDDING"}, "StartAsyncInvoke"),
    ("bad schemaVersion", body(text("x"), schemaVersion="v2"), "#/schemaVersion: v2"),
    ("no params", {"taskType": "SINGLE_EMBEDDING"}, "required key [singleEmbeddingParams] not found"),
    ("no purpose", _without(text("x"), "embeddingPurpose"), "required key [embeddingPurpose] not found"),
    (
        "bad purpose",
        body({**text("x"), "embeddingPurpose": "SEARCH"}),
        "embeddingPurpose: SEARCH is not a valid",
    ),
    (
        "bad dimension",
        body({**text("x"), "embeddingDimension": 512}),
        "embeddingDimension: 512 is not a valid",
    ),
    ("string dimension", body({**text("x"), "embeddingDimension": "256"}), "expected type: Integer"),
    (
        "two modalities",
        body({**text("x"), "image": {"format": "png", "source": {"bytes": PNG}}}),
        "exactly one of [text, image, audio, video] must be present (found: text, image)",
    ),
    ("no modality", body({}), "exactly one of [text, image, audio, video] must be present (found: none)"),
    ("extra key", body({**text("x"), "colour": "blue"}), "extraneous key [colour] is not permitted"),
    ("no truncationMode", body({"text": {"value": "x"}}), "required key [truncationMode] not found"),
    ("bad truncationMode", body(text("x", "MIDDLE")), "truncationMode: MIDDLE is not a valid enum value"),
    ("empty text", body(text("   ")), "#/singleEmbeddingParams/text/value: expected minLength: 1"),
    ("text too long", body(text("a" * 50_001)), "expected maxLength: 50000, actual: 50001"),
    (
        "text bytes",
        body({"text": {"truncationMode": "END", "source": {"bytes": "eA=="}}}),
        "text sources must be s3Location",
    ),
    (
        "text value and source",
        body(
            {"text": {"truncationMode": "END", "value": "x", "source": {"s3Location": {"uri": "s3://b/k"}}}}
        ),
        "exactly one of [value, source]",
    ),
    ("no image format", body({"image": {"source": {"bytes": PNG}}}), "required key [format] not found"),
    (
        "bad image format",
        body({"image": {"format": "bmp", "source": {"bytes": PNG}}}),
        "format: bmp is not a valid",
    ),
    (
        "bad detailLevel",
        body({"image": {"format": "png", "detailLevel": "HIGH", "source": {"bytes": PNG}}}),
        "detailLevel: HIGH is not a valid",
    ),
    ("no source", body({"image": {"format": "png"}}), "required key [source] not found"),
    ("bad base64", body({"image": {"format": "png", "source": {"bytes": "###"}}}), "invalid base64"),
    (
        "two sources",
        body({"image": {"format": "png", "source": {"bytes": PNG, "s3Location": {"uri": "s3://b/k"}}}}),
        "exactly one of [bytes, s3Location]",
    ),
    (
        "bad s3 uri",
        body({"image": {"format": "png", "source": {"s3Location": {"uri": "http://x"}}}}),
        "does not match the pattern s3://bucket/key",
    ),
    (
        "bad bucketOwner",
        body(
            {"image": {"format": "png", "source": {"s3Location": {"uri": "s3://b/k", "bucketOwner": "me"}}}}
        ),
        "is not a 12-digit AWS account id",
    ),
    (
        "no embeddingMode",
        body({"video": {"format": "mp4", "source": {"bytes": PNG}}}),
        "required key [embeddingMode] not found",
    ),
    ("png as jpeg", body({"image": {"format": "jpeg", "source": {"bytes": PNG}}}), "Invalid input"),
]


@pytest.mark.parametrize(("case", "payload", "needle"), INVALID, ids=[c[0] for c in INVALID])
async def test_invalid_requests(bedrock: Bedrock, case: str, payload: Any, needle: str) -> None:
    answer = await bedrock.invoke(NOVA, payload)
    assert answer.status == 400, case
    assert answer.error_type == "ValidationException"
    assert needle in answer.message
    assert bedrock.stats.calls[NOVA]["ValidationException"] == 1
