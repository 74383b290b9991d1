from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from onespace.content import Content
from onespace.emulator.catalog import TITAN_TEXT_G1
from onespace.models import TITAN_MULTIMODAL_G1, TITAN_TEXT_V2, Modality
from onespace.providers.local import embed_content
from tests import media
from tests.unit.emulator.conftest import Bedrock

V2, MM, G1 = TITAN_TEXT_V2.id, TITAN_MULTIMODAL_G1.id, TITAN_TEXT_G1.id


def local(content: Content, dimension: int, spec: Any) -> np.ndarray:
    return embed_content(content, dimension, spec).embeddings[0].vector


async def test_text_v2_shape_and_vector(bedrock: Bedrock) -> None:
    answer = await bedrock.invoke(V2, {"inputText": "Hello, Titan!", "dimensions": 512})
    assert answer.status == 200
    payload = answer.json
    assert set(payload) == {"embedding", "inputTextTokenCount", "embeddingsByType"}
    assert payload["inputTextTokenCount"] == 4  # Hello , Titan !
    assert answer.headers["x-amzn-bedrock-input-token-count"] == "4"
    assert list(payload["embeddingsByType"]) == ["float"]
    want = local(Content(Modality.TEXT, text="Hello, Titan!"), 512, TITAN_TEXT_V2)
    assert np.array_equal(np.asarray(payload["embedding"], dtype=np.float32), want)
    assert payload["embeddingsByType"]["float"] == payload["embedding"]


async def test_text_v2_defaults_and_binary(bedrock: Bedrock) -> None:
    answer = await bedrock.invoke(
        V2, {"inputText": "bits", "normalize": False, "embeddingTypes": ["float", "binary"]}
    )
    payload = answer.json
    assert len(payload["embedding"]) == 1024
    binary = payload["embeddingsByType"]["binary"]
    assert len(binary) == 1024 and set(binary) <= {0, 1}
    assert binary == [int(x >= 0) for x in payload["embedding"]]


async def test_multimodal_text_image_and_both(bedrock: Bedrock) -> None:
    picture = media.png(11)
    image = base64.b64encode(picture).decode()
    config = {"embeddingConfig": {"outputEmbeddingLength": 384}}
    text_answer = await bedrock.invoke(MM, {"inputText": "a red square", **config})
    image_answer = await bedrock.invoke(MM, {"inputImage": image, **config})
    both = await bedrock.invoke(MM, {"inputText": "a red square", "inputImage": image, **config})
    t = np.asarray(text_answer.json["embedding"], dtype=np.float32)
    i = np.asarray(image_answer.json["embedding"], dtype=np.float32)
    b = np.asarray(both.json["embedding"], dtype=np.float32)
    assert np.array_equal(t, local(Content(Modality.TEXT, text="a red square"), 384, TITAN_MULTIMODAL_G1))
    assert np.array_equal(
        i, local(Content(Modality.IMAGE, data=picture, format="png"), 384, TITAN_MULTIMODAL_G1)
    )
    mean = (t.astype(np.float64) + i) / np.linalg.norm(t.astype(np.float64) + i)
    assert np.allclose(b, mean, atol=1e-6)
    assert set(image_answer.json) == {"embedding", "inputTextTokenCount"}
    assert image_answer.json["inputTextTokenCount"] == 0


async def test_multimodal_default_dimension(bedrock: Bedrock) -> None:
    answer = await bedrock.invoke(MM, {"inputText": "default"})
    assert len(answer.json["embedding"]) == 1024


async def test_text_g1(bedrock: Bedrock) -> None:
    answer = await bedrock.invoke(G1, {"inputText": "old but gold"})
    assert set(answer.json) == {"embedding", "inputTextTokenCount"}
    assert len(answer.json["embedding"]) == 1536


INVALID: list[tuple[str, str, Any, str]] = [
    ("v2 no text", V2, {"dimensions": 256}, "required key [inputText] not found"),
    ("v2 empty text", V2, {"inputText": " "}, "#/inputText: expected minLength: 1"),
    (
        "v2 bad dimension",
        V2,
        {"inputText": "x", "dimensions": 384},
        "#/dimensions: 384 is not a valid enum value",
    ),
    ("v2 bad normalize", V2, {"inputText": "x", "normalize": "yes"}, "#/normalize: expected type: Boolean"),
    (
        "v2 bad type",
        V2,
        {"inputText": "x", "embeddingTypes": ["int8"]},
        "#/embeddingTypes/0: int8 is not a valid",
    ),
    ("v2 no types", V2, {"inputText": "x", "embeddingTypes": []}, "expected minimum item count: 1"),
    (
        "v2 image",
        V2,
        {"inputText": "x", "inputImage": "AAAA"},
        "extraneous key [inputImage] is not permitted",
    ),
    ("v2 too long", V2, {"inputText": "a" * 50_001}, "50001 characters; the maximum for"),
    (
        "mm neither",
        MM,
        {"embeddingConfig": {"outputEmbeddingLength": 256}},
        "at least one of [inputText, inputImage]",
    ),
    (
        "mm bad dimension",
        MM,
        {"inputText": "x", "embeddingConfig": {"outputEmbeddingLength": 512}},
        "outputEmbeddingLength: 512 is not a valid enum value",
    ),
    ("mm gif", MM, {"inputImage": base64.b64encode(media.gif(1)).decode()}, "must be a PNG or JPEG image"),
    (
        "mm text too long",
        MM,
        {"inputText": "a" * 1201},
        "1201 characters; the maximum for amazon.titan-embed-image-v1",
    ),
    ("g1 dimensions", G1, {"inputText": "x", "dimensions": 256}, "extraneous key [dimensions]"),
]


@pytest.mark.parametrize(("case", "model", "payload", "needle"), INVALID, ids=[c[0] for c in INVALID])
async def test_invalid_requests(bedrock: Bedrock, case: str, model: str, payload: Any, needle: str) -> None:
    answer = await bedrock.invoke(model, payload)
    assert (answer.status, answer.error_type) == (400, "ValidationException"), case
    assert needle in answer.message
