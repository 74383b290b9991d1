"""Video: a few evenly spread frames (image features) plus the audio track (audio features).

- VIDEO (separate mode): the mean image features of the sampled frames, projected like an image,
  so a still clip scores close to a picture of the same scene.
- AUDIO (separate mode): the audio track embedded exactly as an audio file would be; a video
  without an audio track gets the embedding of silence (the same vector for every silent video).
- AUDIO_VIDEO_COMBINED: 0.8 x the frames' direction + 0.6 x the audio's direction (each unit
  length before projecting, so one linear projection of the joined features); visual only when
  there is no audio track.

`video_terms` returns features, not vectors: the caller projects them with the rest of its batch.
"""

from __future__ import annotations

import numpy as np

from onespace.content import EmbeddingType, VideoMode
from onespace.models import ModelSpec
from onespace.providers.local.audio import audio_features, silence_features
from onespace.providers.local.avmedia import read_media
from onespace.providers.local.decoding import Decoding
from onespace.providers.local.image import image_features
from onespace.providers.local.projection import Features, Term

__all__ = ["SAMPLED_FRAMES", "video_terms"]

SAMPLED_FRAMES = 4
_VISUAL_WEIGHT = 0.8
_AUDIO_WEIGHT = 0.6


def _norm(x: Features) -> float:
    return float(np.sqrt(np.sum(x * x)))


def video_terms(
    data: bytes,
    fmt: str,
    mode: VideoMode,
    spec: ModelSpec,
    field: str = "content.video",
    *,
    decoding: Decoding,
) -> list[tuple[EmbeddingType, list[Term]]]:
    """What `mode` asks for, (VIDEO, AUDIO) or (AUDIO_VIDEO_COMBINED,), each as the projected
    features to add up: a vector is sum(project(features) * scale) over its terms."""
    media = read_media(data, fmt, spec, field, video=True, decoding=decoding, frames=SAMPLED_FRAMES)
    frames = np.mean([image_features(f) for f in media.frames], axis=0)
    sound = audio_features(*media.audio) if media.audio is not None else None
    if mode is VideoMode.AUDIO_VIDEO_SEPARATE:
        audio = sound if sound is not None else silence_features()
        return [
            (EmbeddingType.VIDEO, [("image", frames, None)]),
            (EmbeddingType.AUDIO, [("audio", audio, None)]),
        ]
    # The projection is linear: scaling projected vectors = projecting unit-length features.
    combined: list[Term] = [("image", frames, _VISUAL_WEIGHT / _norm(frames))]
    if sound is not None:
        combined.append(("audio", sound, _AUDIO_WEIGHT / _norm(sound)))
    return [(EmbeddingType.AUDIO_VIDEO_COMBINED, combined)]
