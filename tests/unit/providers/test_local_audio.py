from __future__ import annotations

import struct

import numpy as np
import pytest

from onespace.content import EmbeddingType
from onespace.errors import InvalidArgument
from onespace.models import LOCAL_MODEL
from onespace.providers.local import embed_content
from onespace.providers.local.audio import audio_features, decode_audio, silence_features
from onespace.providers.local.avmedia import read_media
from onespace.providers.local.decoding import Decoding
from tests import media

from .helpers import assert_unit, audio, cos, vector


@pytest.mark.parametrize(
    ("fmt", "data"),
    [("wav", media.wav(440)), ("ogg", media.ogg(440)), ("mp3", media.mp3(440)), ("wav", media.wav_ac3(440))],
    ids=["wav", "ogg", "mp3", "wav-ac3"],
)
def test_each_audio_format_decodes_and_embeds(fmt: str, data: bytes) -> None:
    result = embed_content(audio(data), 384)
    assert [e.type for e in result.embeddings] == [EmbeddingType.AUDIO]
    assert_unit(result.embeddings[0].vector, 384)
    assert cos(result.embeddings[0].vector, vector(audio(media.wav(440)), 384)) > 0.85


def test_libsndfile_refusals_fall_back_to_ffmpeg() -> None:
    samples, rate = decode_audio(media.wav_ac3(440, seconds=0.5), "wav", LOCAL_MODEL, decoding=Decoding.of())
    assert rate == 16_000  # FFmpeg's path resamples to 16 kHz
    assert abs(samples.size - 8000) < 1024  # AC-3 pads to whole frames


def test_soundfile_and_ffmpeg_decoding_agree() -> None:
    data = media.wav(660, seconds=0.5)
    sf_samples, sf_rate = decode_audio(data, "wav", LOCAL_MODEL, decoding=Decoding.of())
    av = read_media(data, "wav", LOCAL_MODEL, "content.audio", video=False, decoding=Decoding.of())
    av_audio = av.audio
    assert av_audio is not None
    a, b = audio_features(sf_samples, sf_rate), audio_features(*av_audio)
    assert float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)) > 0.99


def test_same_audio_same_vector_bit_for_bit() -> None:
    assert vector(audio(media.mp3(300))).tobytes() == vector(audio(media.mp3(300))).tobytes()


@pytest.mark.parametrize("freq", [220.0, 440.0, 1000.0])
def test_same_tone_scores_closer_than_other_tones(freq: float) -> None:
    base = vector(audio(media.wav(freq)))
    same = [
        media.wav(freq, noise=0.02, seed=1),
        media.wav(freq, seconds=2.0),
        media.wav(freq, sample_rate=44100),
        media.ogg(freq),
    ]
    others = [g for g in (220.0, 440.0, 1000.0, 2500.0) if g != freq]
    closest_other = max(cos(base, vector(audio(media.wav(g)))) for g in others)
    for data in same:
        assert cos(base, vector(audio(data))) > closest_other + 0.3


def test_silence_embeds_deterministically_whatever_its_length() -> None:
    a, b = vector(audio(media.wav(0.0, seconds=0.5))), vector(audio(media.wav(0.0, seconds=2.0)))
    assert_unit(a, 3072)
    assert a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(audio_features(np.zeros(100, dtype=np.float32), 8000), silence_features())


def test_very_short_audio_embeds() -> None:
    assert_unit(vector(audio(media.wav(440, seconds=0.005))), 3072)


def test_audio_over_30_seconds_is_refused() -> None:
    with pytest.raises(InvalidArgument) as info:
        embed_content(audio(media.wav(440, seconds=45.0, sample_rate=4000)), 256)
    assert info.value.field == "content.audio"
    assert info.value.reason.startswith("duration 45.0 s exceeds the 30 s limit")


def test_audio_of_30_seconds_is_accepted() -> None:
    assert_unit(vector(audio(media.wav(440, seconds=30.0, sample_rate=4000)), 256), 256)


def test_garbage_audio_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as info:
        embed_content(audio(b"RIFF\x00\x00\x00\x00WAVE" + b"\x01" * 64), 256)
    assert info.value.field == "content.audio"
    assert info.value.reason.startswith("cannot decode wav audio: ")


@pytest.mark.parametrize("data", [media.wav(440)[:30], media.ogg(440)[:60]], ids=["wav", "ogg"])
def test_truncated_audio_is_invalid_argument(data: bytes) -> None:
    with pytest.raises(InvalidArgument) as info:
        embed_content(audio(data), 256)
    assert info.value.field == "content.audio"
    assert "cannot decode" in info.value.reason


def test_forged_sample_rate_is_refused() -> None:
    data = bytearray(media.wav(440, seconds=0.1))
    struct.pack_into("<II", data, 24, 2_000_000_000, 4_000_000_000)  # fmt chunk: rate, byte rate
    with pytest.raises(InvalidArgument) as info:
        embed_content(audio(bytes(data)), 256)
    assert info.value.field == "content.audio"
    assert "sample rate 2000000000 Hz" in info.value.reason


def test_stereo_is_mixed_to_mono() -> None:
    stereo = media.ogg(440)
    samples, rate = decode_audio(stereo, "ogg", LOCAL_MODEL, decoding=Decoding.of())
    assert samples.ndim == 1 and rate == 16_000
