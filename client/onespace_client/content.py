"""Builders for `Content` messages: text, inline media from bytes or files, S3 URIs, and paths.

`from_path` picks the modality from the file extension, the one convention the CLI's folder
ingest relies on; the media *format* is left empty so the server sniffs it from magic bytes
(an extension can lie, the bytes cannot).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeAlias, TypeVar

from onespace_client import enums
from onespace_client.v1 import common_pb2

__all__ = [
    "EXTENSIONS",
    "BytesOrPath",
    "ContentLike",
    "audio",
    "from_path",
    "image",
    "modality_for_path",
    "s3",
    "text",
    "to_content",
    "video",
]

Content = common_pb2.Content
BytesOrPath: TypeAlias = bytes | str | os.PathLike[str]
# A `str` is text to embed; a path object is a file to read; a Content is sent as is.
ContentLike: TypeAlias = common_pb2.Content | str | os.PathLike[str]

EXTENSIONS: dict[str, enums.Modality] = {
    **dict.fromkeys((".txt", ".md"), common_pb2.MODALITY_TEXT),
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".gif", ".webp"), common_pb2.MODALITY_IMAGE),
    **dict.fromkeys((".wav", ".mp3", ".ogg"), common_pb2.MODALITY_AUDIO),
    **dict.fromkeys(
        (".mp4", ".mov", ".mkv", ".webm", ".flv", ".mpeg", ".mpg", ".wmv", ".3gp"), common_pb2.MODALITY_VIDEO
    ),
}
_TRUNCATION = {
    "start": common_pb2.TRUNCATION_MODE_START,
    "end": common_pb2.TRUNCATION_MODE_END,
    "none": common_pb2.TRUNCATION_MODE_NONE,
}
_DETAIL = {
    "standard": common_pb2.DETAIL_LEVEL_STANDARD_IMAGE,
    "document": common_pb2.DETAIL_LEVEL_DOCUMENT_IMAGE,
}
_VIDEO_MODE = {
    "combined": common_pb2.VIDEO_EMBEDDING_MODE_AUDIO_VIDEO_COMBINED,
    "separate": common_pb2.VIDEO_EMBEDDING_MODE_AUDIO_VIDEO_SEPARATE,
}


_E = TypeVar("_E", bound=int)


def _choice(table: dict[str, _E], kind: str, value: str) -> _E:
    try:
        return table[value.lower()]
    except KeyError:
        raise ValueError(f"unknown {kind} {value!r}; expected one of: {', '.join(table)}") from None


def _read(data: BytesOrPath) -> bytes:
    return data if isinstance(data, bytes) else Path(data).read_bytes()


def text(value: str, *, truncation: str | None = None) -> common_pb2.Content:
    """Text content; `truncation` is "start", "end" (the server default) or "none" (refuse long text)."""
    msg = Content(text=value)
    if truncation is not None:
        msg.truncation_mode = _choice(_TRUNCATION, "truncation", truncation)
    return msg


def image(data: BytesOrPath, format: str | None = None, *, detail: str | None = None) -> common_pb2.Content:
    """An inline image from bytes or a file; `detail` is "standard" or "document" (text-heavy pages)."""
    msg = Content(image=_read(data), format=format or "")
    if detail is not None:
        msg.detail_level = _choice(_DETAIL, "detail level", detail)
    return msg


def audio(data: BytesOrPath, format: str | None = None) -> common_pb2.Content:
    """Inline audio from bytes or a file."""
    return Content(audio=_read(data), format=format or "")


def video(data: BytesOrPath, format: str | None = None, *, mode: str | None = None) -> common_pb2.Content:
    """Inline video from bytes or a file; `mode` "separate" returns a video and an audio vector."""
    msg = Content(video=_read(data), format=format or "")
    if mode is not None:
        msg.video_embedding_mode = _choice(_VIDEO_MODE, "video mode", mode)
    return msg


def s3(
    uri: str,
    modality: enums.ModalityLike | None = None,
    *,
    format: str | None = None,
    bucket_owner: str | None = None,
) -> common_pb2.Content:
    """An object in S3, read by the provider itself; the modality defaults to the key's extension."""
    if not uri.startswith("s3://"):
        raise ValueError(f"s3 uri must start with s3://, got {uri!r}")
    msg = Content(s3_uri=uri, format=format or "", s3_bucket_owner=bucket_owner or "")
    if modality is not None:
        msg.s3_modality = enums.modality(modality)
    return msg


def modality_for_path(path: str | os.PathLike[str]) -> enums.Modality:
    """The modality a file's extension stands for; ValueError names the supported extensions."""
    suffix = Path(path).suffix.lower()
    try:
        return EXTENSIONS[suffix]
    except KeyError:
        known = " ".join(sorted(EXTENSIONS))
        what = f"extension {suffix!r}" if suffix else "no extension"
        raise ValueError(f"{os.fspath(path)}: unsupported file type ({what}); supported: {known}") from None


def from_path(path: str | os.PathLike[str]) -> common_pb2.Content:
    """A file as Content: text files are read as UTF-8 text, media files inline as bytes."""
    kind = modality_for_path(path)
    if kind == common_pb2.MODALITY_TEXT:
        return Content(text=Path(path).read_text(encoding="utf-8"))
    data = Path(path).read_bytes()
    if kind == common_pb2.MODALITY_IMAGE:
        return Content(image=data)
    if kind == common_pb2.MODALITY_AUDIO:
        return Content(audio=data)
    return Content(video=data)


def to_content(value: ContentLike) -> common_pb2.Content:
    """Accepts what the client's methods accept: Content as is, `str` as text, a path object as a file."""
    if isinstance(value, common_pb2.Content):
        return value
    if isinstance(value, str):
        return Content(text=value)
    return from_path(value)
