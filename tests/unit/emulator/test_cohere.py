from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from onespace.content import Content
from onespace.models import COHERE_EMBED_ENGLISH_V3, COHERE_EMBED_MULTILINGUAL_V3, COHERE_EMBED_V4, Modality
from onespace.providers.local import embed_content
from tests import media
from tests.unit.emulator.conftest import Bedrock

V3, V3M, V4 = COHERE_EMBED_ENGLISH_V3.id, COHERE_EMBED_MULTILINGUAL_V3.id, COHERE_EMBED_V4.id
PNG = media.png(21)
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


def local_text(text: str, dimension: int, spec: Any) -> np.ndarray:
    return embed_content(Content(Modality.TEXT, text=text), dimension, spec).embeddings[0].vector


@pytest.mark.parametrize("model", [V3, V3M])
async def test_v3_texts_floats(bedrock: Bedrock, model: str) -> None:
    texts = [f"document number {i}" for i in range(5)]
    answer = await bedrock.invoke(model, {"input_type": "search_document", "texts": texts})
    assert answer.status == 200
    payload = answer.json
    assert set(payload) == {"id", "response_type", "embeddings", "texts"}
    assert payload["response_type"] == "embeddings_floats"
    assert payload["texts"] == texts
    assert len(payload["embeddings"]) == 5
    spec = COHERE_EMBED_ENGLISH_V3 if model == V3 else COHERE_EMBED_MULTILINGUAL_V3
    for text, vector in zip(texts, payload["embeddings"], strict=True):
        assert np.array_equal(np.asarray(vector, dtype=np.float32), local_text(text, 1024, spec))
    assert "x-amzn-bedrock-input-token-count" not in answer.headers


async def test_v3_embedding_types_by_type(bedrock: Bedrock) -> None:
    kinds = ["float", "int8", "uint8", "binary", "ubinary"]
    answer = await bedrock.invoke(
        V3, {"input_type": "search_query", "texts": ["a", "b"], "embedding_types": kinds}
    )
    payload = answer.json
    assert payload["response_type"] == "embeddings_by_type"
    by_type = payload["embeddings"]
    assert list(by_type) == kinds
    assert [len(by_type[k][0]) for k in kinds] == [1024, 1024, 1024, 128, 128]
    assert all(-128 <= x <= 127 for x in by_type["int8"][0] + by_type["binary"][0])
    assert all(0 <= x <= 255 for x in by_type["uint8"][0] + by_type["ubinary"][0])
    assert [x + 128 for x in by_type["int8"][0]] == by_type["uint8"][0]


async def test_v3_image(bedrock: Bedrock) -> None:
    answer = await bedrock.invoke(V3, {"input_type": "image", "images": [PNG_URI]})
    assert answer.status == 200, answer.raw
    want = embed_content(Content(Modality.IMAGE, data=PNG, format="png"), 1024, COHERE_EMBED_ENGLISH_V3)
    assert np.array_equal(
        np.asarray(answer.json["embeddings"][0], dtype=np.float32), want.embeddings[0].vector
    )


async def test_v4_output_dimension_truncate_and_counters(bedrock: Bedrock) -> None:
    texts = ["x" * 10] * 96
    answer = await bedrock.invoke(
        V4, {"input_type": "clustering", "texts": texts, "output_dimension": 256, "truncate": "RIGHT"}
    )
    assert answer.status == 200
    assert len(answer.json["embeddings"]) == 96 and len(answer.json["embeddings"][0]) == 256
    assert bedrock.stats.batch_sizes[V4][96] == 1
    stats = (await bedrock.admin("GET", "stats")).json
    assert stats["batch_sizes"][V4] == {"96": 1}
    assert stats["calls"][V4] == {"ok": 1}


async def test_v4_default_dimension_and_images(bedrock: Bedrock) -> None:
    answer = await bedrock.invoke(V4, {"input_type": "search_document", "images": [PNG_URI, PNG_URI]})
    assert answer.status == 200, answer.raw
    assert [len(v) for v in answer.json["embeddings"]] == [1536, 1536]


async def test_v4_inputs_mix_text_and_image(bedrock: Bedrock) -> None:
    inputs = [
        {"content": [{"type": "text", "text": "a caption"}, {"type": "image_url", "image_url": PNG_URI}]},
        {"content": [{"type": "image_url", "image_url": {"url": PNG_URI}}]},
        {"content": [{"type": "text", "text": "just text"}]},
    ]
    answer = await bedrock.invoke(
        V4, {"input_type": "search_document", "inputs": inputs, "embedding_types": ["float"]}
    )
    assert answer.status == 200, answer.raw
    payload = answer.json
    assert payload["response_type"] == "embeddings_by_type"
    floats = payload["embeddings"]["float"]
    assert len(floats) == 3 and len(payload["inputs"]) == 3
    assert np.array_equal(
        np.asarray(floats[2], dtype=np.float32), local_text("just text", 1536, COHERE_EMBED_V4)
    )
    assert bedrock.stats.batch_sizes[V4][3] == 1


INVALID: list[tuple[str, str, Any, str]] = [
    ("no input_type", V3, {"texts": ["x"]}, "required key [input_type] not found"),
    ("bad input_type", V3, {"input_type": "search", "texts": ["x"]}, "#/input_type: search is not a valid"),
    (
        "v4 image input_type",
        V4,
        {"input_type": "image", "images": [PNG_URI]},
        "#/input_type: image is not a valid",
    ),
    (
        "nothing",
        V3,
        {"input_type": "search_query"},
        "Exactly one of [texts, images] must be provided (found: none)",
    ),
    (
        "texts and images",
        V3,
        {"input_type": "image", "texts": ["x"], "images": [PNG_URI]},
        "(found: texts, images)",
    ),
    (
        "97 texts",
        V3,
        {"input_type": "search_query", "texts": ["x"] * 97},
        "expected maximum item count: 96, found: 97",
    ),
    ("empty texts", V3, {"input_type": "search_query", "texts": []}, "expected minimum item count: 1"),
    (
        "text too long",
        V3,
        {"input_type": "search_query", "texts": ["a" * 2049]},
        "#/texts/0: expected maxLength: 2048",
    ),
    (
        "blank text",
        V3,
        {"input_type": "search_query", "texts": ["ok", " "]},
        "#/texts/1: expected minLength: 1",
    ),
    ("not a string", V3, {"input_type": "search_query", "texts": [3]}, "#/texts/0: expected type: String"),
    (
        "v3 two images",
        V3,
        {"input_type": "image", "images": [PNG_URI, PNG_URI]},
        "expected maximum item count: 1",
    ),
    (
        "v3 image wrong type",
        V3,
        {"input_type": "search_document", "images": [PNG_URI]},
        "input_type 'image' must be used with images",
    ),
    (
        "v3 text with image type",
        V3,
        {"input_type": "image", "texts": ["x"]},
        "input_type 'image' must be used",
    ),
    ("not a data uri", V3, {"input_type": "image", "images": ["http://x/y.png"]}, "expected a data URI"),
    (
        "v3 webp",
        V3,
        {"input_type": "image", "images": ["data:image/webp;base64,AAAA"]},
        "image/webp is not supported",
    ),
    (
        "mime lies",
        V3,
        {"input_type": "image", "images": ["data:image/jpeg;base64," + PNG_URI.split(",")[1]]},
        "the data is png, not image/jpeg",
    ),
    (
        "v3 bad truncate",
        V3,
        {"input_type": "search_query", "texts": ["x"], "truncate": "LEFT"},
        "#/truncate: LEFT",
    ),
    (
        "v4 bad truncate",
        V4,
        {"input_type": "search_query", "texts": ["x"], "truncate": "END"},
        "#/truncate: END",
    ),
    (
        "bad embedding type",
        V3,
        {"input_type": "search_query", "texts": ["x"], "embedding_types": ["bits"]},
        "#/embedding_types/0: bits is not a valid enum value",
    ),
    (
        "v3 output_dimension",
        V3,
        {"input_type": "search_query", "texts": ["x"], "output_dimension": 1024},
        "extraneous key [output_dimension]",
    ),
    (
        "v4 bad dimension",
        V4,
        {"input_type": "search_query", "texts": ["x"], "output_dimension": 384},
        "#/output_dimension: 384 is not a valid enum value",
    ),
    (
        "v4 bad max_tokens",
        V4,
        {"input_type": "search_query", "texts": ["x"], "max_tokens": 0},
        "#/max_tokens",
    ),
    (
        "v4 bad inputs part",
        V4,
        {"input_type": "search_query", "inputs": [{"content": [{"type": "audio"}]}]},
        "#/inputs/0/content/0/type: audio is not a valid enum value",
    ),
]


@pytest.mark.parametrize(("case", "model", "payload", "needle"), INVALID, ids=[c[0] for c in INVALID])
async def test_invalid_requests(bedrock: Bedrock, case: str, model: str, payload: Any, needle: str) -> None:
    answer = await bedrock.invoke(model, payload)
    assert (answer.status, answer.error_type) == (400, "ValidationException"), case
    assert needle in answer.message
