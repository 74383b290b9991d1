"""`embed_inputs`: a batch of inputs to their vectors, deterministically, with no I/O beyond decoding.

Pipeline: check each input against the model (defensive: the gateway checked already), decode and
featurise it (inherently one input at a time: hashing text n-grams, decoding media), then project
each feature space's rows with one batched projection onto only the first `dimension` columns
(`projection.project_many`), renormalise every prefix to unit length, float32. An input's vector
does not depend on the batch it came in: the same content gives the same vector bit for bit, in
any batch, in any process.

The embedding purpose does not change the local vector: a stored item searched by its own content
scores ~1 whatever purposes were used to index and to query. The image detail level does not
change it either.

Decoding is bounded by a `Decoding` (media limits and a decode budget) that the caller passes: the
local provider passes its own; a library caller that passes none gets the default limits with a
budget of its own for the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from onespace.content import Content, EmbeddingType, check
from onespace.errors import InvalidArgument, OnespaceError
from onespace.models import LOCAL_MODEL, Modality, ModelSpec
from onespace.providers.base import ProviderEmbedding, ProviderResult
from onespace.providers.local.audio import AUDIO_FEATURES, audio_features, decode_audio
from onespace.providers.local.decoding import Decoding
from onespace.providers.local.image import IMAGE_FEATURES, decode_image, image_features
from onespace.providers.local.projection import Features, finish_many, matrix, project_many
from onespace.providers.local.text import TEXT_FEATURES, text_features_many, truncate
from onespace.providers.local.video import video_terms

__all__ = ["Job", "embed_content", "embed_inputs", "embed_many", "embed_outcomes", "warm_up"]

Job = tuple[Content, int, ModelSpec]  # content, dimension, model
_GroupKey = tuple[str, int]  # feature space, dimension
_Ref = tuple[_GroupKey, int, float | None]  # a row of a group's projection, and its scale


@dataclass(slots=True)
class _Group:
    """The rows of one feature space to project to one dimension: texts, or feature vectors."""

    texts: list[str] = field(default_factory=list)
    rows: list[Features] = field(default_factory=list)

    def add(self, item: str | Features) -> int:
        if isinstance(item, str):
            self.texts.append(item)
            return len(self.texts) - 1
        self.rows.append(item)
        return len(self.rows) - 1

    def features(self, space: str) -> Features:
        if space == "text":
            return text_features_many(self.texts)
        return np.stack(self.rows)


@dataclass(slots=True)
class _Plan:
    """One input: the vectors it asks for, each a sum of scaled projected rows."""

    dimension: int
    truncated: int | None
    vectors: list[tuple[EmbeddingType, list[_Ref]]]


def _plan(
    content: Content, dimension: int, spec: ModelSpec, groups: dict[_GroupKey, _Group], decoding: Decoding
) -> _Plan:
    """Check, decode and featurise one input (raises InvalidArgument naming the field)."""
    spec.check_dimension(dimension)
    if content.s3_uri is not None:
        raise InvalidArgument(
            "content.s3_uri",
            "the local provider cannot read s3:// objects; use inline bytes or --provider bedrock",
        )
    content = check(content, spec, "content", decoding.limits)

    def ref(space: str, item: str | Features, scale: float | None = None) -> _Ref:
        key = (space, dimension)
        return key, groups.setdefault(key, _Group()).add(item), scale

    if content.modality is Modality.TEXT:
        text, truncated = truncate(content.text or "", spec.limits.max_text_chars, content.truncation)
        return _Plan(dimension, truncated, [(EmbeddingType.TEXT, [ref("text", text)])])
    data, fmt = content.data or b"", content.format or "unknown"
    if content.modality is Modality.IMAGE:
        rgb = decode_image(data, fmt, spec, decoding=decoding)
        return _Plan(dimension, None, [(EmbeddingType.IMAGE, [ref("image", image_features(rgb))])])
    if content.modality is Modality.AUDIO:
        samples, rate = decode_audio(data, fmt, spec, decoding=decoding)
        return _Plan(dimension, None, [(EmbeddingType.AUDIO, [ref("audio", audio_features(samples, rate))])])
    vectors = video_terms(data, fmt, content.video_mode, spec, decoding=decoding)
    return _Plan(dimension, None, [(kind, [ref(*t) for t in terms]) for kind, terms in vectors])


def _combine(refs: list[_Ref], projected: dict[_GroupKey, Features]) -> Features:
    """sum(row * scale) over `refs`, left to right (one unscaled row: the row itself)."""
    total: Features | None = None
    for key, row, scale in refs:
        vector = projected[key][row]
        if scale is not None:
            vector = vector * scale
        total = vector if total is None else total + vector
    assert total is not None
    return total


def embed_outcomes(jobs: Sequence[Job], decoding: Decoding) -> list[ProviderResult | OnespaceError]:
    """Every input's result, or the error that input alone raised (a refused or undecodable input
    does not stop the others: they are still featurised and projected in one batch)."""
    groups: dict[_GroupKey, _Group] = {}
    plans: list[_Plan | OnespaceError] = []
    for content, dimension, spec in jobs:
        try:
            plans.append(_plan(content, dimension, spec, groups, decoding))
        except OnespaceError as exc:
            plans.append(exc)
    projected = {
        (space, dimension): project_many(group.features(space), space, dimension)
        for (space, dimension), group in groups.items()
    }
    # Every output vector, by dimension, then renormalised together (one call per dimension).
    outputs: dict[int, list[Features]] = {}
    slots: list[list[tuple[EmbeddingType, int]]] = []
    for plan in plans:
        slots.append([])
        if isinstance(plan, OnespaceError):
            continue
        found = outputs.setdefault(plan.dimension, [])
        for kind, refs in plan.vectors:
            if len(refs) == 1 and refs[0][2] is None:
                key, row, _ = refs[0]
                found.append(projected[key][row])
            else:
                found.append(_combine(refs, projected))
            slots[-1].append((kind, len(found) - 1))
    # Each vector gets its own array (not a view of the batch's): the cache accounts per vector.
    finished = {
        dimension: [row.copy() for row in finish_many(np.stack(rows), dimension)]
        for dimension, rows in outputs.items()
    }
    return [
        plan
        if isinstance(plan, OnespaceError)
        else ProviderResult(
            embeddings=tuple(
                ProviderEmbedding(finished[plan.dimension][i], kind, plan.truncated) for kind, i in slot
            )
        )
        for plan, slot in zip(plans, slots, strict=True)
    ]


def embed_inputs(jobs: Sequence[Job], decoding: Decoding | None = None) -> list[ProviderResult]:
    """Deterministic: featurise every input, project each feature space in one batch to only the
    dimension asked for, renormalise.

    Raises the first failure in input order: InvalidArgument naming the field for input the model
    refuses or bytes that do not decode.
    """
    results: list[ProviderResult] = []
    for outcome in embed_outcomes(jobs, Decoding.of() if decoding is None else decoding):
        if isinstance(outcome, OnespaceError):
            raise outcome
        results.append(outcome)
    return results


def embed_many(
    contents: Sequence[Content],
    dimension: int,
    spec: ModelSpec = LOCAL_MODEL,
    decoding: Decoding | None = None,
) -> list[ProviderResult]:
    """`embed_content` of every content, as one batch (one projection per feature space)."""
    return embed_inputs([(content, dimension, spec) for content in contents], decoding)


def embed_content(
    content: Content, dimension: int, spec: ModelSpec = LOCAL_MODEL, decoding: Decoding | None = None
) -> ProviderResult:
    """Deterministic: decode, featurise, project to `dimension`, renormalise (a batch of one).

    Raises InvalidArgument naming the field for input the model refuses or bytes that do not decode.
    """
    return embed_inputs([(content, dimension, spec)], decoding)[0]


def warm_up() -> None:
    """Build every projection now (about 45 MB, a fraction of a second) instead of on first use."""
    for space, rows in (("text", TEXT_FEATURES), ("image", IMAGE_FEATURES), ("audio", AUDIO_FEATURES)):
        matrix(space, rows)
