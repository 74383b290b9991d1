"""Amazon Nova Multimodal Embeddings: one input per call, all four modalities, inline or S3.

`embeddingPurpose` is the input's `Purpose`; text carries its `truncationMode` (Nova requires
it) and video its `embeddingMode` (AUDIO_VIDEO_SEPARATE answers with a VIDEO and an AUDIO
vector). `truncatedCharLength` is surfaced when Nova truncated the text.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from onespace.content import Content, EmbeddingType, VideoMode
from onespace.models import NOVA_MODEL, Modality, ModelSpec
from onespace.providers.base import EmbedInput, ProviderEmbedding
from onespace.providers.bedrock.family import BadResponse, Family, field, modality_type, vector

__all__ = ["NovaFamily"]

SCHEMA_VERSION = "nova-multimodal-embed-v1"


def _source(content: Content) -> dict[str, Any]:
    if content.s3_uri is not None:
        location = {"uri": content.s3_uri}
        if content.s3_bucket_owner:
            location["bucketOwner"] = content.s3_bucket_owner
        return {"s3Location": location}
    return {"bytes": base64.b64encode(content.data or b"").decode("ascii")}


def _modality_params(content: Content) -> dict[str, Any]:
    if content.modality is Modality.TEXT:
        text: dict[str, Any] = {"truncationMode": content.truncation.value}
        if content.s3_uri is not None:
            text["source"] = _source(content)
        else:
            text["value"] = content.text
        return text
    params: dict[str, Any] = {"format": content.format, "source": _source(content)}
    if content.modality is Modality.IMAGE:
        params["detailLevel"] = content.detail_level.value
    elif content.modality is Modality.VIDEO:
        params["embeddingMode"] = content.video_mode.value
    return params


class NovaFamily(Family):
    specs = (NOVA_MODEL,)

    def request(self, items: Sequence[EmbedInput], spec: ModelSpec) -> dict[str, Any]:
        (item,) = items
        return {
            "schemaVersion": SCHEMA_VERSION,
            "taskType": "SINGLE_EMBEDDING",
            "singleEmbeddingParams": {
                "embeddingPurpose": item.purpose.value,
                "embeddingDimension": item.dimension,
                item.content.modality.value: _modality_params(item.content),
            },
        }

    def parse(
        self, payload: Any, items: Sequence[EmbedInput], spec: ModelSpec
    ) -> list[tuple[ProviderEmbedding, ...]]:
        (item,) = items
        content = item.content
        entries = field(payload, "embeddings")
        separate = content.modality is Modality.VIDEO and content.video_mode is VideoMode.AUDIO_VIDEO_SEPARATE
        expected = 2 if separate else 1
        if not isinstance(entries, list) or len(entries) != expected:
            raise BadResponse(f"'embeddings' should hold {expected} entries for this input")
        out = []
        for i, entry in enumerate(entries):
            raw_type = entry.get("embeddingType") if isinstance(entry, dict) else None
            try:
                kind = EmbeddingType(raw_type)
            except ValueError:  # not documented: fall back to what was sent
                kind = modality_type(content.modality)
            truncated = entry.get("truncatedCharLength") if isinstance(entry, dict) else None
            if truncated is not None and (not isinstance(truncated, int) or isinstance(truncated, bool)):
                raise BadResponse(f"embeddings[{i}].truncatedCharLength is not an integer")
            vec = vector(field(entry, "embedding"), item.dimension, f"embeddings[{i}].embedding")
            out.append(ProviderEmbedding(vec, kind, truncated))
        return [tuple(out)]
