"""Cohere Embed v3 (english, multilingual) and v4 on Bedrock.

Texts travel up to 96 per call (inputs with different truncation modes go in separate calls,
since `truncate` is per call); images one per call as data URIs, never mixed with texts.
`input_type` comes from the purpose: GENERIC_INDEX → search_document, *_RETRIEVAL →
search_query, CLASSIFICATION → classification, CLUSTERING → clustering; v3 images must use
`image`. Float vectors are asked for explicitly, and both response shapes are read
(`embeddings_floats`: a list; `embeddings_by_type`: a dict keyed by type).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from onespace.content import Purpose, TruncationMode
from onespace.errors import InvalidArgument
from onespace.models import (
    COHERE_EMBED_ENGLISH_V3,
    COHERE_EMBED_MULTILINGUAL_V3,
    COHERE_EMBED_V4,
    Modality,
    ModelSpec,
)
from onespace.providers.base import EmbedInput, ProviderEmbedding
from onespace.providers.bedrock.family import BadResponse, Family, field, modality_type, vector

__all__ = ["CohereFamily", "input_type"]

_V3_TRUNCATE = {TruncationMode.NONE: "NONE", TruncationMode.START: "START", TruncationMode.END: "END"}
_V4_TRUNCATE = {TruncationMode.NONE: "NONE", TruncationMode.START: "LEFT", TruncationMode.END: "RIGHT"}
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}


def input_type(purpose: Purpose) -> str:
    if purpose is Purpose.GENERIC_INDEX:
        return "search_document"
    if purpose is Purpose.CLASSIFICATION:
        return "classification"
    if purpose is Purpose.CLUSTERING:
        return "clustering"
    return "search_query"  # every *_RETRIEVAL purpose


def _data_uri(data: bytes, fmt: str) -> str:
    return f"data:{_MIME[fmt]};base64,{base64.b64encode(data).decode('ascii')}"


class CohereFamily(Family):
    specs = (COHERE_EMBED_ENGLISH_V3, COHERE_EMBED_MULTILINGUAL_V3, COHERE_EMBED_V4)

    @staticmethod
    def _v4(spec: ModelSpec) -> bool:
        return spec.id == COHERE_EMBED_V4.id

    def check(self, item: EmbedInput, spec: ModelSpec) -> None:
        content = item.content
        if content.s3_uri is not None:
            raise InvalidArgument(
                "content.s3_uri", f"model {spec.id} takes inline content only, not s3:// references"
            )
        if content.modality is Modality.IMAGE and content.format not in _MIME:
            raise InvalidArgument("content.image.format", f"{content.format!r} cannot be sent to {spec.id}")

    def group(self, items: Sequence[EmbedInput], spec: ModelSpec) -> list[list[int]]:
        if any(it.content.modality is not Modality.TEXT for it in items):
            if len(items) > 1:
                raise InvalidArgument(
                    "inputs", f"model {spec.id} takes one image per call, never with other inputs"
                )
            return [[0]]
        by_mode: dict[TruncationMode, list[int]] = {}
        for i, it in enumerate(items):
            by_mode.setdefault(it.content.truncation, []).append(i)
        return list(by_mode.values())

    def request(self, items: Sequence[EmbedInput], spec: ModelSpec) -> dict[str, Any]:
        first = items[0]
        v4 = self._v4(spec)
        body: dict[str, Any] = {"input_type": input_type(first.purpose), "embedding_types": ["float"]}
        if first.content.modality is Modality.IMAGE:
            body["images"] = [_data_uri(first.content.data or b"", first.content.format or "")]
            if not v4:
                body["input_type"] = "image"
        else:
            body["texts"] = [it.content.text for it in items]
            body["truncate"] = (_V4_TRUNCATE if v4 else _V3_TRUNCATE)[first.content.truncation]
        if v4:
            body["output_dimension"] = first.dimension
        return body

    def parse(
        self, payload: Any, items: Sequence[EmbedInput], spec: ModelSpec
    ) -> list[tuple[ProviderEmbedding, ...]]:
        embeddings = field(payload, "embeddings")
        kind = payload.get("response_type")
        if isinstance(embeddings, dict) or kind == "embeddings_by_type":
            vectors, where = field(embeddings, "float"), "embeddings.float"
        else:
            vectors, where = embeddings, "embeddings"
        if not isinstance(vectors, list) or len(vectors) != len(items):
            raise BadResponse(f"{where} should hold {len(items)} vectors")
        return [
            (ProviderEmbedding(vector(v, it.dimension, f"{where}[{i}]"), modality_type(it.content.modality)),)
            for i, (v, it) in enumerate(zip(vectors, items, strict=True))
        ]
