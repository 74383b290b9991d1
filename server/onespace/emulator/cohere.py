"""Cohere Embed on Bedrock: v3 (english, multilingual) and v4.

Up to 96 texts per call (v3: each at most 2,048 characters), images as data URIs (v3: one per
call, with `input_type: image`), never texts and images together. v4 also takes `inputs`
(interleaved text and images, one vector each: the mean of its parts) and `output_dimension`.
No `embedding_types` → `embeddings_floats` (a list of vectors); with it → `embeddings_by_type`
(a dict keyed by type), which is how Cohere's API answers.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from onespace.content import Content, TruncationMode, sniff_format
from onespace.emulator.catalog import CatalogEntry, Family
from onespace.emulator.errors import EmulatedError, malformed
from onespace.emulator.invocation import Invocation, S3Store
from onespace.emulator.schema import Obj, decode_base64, type_name
from onespace.emulator.vectors import cohere_types, mean_unit, to_json
from onespace.models import Modality
from onespace.providers.base import ProviderResult

__all__ = ["prepare"]

MAX_ITEMS = 96
_TYPES = ("float", "int8", "uint8", "binary", "ubinary")
_PURPOSES = ("search_document", "search_query", "classification", "clustering")
_TRUNCATE_V3 = {"NONE": TruncationMode.NONE, "START": TruncationMode.START, "END": TruncationMode.END}
_TRUNCATE_V4 = {"NONE": TruncationMode.NONE, "LEFT": TruncationMode.START, "RIGHT": TruncationMode.END}
_DATA_URI = re.compile(r"^data:image/(?P<mime>[a-z]+);base64,(?P<data>.*)$", re.DOTALL)
_V3_KEYS = ("input_type", "texts", "images", "truncate", "embedding_types")
_V4_KEYS = (*_V3_KEYS, "inputs", "output_dimension", "max_tokens")


def prepare(payload: object, entry: CatalogEntry, s3: S3Store) -> Invocation:
    v4 = entry.family is Family.COHERE_V4
    body = Obj(payload, "", _V4_KEYS if v4 else _V3_KEYS)
    purposes = _PURPOSES if v4 else (*_PURPOSES, "image")
    input_type = body.enum("input_type", purposes, required=True)
    truncations = _TRUNCATE_V4 if v4 else _TRUNCATE_V3
    truncate = truncations[body.enum("truncate", truncations) or "NONE"]
    kinds = body.strings("embedding_types", min_items=1)
    for i, kind in enumerate(kinds or ()):
        if kind not in _TYPES:
            raise malformed(
                f"embedding_types.{i}", f"{kind} is not a valid enum value (expected one of {_TYPES})"
            )
    dimension = entry.spec.default_dimension
    if v4:
        dimension = body.integer("output_dimension", options=entry.spec.dimensions) or dimension
        max_tokens = body.integer("max_tokens")
        if max_tokens is not None and max_tokens < 1:
            raise malformed("max_tokens", f"expected minimum: 1, found: {max_tokens}")
    given = [k for k in ("texts", "images", "inputs") if body.has(k)]
    if len(given) != 1:
        accepted = "[texts, images, inputs]" if v4 else "[texts, images]"
        raise EmulatedError(
            "ValidationException",
            f"Exactly one of {accepted} must be provided (found: {', '.join(given) or 'none'}).",
        )
    (kind,) = given
    texts: list[str] = []
    if kind == "texts":
        texts = body.strings("texts", min_items=1, max_items=MAX_ITEMS) or []
        groups = [[_text(t, f"texts.{i}", entry, truncate)] for i, t in enumerate(texts)]
        modality = Modality.TEXT
    elif kind == "images":
        images = body.strings("images", min_items=1, max_items=MAX_ITEMS if v4 else 1) or []
        groups = [[_image(uri, f"images.{i}", entry)] for i, uri in enumerate(images)]
        modality = Modality.IMAGE
    else:
        items = body.array("inputs", min_items=1, max_items=MAX_ITEMS) or []
        groups = [_input(item, f"inputs.{i}", entry, truncate) for i, item in enumerate(items)]
        modality = (
            Modality.IMAGE if any(c.modality is Modality.IMAGE for g in groups for c in g) else Modality.TEXT
        )
    if not v4 and (input_type == "image") != (modality is Modality.IMAGE):
        raise EmulatedError(
            "ValidationException", "input_type 'image' must be used with images, and only with images."
        )
    sizes = [len(g) for g in groups]
    contents = [c for g in groups for c in g]

    def respond(results: list[ProviderResult]) -> dict[str, Any]:
        vectors, start = [], 0
        for size in sizes:
            part = [r.embeddings[0].vector for r in results[start : start + size]]
            vectors.append(part[0] if size == 1 else mean_unit(part))
            start += size
        out: dict[str, Any] = {"id": str(uuid.uuid4()), "texts": texts}
        if kinds is None:
            out.update(response_type="embeddings_floats", embeddings=[to_json(v) for v in vectors])
        else:
            by_type = {k: [cohere_types(v, k) for v in vectors] for k in dict.fromkeys(kinds)}
            out.update(response_type="embeddings_by_type", embeddings=by_type)
        if kind == "inputs":
            out["inputs"] = [{"content": []} for _ in sizes]
        return out

    return Invocation(contents, dimension, modality, respond, batch_size=len(groups))


def _text(value: str, path: str, entry: CatalogEntry, truncate: TruncationMode) -> Content:
    if not value.strip():
        raise malformed(path, "expected minLength: 1 (non-whitespace)")
    limit = entry.spec.limits.hard_max_text_chars
    if len(value) > limit:
        raise malformed(path, f"expected maxLength: {limit}, actual: {len(value)}")
    return Content(Modality.TEXT, text=value, truncation=truncate)


def _image(uri: str, path: str, entry: CatalogEntry) -> Content:
    match = _DATA_URI.match(uri)
    if match is None:
        raise malformed(path, "expected a data URI of the form data:image/<type>;base64,<data>")
    mime = match["mime"].replace("jpg", "jpeg")
    allowed = entry.spec.limits.image_formats
    if mime not in allowed:
        raise EmulatedError(
            "ValidationException", f"{path}: image/{mime} is not supported (supported: {', '.join(allowed)})."
        )
    limit = entry.spec.limits.max_inline_bytes
    if len(match["data"]) > limit:
        raise EmulatedError(
            "ValidationException",
            f"{path}: the image is {len(match['data'])} bytes in base64; the maximum is {limit}.",
        )
    data = decode_base64(match["data"], path)
    sniffed = sniff_format(data)
    if sniffed != mime:
        raise EmulatedError(
            "ValidationException", f"{path}: the data is {sniffed or 'not an image'}, not image/{mime}."
        )
    return Content(Modality.IMAGE, data=data, format=mime)


def _input(item: object, path: str, entry: CatalogEntry, truncate: TruncationMode) -> list[Content]:
    content = Obj(item, path, ("content",)).array("content", min_items=1) or []
    out = []
    for i, part in enumerate(content):
        where = f"{path}.content.{i}"
        obj = Obj(part, where, ("type", "text", "image_url"))
        kind = obj.enum("type", ("text", "image_url"), required=True)
        if kind == "text":
            out.append(_text(obj.string("text", required=True) or "", f"{where}.text", entry, truncate))
            continue
        url = obj.raw("image_url", required=True)
        if isinstance(url, dict):
            url = Obj(url, f"{where}.image_url", ("url",)).string("url", required=True)
        if not isinstance(url, str):
            raise malformed(f"{where}.image_url", f"expected type: String, found: {type_name(url)}")
        out.append(_image(url, f"{where}.image_url", entry))
    return out
