"""`embed_content`: one input to its vector(s), deterministically, with no I/O beyond decoding.

Pipeline: check the input against the model (defensive: the gateway checked already), decode,
featurise, project to 3072 dimensions, keep the first `dimension` values, renormalise to unit
length, float32. The same content gives the same vector bit for bit, in any process.

The embedding purpose does not change the local vector: a stored item searched by its own content
scores ~1 whatever purposes were used to index and to query. The image detail level does not
change it either.
"""

from __future__ import annotations

import numpy as np

from onespace.content import Content, EmbeddingType, check
from onespace.errors import InvalidArgument
from onespace.models import LOCAL_MODEL, Modality, ModelSpec
from onespace.providers.base import ProviderEmbedding, ProviderResult
from onespace.providers.local.audio import AUDIO_FEATURES, audio_features, decode_audio
from onespace.providers.local.image import IMAGE_FEATURES, decode_image, image_features
from onespace.providers.local.projection import Features, finish, project
from onespace.providers.local.text import TEXT_FEATURES, text_features, truncate
from onespace.providers.local.video import embed_video

__all__ = ["embed_content", "warm_up"]


def embed_content(content: Content, dimension: int, spec: ModelSpec = LOCAL_MODEL) -> ProviderResult:
    """Deterministic: decode, featurise, project to 3072, truncate to `dimension`, renormalise.

    Raises InvalidArgument naming the field for input the model refuses or bytes that do not decode.
    """
    spec.check_dimension(dimension)
    if content.s3_uri is not None:
        raise InvalidArgument(
            "content.s3_uri",
            "the local provider cannot read s3:// objects; use inline bytes or --provider bedrock",
        )
    content = check(content, spec)
    truncated: int | None = None
    vectors: list[tuple[EmbeddingType, Features]]
    if content.modality is Modality.TEXT:
        text, truncated = truncate(content.text or "", spec.limits.max_text_chars, content.truncation)
        vectors = [(EmbeddingType.TEXT, project(text_features(text), "text"))]
    else:
        data, fmt = content.data or b"", content.format or "unknown"
        if content.modality is Modality.IMAGE:
            rgb = decode_image(data, fmt, spec)
            vectors = [(EmbeddingType.IMAGE, project(image_features(rgb), "image"))]
        elif content.modality is Modality.AUDIO:
            samples, rate = decode_audio(data, fmt, spec)
            vectors = [(EmbeddingType.AUDIO, project(audio_features(samples, rate), "audio"))]
        else:
            vectors = embed_video(data, fmt, content.video_mode, spec)
    return ProviderResult(
        embeddings=tuple(
            ProviderEmbedding(vector=finish(full, dimension), type=kind, truncated_char_length=truncated)
            for kind, full in vectors
        )
    )


def warm_up() -> None:
    """Build every projection now (about 45 MB, a fraction of a second) instead of on first use."""
    for space, rows in (("text", TEXT_FEATURES), ("image", IMAGE_FEATURES), ("audio", AUDIO_FEATURES)):
        project(np.zeros(rows), space)
