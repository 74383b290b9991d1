"""Amazon Titan embeddings: Multimodal G1 (text, image or both averaged), Text V2 and Text G1.

Titan has no truncation option: text beyond the model's limit is refused. Text V2's
`normalize: false` returns the same (unit) vector as `true` - the emulator's vectors are unit
norm by construction - and `binary` is one 0/1 per dimension (1 where the float is >= 0).
"""

from __future__ import annotations

import re
from typing import Any

from onespace.content import Content, sniff_format
from onespace.emulator.catalog import CatalogEntry, Family
from onespace.emulator.errors import EmulatedError, malformed
from onespace.emulator.invocation import Invocation, S3Store
from onespace.emulator.schema import Obj, decode_base64
from onespace.emulator.vectors import mean_unit, titan_binary, to_json
from onespace.models import MB, Modality
from onespace.providers.base import ProviderResult

__all__ = ["count_tokens", "prepare"]

_TOKEN = re.compile(r"\w+|[^\w\s]")
IMAGE_LIMIT = 25 * MB


def count_tokens(text: str) -> int:
    """A deterministic stand-in for the tokenizer (words and punctuation marks)."""
    return len(_TOKEN.findall(text))


def prepare(payload: object, entry: CatalogEntry, s3: S3Store) -> Invocation:
    if entry.family is Family.TITAN_MULTIMODAL:
        return _multimodal(payload, entry)
    if entry.family is Family.TITAN_TEXT_V2:
        return _text_v2(payload, entry)
    return _text_g1(payload, entry)


def _input_text(body: Obj, entry: CatalogEntry, *, required: bool) -> str | None:
    text = body.string("inputText", required=required)
    if text is None:
        return None
    if not text.strip():
        raise malformed("inputText", "expected minLength: 1 (non-whitespace)")
    limit = entry.spec.limits.hard_max_text_chars
    if len(text) > limit:
        raise EmulatedError(
            "ValidationException",
            f"Input text is too long: {len(text)} characters; the maximum for {entry.id} is {limit}.",
        )
    return text


def _multimodal(payload: object, entry: CatalogEntry) -> Invocation:
    body = Obj(payload, "", ("inputText", "inputImage", "embeddingConfig"))
    text = _input_text(body, entry, required=False)
    encoded = body.string("inputImage")
    if text is None and encoded is None:
        raise malformed("", "at least one of [inputText, inputImage] must be present")
    config = body.obj("embeddingConfig", ("outputEmbeddingLength",))
    dimension = config.integer("outputEmbeddingLength", options=entry.spec.dimensions) if config else None
    dimension = dimension or entry.spec.default_dimension
    contents = [Content(Modality.TEXT, text=text)] if text is not None else []
    if encoded is not None:
        if len(encoded) > IMAGE_LIMIT:
            raise EmulatedError(
                "ValidationException", f"inputImage is {len(encoded)} bytes; the maximum is {IMAGE_LIMIT}."
            )
        data = decode_base64(encoded, "inputImage")
        fmt = sniff_format(data)
        if fmt not in entry.spec.limits.image_formats:
            raise EmulatedError(
                "ValidationException",
                f"inputImage must be a PNG or JPEG image (found: {fmt or 'unrecognised bytes'}).",
            )
        contents.append(Content(Modality.IMAGE, data=data, format=fmt))
    tokens = count_tokens(text or "")
    modality = Modality.IMAGE if encoded is not None else Modality.TEXT

    def respond(results: list[ProviderResult]) -> dict[str, Any]:
        vector = mean_unit([r.embeddings[0].vector for r in results])
        return {"embedding": to_json(vector), "inputTextTokenCount": tokens}

    return Invocation(contents, dimension, modality, respond, input_token_count=tokens)


def _text_v2(payload: object, entry: CatalogEntry) -> Invocation:
    body = Obj(payload, "", ("inputText", "dimensions", "normalize", "embeddingTypes"))
    text = _input_text(body, entry, required=True)
    assert text is not None
    dimension = body.integer("dimensions", options=entry.spec.dimensions) or entry.spec.default_dimension
    body.boolean("normalize")
    kinds = body.strings("embeddingTypes", min_items=1, max_items=2) or ["float"]
    for i, kind in enumerate(kinds):
        if kind not in ("float", "binary"):
            raise malformed(
                f"embeddingTypes.{i}", f"{kind} is not a valid enum value (expected float, binary)"
            )
    tokens = count_tokens(text)

    def respond(results: list[ProviderResult]) -> dict[str, Any]:
        vector = results[0].embeddings[0].vector
        by_type: dict[str, Any] = {}
        if "float" in kinds:
            by_type["float"] = to_json(vector)
        if "binary" in kinds:
            by_type["binary"] = titan_binary(vector)
        return {"embedding": to_json(vector), "inputTextTokenCount": tokens, "embeddingsByType": by_type}

    content = Content(Modality.TEXT, text=text)
    return Invocation([content], dimension, Modality.TEXT, respond, input_token_count=tokens)


def _text_g1(payload: object, entry: CatalogEntry) -> Invocation:
    body = Obj(payload, "", ("inputText",))
    text = _input_text(body, entry, required=True)
    assert text is not None
    tokens = count_tokens(text)

    def respond(results: list[ProviderResult]) -> dict[str, Any]:
        return {"embedding": to_json(results[0].embeddings[0].vector), "inputTextTokenCount": tokens}

    content = Content(Modality.TEXT, text=text)
    return Invocation(
        [content], entry.spec.default_dimension, Modality.TEXT, respond, input_token_count=tokens
    )
