"""Amazon Titan: Multimodal Embeddings G1 (text or image → one vector) and Text Embeddings V2.

One input per call; `Purpose` has no Titan equivalent and is not sent. Titan cannot truncate,
so over-long text is refused by `content.check` before any call. Text V2 is asked for
normalised float vectors (the index normalises anyway; binary would lose information).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from onespace.errors import InvalidArgument
from onespace.models import TITAN_MULTIMODAL_G1, TITAN_TEXT_V2, Modality, ModelSpec
from onespace.providers.base import EmbedInput, ProviderEmbedding
from onespace.providers.bedrock.family import Family, field, modality_type, vector

__all__ = ["TitanMultimodalFamily", "TitanTextFamily"]


def _inline(item: EmbedInput, spec: ModelSpec) -> None:
    if item.content.s3_uri is not None:
        raise InvalidArgument(
            "content.s3_uri", f"model {spec.id} takes inline content only, not s3:// references"
        )


class TitanMultimodalFamily(Family):
    specs = (TITAN_MULTIMODAL_G1,)

    def check(self, item: EmbedInput, spec: ModelSpec) -> None:
        _inline(item, spec)

    def request(self, items: Sequence[EmbedInput], spec: ModelSpec) -> dict[str, Any]:
        (item,) = items
        body: dict[str, Any] = {"embeddingConfig": {"outputEmbeddingLength": item.dimension}}
        if item.content.modality is Modality.IMAGE:
            body["inputImage"] = base64.b64encode(item.content.data or b"").decode("ascii")
        else:
            body["inputText"] = item.content.text
        return body

    def parse(
        self, payload: Any, items: Sequence[EmbedInput], spec: ModelSpec
    ) -> list[tuple[ProviderEmbedding, ...]]:
        (item,) = items
        vec = vector(field(payload, "embedding"), item.dimension, "embedding")
        return [(ProviderEmbedding(vec, modality_type(item.content.modality)),)]


class TitanTextFamily(Family):
    specs = (TITAN_TEXT_V2,)

    def check(self, item: EmbedInput, spec: ModelSpec) -> None:
        _inline(item, spec)

    def request(self, items: Sequence[EmbedInput], spec: ModelSpec) -> dict[str, Any]:
        (item,) = items
        return {
            "inputText": item.content.text,
            "dimensions": item.dimension,
            "normalize": True,
            "embeddingTypes": ["float"],
        }

    def parse(
        self, payload: Any, items: Sequence[EmbedInput], spec: ModelSpec
    ) -> list[tuple[ProviderEmbedding, ...]]:
        (item,) = items
        by_type = payload.get("embeddingsByType") if isinstance(payload, dict) else None
        if isinstance(by_type, dict) and "float" in by_type:
            raw, where = by_type["float"], "embeddingsByType.float"
        else:
            raw, where = field(payload, "embedding"), "embedding"
        vec = vector(raw, item.dimension, where)
        return [(ProviderEmbedding(vec, modality_type(Modality.TEXT)),)]
