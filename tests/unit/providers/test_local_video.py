from __future__ import annotations

import av
import numpy as np
import pytest

from onespace.content import EmbeddingType, VideoMode
from onespace.errors import InvalidArgument
from onespace.providers.local import embed_content
from onespace.providers.local.avmedia import _Reservoir
from tests import media

from .helpers import assert_unit, audio, cos, image, vector, video

SEPARATE = VideoMode.AUDIO_VIDEO_SEPARATE


@pytest.mark.parametrize("fmt", media.VIDEO_FORMATS)
def test_each_video_format_decodes_and_embeds(fmt: str) -> None:
    data = media.video(fmt, 1)
    result = embed_content(video(data), 1024)
    assert [e.type for e in result.embeddings] == [EmbeddingType.AUDIO_VIDEO_COMBINED]
    assert_unit(result.embeddings[0].vector, 1024)
    # the same clip in another container and codec lands close to the MP4 one
    assert cos(result.embeddings[0].vector, vector(video(media.mp4(1)), 1024)) > 0.85


def test_separate_mode_returns_video_then_audio() -> None:
    result = embed_content(video(media.mp4(2), SEPARATE), 256)
    assert [e.type for e in result.embeddings] == [EmbeddingType.VIDEO, EmbeddingType.AUDIO]
    for embedding in result.embeddings:
        assert_unit(embedding.vector, 256)
        assert embedding.truncated_char_length is None


def test_same_video_same_vectors_bit_for_bit() -> None:
    a = embed_content(video(media.webm(3), SEPARATE), 3072).embeddings
    b = embed_content(video(media.webm(3), SEPARATE), 3072).embeddings
    assert [e.vector.tobytes() for e in a] == [e.vector.tobytes() for e in b]


def test_separate_vectors_match_their_modalities() -> None:
    clip = video(media.mp4(5), SEPARATE)  # picture 5 over a 440 Hz tone
    visual, sound = vector(clip, index=0), vector(clip, index=1)
    assert cos(visual, vector(image(media.png(5)))) > cos(visual, vector(image(media.png(6)))) + 0.3
    assert cos(sound, vector(audio(media.wav(440)))) > cos(sound, vector(audio(media.wav(1500)))) + 0.3


def test_video_without_audio_gets_the_silence_audio_vector() -> None:
    result = embed_content(video(media.mp4(6, with_audio=False), SEPARATE), 3072).embeddings
    silence = vector(audio(media.wav(0.0)))
    assert result[1].vector.tobytes() == silence.tobytes()


def test_combined_without_audio_is_the_visual_vector() -> None:
    data = media.mp4(6, with_audio=False)
    np.testing.assert_allclose(vector(video(data)), vector(video(data, SEPARATE)), atol=1e-6)


def test_combined_mixes_picture_and_sound() -> None:
    data = media.mp4(7)
    combined, visual, sound = (
        vector(video(data)),
        vector(video(data, SEPARATE)),
        vector(video(data, SEPARATE), 3072, 1),
    )
    assert 0.5 < cos(combined, visual) < 0.99
    assert 0.3 < cos(combined, sound) < 0.99


def test_different_pictures_score_lower_than_the_same_picture() -> None:
    base = vector(video(media.mp4(8, seconds=2.0), SEPARATE))
    assert (
        cos(base, vector(video(media.mkv(8), SEPARATE)))
        > cos(base, vector(video(media.mkv(9), SEPARATE))) + 0.3
    )


def test_many_frames_are_sampled_across_the_clip() -> None:
    reservoir = _Reservoir()
    for i in range(100):
        pixels = np.full((16, 16, 3), i, dtype=np.uint8)
        reservoir.offer(av.VideoFrame.from_ndarray(pixels, "rgb24"))
    assert len(reservoir.kept) <= 32
    picked = [int(np.median(frame)) for frame in reservoir.pick(4)]
    assert picked == sorted(picked)
    assert picked[0] <= 25 and picked[-1] >= 75


def test_longer_clip_with_many_frames_embeds() -> None:
    assert_unit(vector(video(media.mp4(9, seconds=6.0, fps=12, size=32)), 256), 256)


def test_video_over_30_seconds_is_refused() -> None:
    data = media.mp4(1, seconds=32.0, fps=1, size=16, with_audio=False)
    with pytest.raises(InvalidArgument) as info:
        embed_content(video(data), 256)
    assert info.value.field == "content.video"
    assert "exceeds the 30 s limit" in info.value.reason


def test_container_without_a_picture_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as info:
        embed_content(video(media.video("mp4", 1, with_video=False)), 256)
    assert info.value.field == "content.video"
    assert "no video stream" in info.value.reason


@pytest.mark.parametrize(("fmt", "keep"), [("mp4", 0.5), ("mov", 0.9), ("webm", 0.01), ("mkv", 0.01)])
def test_truncated_video_is_invalid_argument(fmt: str, keep: float) -> None:
    """MP4/MOV keep their index at the end; Matroska streams decode up to a cut, so cut early."""
    data = media.video(fmt, 2)
    with pytest.raises(InvalidArgument) as info:
        embed_content(video(data[: int(len(data) * keep)]), 256)
    assert info.value.field == "content.video"


def test_matroska_cut_mid_stream_embeds_what_it_holds() -> None:
    data = media.mkv(2, seconds=2.0)
    assert_unit(vector(video(data[: len(data) // 2]), 256), 256)


def test_garbage_video_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as info:
        embed_content(video(b"\x00\x00\x00\x18ftypisom" + b"\xff" * 200), 256)
    assert info.value.field == "content.video"
    assert info.value.reason.startswith("cannot decode mp4 video: ")
