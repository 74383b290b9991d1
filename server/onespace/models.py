"""What each embedding model accepts: modalities, dimensions, formats and limits.

Pure data, no I/O. The content checks (`onespace.content.check`) and the providers read these so a
request that a model would refuse is refused before any call is made.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "COHERE_EMBED_ENGLISH_V3",
    "COHERE_EMBED_MULTILINGUAL_V3",
    "COHERE_EMBED_V4",
    "LOCAL_MODEL",
    "NOVA_MODEL",
    "TITAN_MULTIMODAL_G1",
    "TITAN_TEXT_V2",
    "Modality",
    "ModelLimits",
    "ModelSpec",
]


class Modality(enum.Enum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"


IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")
AUDIO_FORMATS = ("mp3", "wav", "ogg")
VIDEO_FORMATS = ("mp4", "mov", "mkv", "webm", "flv", "mpeg", "mpg", "wmv", "3gp")
MB = 1_000_000


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """Per-input limits; `max_inline_bytes` is measured after base64, as Bedrock measures it."""

    max_text_chars: int = 8192
    hard_max_text_chars: int = 50_000
    max_inline_bytes: int = 25 * MB
    max_media_seconds: float = 30.0
    image_formats: tuple[str, ...] = IMAGE_FORMATS
    audio_formats: tuple[str, ...] = AUDIO_FORMATS
    video_formats: tuple[str, ...] = VIDEO_FORMATS
    max_batch: int = 1
    max_image_pixels: int | None = None

    def formats(self, modality: Modality) -> tuple[str, ...]:
        return {
            Modality.IMAGE: self.image_formats,
            Modality.AUDIO: self.audio_formats,
            Modality.VIDEO: self.video_formats,
        }.get(modality, ())


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    modalities: frozenset[Modality]
    dimensions: tuple[int, ...]
    default_dimension: int
    limits: ModelLimits = field(default_factory=ModelLimits)
    description: str = ""
    semantic_across_modalities: bool = True
    supports_s3: bool = False
    text_truncation: bool = True

    def check_dimension(self, dimension: int) -> None:
        """Raise InvalidArgument unless the model offers `dimension`."""
        from onespace.errors import InvalidArgument

        if dimension not in self.dimensions:
            offered = ", ".join(map(str, self.dimensions))
            raise InvalidArgument(
                "options.dimension", f"{dimension} is not offered by model {self.id} (offers {offered})"
            )


_ALL = frozenset(Modality)

LOCAL_MODEL = ModelSpec(
    id="onespace.local-multimodal-v1",
    modalities=_ALL,
    dimensions=(256, 384, 1024, 3072),
    default_dimension=3072,
    limits=ModelLimits(),
    description=(
        "Deterministic offline featurizer (hashed text n-grams, image colour/layout, audio spectra, "
        "video frames + audio). NOT semantic across modalities: for development, tests and benchmarks."
    ),
    semantic_across_modalities=False,
)

NOVA_MODEL = ModelSpec(
    id="amazon.nova-2-multimodal-embeddings-v1:0",
    modalities=_ALL,
    dimensions=(256, 384, 1024, 3072),
    default_dimension=3072,
    limits=ModelLimits(),
    description="Amazon Nova Multimodal Embeddings: text, image, audio and video in one vector space.",
    supports_s3=True,
)

TITAN_MULTIMODAL_G1 = ModelSpec(
    id="amazon.titan-embed-image-v1",
    modalities=frozenset({Modality.TEXT, Modality.IMAGE}),
    dimensions=(256, 384, 1024),
    default_dimension=1024,
    # 256 tokens at ~4.7 chars/token; no truncation option, so longer text is refused.
    limits=ModelLimits(
        max_text_chars=1200,
        hard_max_text_chars=1200,
        image_formats=("png", "jpeg"),
        audio_formats=(),
        video_formats=(),
        max_image_pixels=2048 * 2048,
    ),
    description="Amazon Titan Multimodal Embeddings G1: text, image, or both averaged.",
    text_truncation=False,
)

TITAN_TEXT_V2 = ModelSpec(
    id="amazon.titan-embed-text-v2:0",
    modalities=frozenset({Modality.TEXT}),
    dimensions=(256, 512, 1024),
    default_dimension=1024,
    limits=ModelLimits(
        max_text_chars=50_000,
        hard_max_text_chars=50_000,
        image_formats=(),
        audio_formats=(),
        video_formats=(),
    ),
    description="Amazon Titan Text Embeddings V2.",
    text_truncation=False,
)

_COHERE_V3_LIMITS = ModelLimits(
    max_text_chars=2048,
    hard_max_text_chars=2048,
    max_inline_bytes=5 * MB * 4 // 3,
    image_formats=("png", "jpeg"),
    audio_formats=(),
    video_formats=(),
    max_batch=96,
)

COHERE_EMBED_ENGLISH_V3 = ModelSpec(
    id="cohere.embed-english-v3",
    modalities=frozenset({Modality.TEXT, Modality.IMAGE}),
    dimensions=(1024,),
    default_dimension=1024,
    limits=_COHERE_V3_LIMITS,
    description="Cohere Embed English v3 (batches up to 96 texts per call).",
)

COHERE_EMBED_MULTILINGUAL_V3 = ModelSpec(
    id="cohere.embed-multilingual-v3",
    modalities=frozenset({Modality.TEXT, Modality.IMAGE}),
    dimensions=(1024,),
    default_dimension=1024,
    limits=_COHERE_V3_LIMITS,
    description="Cohere Embed Multilingual v3 (batches up to 96 texts per call).",
)

COHERE_EMBED_V4 = ModelSpec(
    id="cohere.embed-v4:0",
    modalities=frozenset({Modality.TEXT, Modality.IMAGE}),
    dimensions=(256, 512, 1024, 1536),
    default_dimension=1536,
    limits=ModelLimits(
        max_text_chars=50_000,
        hard_max_text_chars=50_000,
        max_inline_bytes=5 * MB * 4 // 3,
        image_formats=("png", "jpeg", "webp", "gif"),
        audio_formats=(),
        video_formats=(),
        max_batch=96,
    ),
    description="Cohere Embed v4 (batches up to 96 inputs per call).",
)
