"""Amazon Nova Multimodal Embeddings: the synchronous `SINGLE_EMBEDDING` request and response.

Validation follows the AWS schema: `taskType` must be SINGLE_EMBEDDING, exactly one modality,
`text.truncationMode` and `video.embeddingMode` required, text by value or S3 only, sources by
inline base64 or `s3Location`, 25 MB inline after base64. Beyond the model's text limit, START/END
truncate (and `truncatedCharLength` is returned) while NONE fails, as the service does.
"""

from __future__ import annotations

import re
from typing import Any

from onespace.content import (
    Content,
    DetailLevel,
    EmbeddingType,
    Purpose,
    TruncationMode,
    VideoMode,
    normalize_format,
)
from onespace.emulator.catalog import CatalogEntry
from onespace.emulator.errors import EmulatedError, malformed
from onespace.emulator.invocation import Invocation, S3Store
from onespace.emulator.schema import Obj, decode_base64
from onespace.emulator.vectors import to_json
from onespace.models import MB, Modality
from onespace.providers.base import ProviderResult

__all__ = ["prepare"]

SCHEMA_VERSION = "nova-multimodal-embed-v1"
INLINE_LIMIT = 25 * MB
TEXT_MAX_LENGTH = 50_000
_S3_LIMITS = {
    Modality.TEXT: 1 * MB,
    Modality.IMAGE: 50 * MB,
    Modality.AUDIO: 100 * MB,
    Modality.VIDEO: 100 * MB,
}
_FORMATS = {
    Modality.IMAGE: ("png", "jpeg", "gif", "webp"),
    Modality.AUDIO: ("mp3", "wav", "ogg"),
    Modality.VIDEO: ("mp4", "mov", "mkv", "webm", "flv", "mpeg", "mpg", "wmv", "3gp"),
}
_PARAMS = ("embeddingPurpose", "embeddingDimension", "text", "image", "audio", "video")
_ACCOUNT = re.compile(r"^\d{12}$")


def prepare(payload: object, entry: CatalogEntry, s3: S3Store) -> Invocation:
    body = Obj(
        payload, "", ("schemaVersion", "taskType", "singleEmbeddingParams", "segmentedEmbeddingParams")
    )
    version = body.string("schemaVersion")
    if version is not None and version != SCHEMA_VERSION:
        raise malformed("schemaVersion", f"{version} is not a valid enum value (expected {SCHEMA_VERSION})")
    task = body.string("taskType", required=True)
    if task == "SEGMENTED_EMBEDDING":
        raise EmulatedError(
            "ValidationException",
            "taskType SEGMENTED_EMBEDDING is only supported by StartAsyncInvoke; use SINGLE_EMBEDDING "
            "with InvokeModel.",
        )
    if task != "SINGLE_EMBEDDING":
        raise malformed("taskType", f"{task} is not a valid enum value (expected SINGLE_EMBEDDING)")
    if body.has("segmentedEmbeddingParams"):
        raise malformed(
            "", "extraneous key [segmentedEmbeddingParams] is not permitted with SINGLE_EMBEDDING"
        )
    params = body.obj("singleEmbeddingParams", _PARAMS, required=True)
    assert params is not None
    params.enum("embeddingPurpose", [p.value for p in Purpose], required=True)
    dimension = params.integer("embeddingDimension", options=entry.spec.dimensions)
    dimension = entry.spec.default_dimension if dimension is None else dimension
    present = [m for m in Modality if params.has(m.value)]
    if len(present) != 1:
        found = ", ".join(m.value for m in present) or "none"
        raise malformed(
            "singleEmbeddingParams",
            f"exactly one of [text, image, audio, video] must be present (found: {found})",
        )
    (modality,) = present
    content = _text(params, entry, s3) if modality is Modality.TEXT else _media(params, modality, s3)
    return Invocation([content], dimension, modality, _respond)


def _text(params: Obj, entry: CatalogEntry, s3: S3Store) -> Content:
    text = params.obj("text", ("truncationMode", "value", "source"), required=True)
    assert text is not None
    mode = text.enum("truncationMode", [m.value for m in TruncationMode], required=True)
    assert mode is not None
    if text.has("value") == text.has("source"):
        raise malformed("singleEmbeddingParams.text", "exactly one of [value, source] must be present")
    value = text.string("value", max_length=TEXT_MAX_LENGTH)
    if value is None:
        data = _source(text, "singleEmbeddingParams.text.source", Modality.TEXT, s3, s3_only=True)
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EmulatedError(
                "ValidationException", f"The S3 text object is not valid UTF-8: {exc}"
            ) from exc
        if len(value) > TEXT_MAX_LENGTH:
            raise EmulatedError(
                "ValidationException",
                f"The S3 text object has {len(value)} characters; the maximum is {TEXT_MAX_LENGTH}.",
            )
    if not value.strip():
        raise malformed("singleEmbeddingParams.text.value", "expected minLength: 1 (non-whitespace)")
    limit = entry.spec.limits.max_text_chars
    if mode == TruncationMode.NONE.value and len(value) > limit:
        raise EmulatedError(
            "ValidationException",
            f"Input text of {len(value)} characters exceeds the model's maximum of {limit} and "
            "truncationMode is NONE (use START or END to truncate).",
        )
    return Content(Modality.TEXT, text=value, truncation=TruncationMode(mode))


def _media(params: Obj, modality: Modality, s3: S3Store) -> Content:
    path = f"singleEmbeddingParams.{modality.value}"
    extra = {Modality.IMAGE: ("detailLevel",), Modality.VIDEO: ("embeddingMode",)}.get(modality, ())
    media = params.obj(modality.value, ("format", "source", *extra), required=True)
    assert media is not None
    fmt = media.enum("format", _FORMATS[modality], required=True)
    detail = DetailLevel.STANDARD_IMAGE
    mode = VideoMode.AUDIO_VIDEO_COMBINED
    if modality is Modality.IMAGE:
        level = media.enum("detailLevel", [d.value for d in DetailLevel])
        detail = DetailLevel(level) if level else detail
    if modality is Modality.VIDEO:
        mode = VideoMode(media.enum("embeddingMode", [v.value for v in VideoMode], required=True))
    media.raw("source", required=True)
    data = _source(media, f"{path}.source", modality, s3, s3_only=False)
    return Content(
        modality, data=data, format=normalize_format(fmt or ""), detail_level=detail, video_mode=mode
    )


def _source(parent: Obj, path: str, modality: Modality, s3: S3Store, *, s3_only: bool) -> bytes:
    source = Obj(parent.raw("source"), path, ("bytes", "s3Location"))
    if source.has("bytes") == source.has("s3Location"):
        raise malformed(path, "exactly one of [bytes, s3Location] must be present")
    encoded = source.string("bytes")
    if encoded is not None:
        if s3_only:
            raise malformed(path, "extraneous key [bytes] is not permitted (text sources must be s3Location)")
        if len(encoded) > INLINE_LIMIT:
            raise EmulatedError(
                "ValidationException",
                f"{path}.bytes is {len(encoded)} bytes after base64; the inline maximum is {INLINE_LIMIT}.",
            )
        data = decode_base64(encoded, f"{path}.bytes")
        if not data:
            raise malformed(f"{path}.bytes", "expected minLength: 1")
        return data
    location = source.obj("s3Location", ("uri", "bucketOwner"), required=True)
    assert location is not None
    uri = location.string("uri", required=True)
    assert uri is not None
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise malformed(f"{path}.s3Location.uri", f"{uri!r} does not match the pattern s3://bucket/key")
    owner = location.string("bucketOwner")
    if owner is not None and not _ACCOUNT.match(owner):
        raise malformed(f"{path}.s3Location.bucketOwner", f"{owner!r} is not a 12-digit AWS account id")
    data = s3.get(uri)
    if len(data) > _S3_LIMITS[modality]:
        raise EmulatedError(
            "ValidationException",
            f"The S3 object {uri} is {len(data)} bytes; the maximum for {modality.value} is "
            f"{_S3_LIMITS[modality]}.",
        )
    return data


def _respond(results: list[ProviderResult]) -> dict[str, Any]:
    out = []
    for emb in results[0].embeddings:
        item: dict[str, Any] = {
            "embeddingType": EmbeddingType(emb.type).value,
            "embedding": to_json(emb.vector),
        }
        if emb.truncated_char_length is not None:
            item["truncatedCharLength"] = emb.truncated_char_length
        out.append(item)
    return {"embeddings": out}
