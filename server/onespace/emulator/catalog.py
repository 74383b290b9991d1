"""The models the emulator serves, and how a path's model identifier resolves to one of them.

The identifier arrives percent-encoded (`amazon.titan-embed-text-v2%3A0`, ARNs with `%2F`). It may
be a bare model id, a cross-Region inference profile id (`us.cohere.embed-v4:0`), or an ARN of a
foundation model or inference profile whose resource part is one of those.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import unquote

from onespace.emulator.errors import EmulatedError
from onespace.models import (
    COHERE_EMBED_ENGLISH_V3,
    COHERE_EMBED_MULTILINGUAL_V3,
    COHERE_EMBED_V4,
    NOVA_MODEL,
    TITAN_MULTIMODAL_G1,
    TITAN_TEXT_V2,
    Modality,
    ModelLimits,
    ModelSpec,
)

__all__ = ["CATALOG", "TITAN_TEXT_G1", "CatalogEntry", "Family", "resolve_model"]


class Family(enum.Enum):
    NOVA = "nova"
    TITAN_MULTIMODAL = "titan-multimodal"
    TITAN_TEXT_V2 = "titan-text-v2"
    TITAN_TEXT_G1 = "titan-text-g1"
    COHERE_V3 = "cohere-v3"
    COHERE_V4 = "cohere-v4"


# Emulator-only: the gateway does not offer Titan Text G1, but clients pointed at the emulator may.
TITAN_TEXT_G1 = ModelSpec(
    id="amazon.titan-embed-text-v1",
    modalities=frozenset({Modality.TEXT}),
    dimensions=(1536,),
    default_dimension=1536,
    limits=ModelLimits(
        max_text_chars=50_000,
        hard_max_text_chars=50_000,
        image_formats=(),
        audio_formats=(),
        video_formats=(),
    ),
    description="Amazon Titan Text Embeddings G1.",
    text_truncation=False,
)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    spec: ModelSpec
    family: Family

    @property
    def id(self) -> str:
        return self.spec.id


CATALOG: dict[str, CatalogEntry] = {
    e.id: e
    for e in (
        CatalogEntry(NOVA_MODEL, Family.NOVA),
        CatalogEntry(TITAN_MULTIMODAL_G1, Family.TITAN_MULTIMODAL),
        CatalogEntry(TITAN_TEXT_V2, Family.TITAN_TEXT_V2),
        CatalogEntry(TITAN_TEXT_G1, Family.TITAN_TEXT_G1),
        CatalogEntry(COHERE_EMBED_ENGLISH_V3, Family.COHERE_V3),
        CatalogEntry(COHERE_EMBED_MULTILINGUAL_V3, Family.COHERE_V3),
        CatalogEntry(COHERE_EMBED_V4, Family.COHERE_V4),
    )
}

_PROFILE_PREFIXES = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.")
_ARN_RESOURCES = ("foundation-model", "inference-profile", "application-inference-profile")


def _lookup(name: str) -> CatalogEntry | None:
    if name in CATALOG:
        return CATALOG[name]
    for prefix in _PROFILE_PREFIXES:
        if name.startswith(prefix) and name[len(prefix) :] in CATALOG:
            return CATALOG[name[len(prefix) :]]
    return None


def resolve_model(raw: str) -> CatalogEntry:
    """The catalog entry for a (possibly percent-encoded) model id or ARN; 404 otherwise."""
    name = unquote(raw)
    if name.startswith("arn:"):
        parts = name.split(":", 5)
        resource = parts[5] if len(parts) == 6 else ""
        kind, _, rest = resource.partition("/")
        entry = _lookup(rest) if parts[2:3] == ["bedrock"] and kind in _ARN_RESOURCES else None
    else:
        entry = _lookup(name)
    if entry is None:
        raise EmulatedError(
            "ResourceNotFoundException",
            f"Could not resolve the foundation model from the provided model identifier {name!r}.",
        )
    return entry
