"""The request bodies each family sends and how it reads responses (pure: no I/O)."""

from __future__ import annotations

import base64
import random
from typing import Any

import pytest

from onespace.config import Settings
from onespace.content import Content, DetailLevel, EmbeddingType, Purpose, TruncationMode, VideoMode
from onespace.models import (
    COHERE_EMBED_ENGLISH_V3,
    COHERE_EMBED_V4,
    NOVA_MODEL,
    TITAN_MULTIMODAL_G1,
    TITAN_TEXT_V2,
    Modality,
)
from onespace.providers.bedrock.client import client_config
from onespace.providers.bedrock.cohere import CohereFamily, input_type
from onespace.providers.bedrock.family import BadResponse
from onespace.providers.bedrock.nova import NovaFamily
from onespace.providers.bedrock.retry import RetryPolicy
from onespace.providers.bedrock.titan import TitanMultimodalFamily, TitanTextFamily
from tests.unit.bedrock.conftest import item


def test_nova_text_request() -> None:
    content = Content(Modality.TEXT, text="hi", truncation=TruncationMode.START)
    body = NovaFamily().request([item(content, NOVA_MODEL.id, 384, Purpose.TEXT_RETRIEVAL)], NOVA_MODEL)
    assert body == {
        "schemaVersion": "nova-multimodal-embed-v1",
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": "TEXT_RETRIEVAL",
            "embeddingDimension": 384,
            "text": {"truncationMode": "START", "value": "hi"},
        },
    }


def test_nova_media_requests() -> None:
    nova = NovaFamily()
    image = Content(Modality.IMAGE, data=b"\x89PNG", format="png", detail_level=DetailLevel.DOCUMENT_IMAGE)
    params = nova.request([item(image, NOVA_MODEL.id, 256)], NOVA_MODEL)["singleEmbeddingParams"]
    assert params["image"] == {
        "format": "png",
        "detailLevel": "DOCUMENT_IMAGE",
        "source": {"bytes": base64.b64encode(b"\x89PNG").decode()},
    }
    video = Content(
        Modality.VIDEO,
        s3_uri="s3://b/v.mp4",
        format="mp4",
        s3_bucket_owner="123456789012",
        video_mode=VideoMode.AUDIO_VIDEO_SEPARATE,
    )
    params = nova.request([item(video, NOVA_MODEL.id, 256, Purpose.VIDEO_RETRIEVAL)], NOVA_MODEL)[
        "singleEmbeddingParams"
    ]
    assert params["embeddingPurpose"] == "VIDEO_RETRIEVAL"
    assert params["video"] == {
        "format": "mp4",
        "embeddingMode": "AUDIO_VIDEO_SEPARATE",
        "source": {"s3Location": {"uri": "s3://b/v.mp4", "bucketOwner": "123456789012"}},
    }
    text = Content(Modality.TEXT, s3_uri="s3://b/t.txt", format="txt")
    params = nova.request([item(text, NOVA_MODEL.id, 256)], NOVA_MODEL)["singleEmbeddingParams"]
    assert params["text"] == {"truncationMode": "END", "source": {"s3Location": {"uri": "s3://b/t.txt"}}}


def test_nova_parse_checks_count_and_falls_back_on_unknown_types() -> None:
    video = Content(Modality.VIDEO, data=b"x", format="mp4", video_mode=VideoMode.AUDIO_VIDEO_SEPARATE)
    inputs = [item(video, NOVA_MODEL.id, 2)]
    with pytest.raises(BadResponse, match="should hold 2 entries"):
        NovaFamily().parse(
            {"embeddings": [{"embeddingType": "VIDEO", "embedding": [1, 0]}]}, inputs, NOVA_MODEL
        )
    text_inputs = [item("x", NOVA_MODEL.id, 2)]
    (parsed,) = NovaFamily().parse(
        {"embeddings": [{"embeddingType": "NEW", "embedding": [0, 1]}]}, text_inputs, NOVA_MODEL
    )
    assert parsed[0].type is EmbeddingType.TEXT
    with pytest.raises(BadResponse, match="truncatedCharLength is not an integer"):
        NovaFamily().parse(
            {"embeddings": [{"embedding": [0, 1], "truncatedCharLength": "3"}]}, text_inputs, NOVA_MODEL
        )


def test_titan_requests() -> None:
    body = TitanTextFamily().request([item("x", TITAN_TEXT_V2.id, 512)], TITAN_TEXT_V2)
    assert body == {"inputText": "x", "dimensions": 512, "normalize": True, "embeddingTypes": ["float"]}
    image = Content(Modality.IMAGE, data=b"img", format="png")
    body = TitanMultimodalFamily().request([item(image, TITAN_MULTIMODAL_G1.id, 256)], TITAN_MULTIMODAL_G1)
    assert body == {
        "inputImage": base64.b64encode(b"img").decode(),
        "embeddingConfig": {"outputEmbeddingLength": 256},
    }


def test_titan_v2_reads_either_field() -> None:
    inputs = [item("x", TITAN_TEXT_V2.id, 2)]
    by_type = TitanTextFamily().parse(
        {"embedding": [9, 9], "embeddingsByType": {"float": [1, 2]}}, inputs, TITAN_TEXT_V2
    )
    plain = TitanTextFamily().parse({"embedding": [3, 4]}, inputs, TITAN_TEXT_V2)
    assert by_type[0][0].vector.tolist() == [1, 2] and plain[0][0].vector.tolist() == [3, 4]


@pytest.mark.parametrize(
    ("purpose", "expected"),
    [
        (Purpose.GENERIC_INDEX, "search_document"),
        (Purpose.GENERIC_RETRIEVAL, "search_query"),
        (Purpose.TEXT_RETRIEVAL, "search_query"),
        (Purpose.IMAGE_RETRIEVAL, "search_query"),
        (Purpose.DOCUMENT_RETRIEVAL, "search_query"),
        (Purpose.CLASSIFICATION, "classification"),
        (Purpose.CLUSTERING, "clustering"),
    ],
)
def test_cohere_input_type(purpose: Purpose, expected: str) -> None:
    assert input_type(purpose) == expected


def test_cohere_requests() -> None:
    cohere = CohereFamily()
    texts = [
        item(
            Content(Modality.TEXT, text=t, truncation=TruncationMode.START),
            COHERE_EMBED_V4.id,
            512,
            Purpose.CLUSTERING,
        )
        for t in ("a", "b")
    ]
    assert cohere.request(texts, COHERE_EMBED_V4) == {
        "input_type": "clustering",
        "embedding_types": ["float"],
        "texts": ["a", "b"],
        "truncate": "LEFT",
        "output_dimension": 512,
    }
    v3 = [
        item(
            Content(Modality.TEXT, text="a", truncation=TruncationMode.END), COHERE_EMBED_ENGLISH_V3.id, 1024
        )
    ]
    assert cohere.request(v3, COHERE_EMBED_ENGLISH_V3) == {
        "input_type": "search_document",
        "embedding_types": ["float"],
        "texts": ["a"],
        "truncate": "END",
    }
    image = [
        item(Content(Modality.IMAGE, data=b"\xff\xd8\xff", format="jpeg"), COHERE_EMBED_ENGLISH_V3.id, 1024)
    ]
    body = cohere.request(image, COHERE_EMBED_ENGLISH_V3)
    assert body["input_type"] == "image"
    assert body["images"] == ["data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff").decode()]


@pytest.mark.parametrize(
    "payload",
    [
        {"response_type": "embeddings_floats", "embeddings": [[1, 0], [0, 1]], "texts": ["a", "b"]},
        {
            "response_type": "embeddings_by_type",
            "embeddings": {"float": [[1, 0], [0, 1]], "int8": [[1], [2]]},
        },
        {"embeddings": {"float": [[1, 0], [0, 1]]}},  # the shape decides, whatever response_type says
    ],
)
def test_cohere_reads_both_response_shapes(payload: dict[str, Any]) -> None:
    inputs = [item("a", COHERE_EMBED_V4.id, 2), item("b", COHERE_EMBED_V4.id, 2)]
    parsed = CohereFamily().parse(payload, inputs, COHERE_EMBED_V4)
    assert [p[0].vector.tolist() for p in parsed] == [[1, 0], [0, 1]]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"embeddings": [[1, 0]]}, "should hold 2 vectors"),
        ({"embeddings": [[1, 0], [0, "x"]]}, "embeddings[1] is not a list of numbers"),
        ({"embeddings": [[1, 0], [0, 1, 2]]}, "has 3 dimensions, expected 2"),
        ({"embeddings": {"int8": [[1, 0]]}}, "missing 'float'"),
        ({"embeddings": [[1, 0], [0, float("nan")]]}, "non-finite"),
        ({"texts": []}, "missing 'embeddings'"),
    ],
)
def test_cohere_rejects_malformed_responses(payload: dict[str, Any], needle: str) -> None:
    inputs = [item("a", COHERE_EMBED_V4.id, 2), item("b", COHERE_EMBED_V4.id, 2)]
    with pytest.raises(BadResponse) as info:
        CohereFamily().parse(payload, inputs, COHERE_EMBED_V4)
    assert needle in str(info.value)


def test_client_config_disables_botocore_retries_and_sizes_the_pool() -> None:
    config = client_config(
        Settings(
            concurrency_max=48,
            bedrock_connect_timeout=2.0,
            bedrock_read_timeout=30.0,
            bedrock_region="eu-west-1",
        )
    )
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert config.max_pool_connections == 48
    assert (config.connect_timeout, config.read_timeout, config.region_name) == (2.0, 30.0, "eu-west-1")


def test_backoff_is_jittered_exponential_and_capped() -> None:
    policy = RetryPolicy(max_attempts=8, base_delay=0.1, max_delay=1.0)
    rng = random.Random(0)
    for retry, cap in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        draws = [policy.backoff(retry, rng) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in draws)
        assert max(draws) - min(draws) > cap / 4  # jittered, not fixed
