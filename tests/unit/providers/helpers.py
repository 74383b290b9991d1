"""Small shared helpers for the local provider tests."""

from __future__ import annotations

import numpy as np

from onespace.content import Content, Modality, Purpose, TruncationMode, VideoMode
from onespace.models import LOCAL_MODEL
from onespace.providers.base import EmbedInput, Vector
from onespace.providers.local import embed_content
from tests import media


def text(value: str, truncation: TruncationMode = TruncationMode.END) -> Content:
    return Content(Modality.TEXT, text=value, truncation=truncation)


def image(data: bytes, fmt: str | None = None) -> Content:
    return Content(Modality.IMAGE, data=data, format=fmt)


def audio(data: bytes, fmt: str | None = None) -> Content:
    return Content(Modality.AUDIO, data=data, format=fmt)


def video(data: bytes, mode: VideoMode = VideoMode.AUDIO_VIDEO_COMBINED, fmt: str | None = None) -> Content:
    return Content(Modality.VIDEO, data=data, format=fmt, video_mode=mode)


def vector(content: Content, dimension: int = 3072, index: int = 0) -> Vector:
    return embed_content(content, dimension).embeddings[index].vector


def cos(a: Vector, b: Vector) -> float:
    return float(np.dot(a.astype(np.float64), b.astype(np.float64)))


def assert_unit(v: Vector, dimension: int) -> None:
    assert v.dtype == np.float32
    assert v.shape == (dimension,)
    assert np.all(np.isfinite(v))
    assert abs(float(np.linalg.norm(v.astype(np.float64))) - 1.0) < 1e-5


def mixed_inputs(dimension: int = 256, purpose: Purpose = Purpose.GENERIC_INDEX) -> list[EmbedInput]:
    """One input of every modality for the local model (a video in two embeddings), texts first
    and last."""
    contents = [
        text("first"),
        image(media.png(1)),
        audio(media.wav(440)),
        video(media.mp4(1), VideoMode.AUDIO_VIDEO_SEPARATE),
        text("last"),
    ]
    return [EmbedInput(c, LOCAL_MODEL.id, dimension, purpose) for c in contents]
