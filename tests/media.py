"""Deterministic synthetic media for tests: every function returns the bytes of a small file.

Nothing is shipped as a file: pictures are drawn from a seed, sounds are tones, videos are a
picture sliding sideways with a tone underneath. The same arguments give the same bytes
(encoders run single-threaded, containers are written bit-exact); different seeds give unrelated
pictures, `freq_hz=0` gives silence.

Formats: images PNG, JPEG, GIF, WEBP; audio WAV, OGG (stereo Vorbis), MP3 (libsndfile's LAME), and a WAV
holding AC-3 (only FFmpeg decodes it); video MP4, MOV, MKV, WEBM, FLV, MPEG, WMV, 3GP (PyAV's
bundled FFmpeg encoders).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import soundfile as sf
from PIL import Image, ImageDraw

__all__ = [
    "VIDEO_FORMATS",
    "gif",
    "image_array",
    "jpeg",
    "mkv",
    "mov",
    "mp3",
    "mp4",
    "noisy_variant_png",
    "ogg",
    "png",
    "tone",
    "video",
    "wav",
    "wav_ac3",
    "webm",
    "webp",
    "write_catalog",
]

# ---------------------------------------------------------------- images


def image_array(seed: int, size: int = 64) -> npt.NDArray[np.uint8]:
    """An RGB picture: a two-colour gradient background with a few coloured shapes on it."""
    rng = np.random.default_rng(seed)
    c0, c1 = rng.integers(0, 256, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = np.clip(0.5 + (xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle), 0, 1)[..., None]
    background = (c0 * (1 - t) + c1 * t).astype(np.uint8)
    img = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = rng.integers(0, max(1, size * 3 // 4), size=2)
        w, h = rng.integers(max(1, size // 6), max(2, size // 2), size=2)
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        box = (int(x0), int(y0), int(x0 + w), int(y0 + h))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    return np.asarray(img, dtype=np.uint8)


def _encode_image(pixels: npt.NDArray[np.uint8], fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format=fmt, **options)
    return out.getvalue()


def png(seed: int, size: int = 64) -> bytes:
    return _encode_image(image_array(seed, size), "PNG")


def jpeg(seed: int, size: int = 64, quality: int = 90) -> bytes:
    return _encode_image(image_array(seed, size), "JPEG", quality=quality)


def gif(seed: int, size: int = 64) -> bytes:
    return _encode_image(image_array(seed, size), "GIF")


def webp(seed: int, size: int = 64, quality: int = 90) -> bytes:
    return _encode_image(image_array(seed, size), "WEBP", quality=quality)


def noisy_variant_png(seed: int, noise: float = 6.0, brightness: float = 1.0, size: int = 64) -> bytes:
    """png(seed) with Gaussian pixel noise (std `noise` levels) and scaled brightness: near-identical."""
    rng = np.random.default_rng(seed + 1_000_003)
    pixels = image_array(seed, size).astype(np.float64) * brightness
    pixels += rng.normal(0.0, noise, size=pixels.shape)
    return _encode_image(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "PNG")


# ---------------------------------------------------------------- audio


def tone(
    freq_hz: float, seconds: float = 1.0, sample_rate: int = 16000, noise: float = 0.0, seed: int = 0
) -> npt.NDArray[np.float32]:
    """A sine with two soft harmonics and 10 ms fades, peak about 0.5, plus optional white noise."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    x = 0.4 * np.sin(2 * np.pi * freq_hz * t) + 0.1 * np.sin(4 * np.pi * freq_hz * t)
    x += 0.05 * np.sin(6 * np.pi * freq_hz * t)
    fade = min(int(0.01 * sample_rate), x.size // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        x[:fade] *= ramp
        x[x.size - fade :] *= ramp[::-1]
    if noise:
        x += np.random.default_rng(seed).normal(0.0, noise, size=x.size)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _encode_audio(samples: npt.NDArray[np.float32], sample_rate: int, fmt: str, subtype: str) -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, sample_rate, format=fmt, subtype=subtype)
    return out.getvalue()


def wav(
    freq_hz: float, seconds: float = 1.0, sample_rate: int = 16000, noise: float = 0.0, seed: int = 0
) -> bytes:
    return _encode_audio(tone(freq_hz, seconds, sample_rate, noise, seed), sample_rate, "WAV", "PCM_16")


def ogg(
    freq_hz: float, seconds: float = 1.0, sample_rate: int = 16000, noise: float = 0.0, seed: int = 0
) -> bytes:
    """Stereo Ogg Vorbis, written by FFmpeg: libsndfile would pick a random Ogg stream serial, and
    FFmpeg's own Vorbis encoder (experimental, stereo only) writes reproducible bytes."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="ogg", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("vorbis", rate=sample_rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "stereo"
        stream.codec_context.options = {"strict": "experimental"}
        _encode_track(container, stream, tone(freq_hz, seconds, sample_rate, noise, seed), sample_rate)
    return out.getvalue()


def mp3(
    freq_hz: float, seconds: float = 1.0, sample_rate: int = 16000, noise: float = 0.0, seed: int = 0
) -> bytes:
    samples = tone(freq_hz, seconds, sample_rate, noise, seed)
    return _encode_audio(samples, sample_rate, "MP3", "MPEG_LAYER_III")


def wav_ac3(freq_hz: float, seconds: float = 1.0, sample_rate: int = 48000) -> bytes:
    """A WAV container holding AC-3: valid for FFmpeg, refused by libsndfile (tests the fallback).

    AC-3 takes 32, 44.1 or 48 kHz only.
    """
    out = io.BytesIO()
    with av.open(out, mode="w", format="wav", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("ac3", rate=sample_rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono"
        _encode_track(container, stream, tone(freq_hz, seconds, sample_rate), sample_rate)
    return out.getvalue()


# ---------------------------------------------------------------- video


@dataclass(frozen=True)
class _Recipe:
    container: str
    video_codec: str
    audio_codec: str
    audio_rate: int
    fps: int | None = None  # the only rate the codec accepts near the requested one (MPEG-1)
    audio_bit_rate: int | None = None


_RECIPES = {
    "mp4": _Recipe("mp4", "libx264", "aac", 16000),
    "mov": _Recipe("mov", "libx264", "aac", 16000),
    "mkv": _Recipe("matroska", "libx264", "libmp3lame", 16000),
    "webm": _Recipe("webm", "libvpx", "libopus", 48000),
    "flv": _Recipe("flv", "flv", "libmp3lame", 22050),
    "mpeg": _Recipe("mpeg", "mpeg1video", "mp2", 32000, fps=25),
    "wmv": _Recipe("asf", "wmv2", "wmav2", 16000, audio_bit_rate=32000),
    "3gp": _Recipe("3gp", "libx264", "aac", 16000),
}
VIDEO_FORMATS = tuple(_RECIPES)


def video(
    fmt: str,
    seed: int,
    seconds: float = 1.0,
    fps: int = 8,
    size: int = 64,
    with_audio: bool = True,
    freq_hz: float = 440.0,
    with_video: bool = True,
) -> bytes:
    """A `fmt` clip of image_array(seed) sliding right one pixel per frame, over a `freq_hz` tone.

    MPEG-1 only knows broadcast frame rates, so "mpeg" clips are always 25 fps. `with_video=False`
    writes the audio track alone (a video container without a picture).
    """
    recipe = _RECIPES[fmt]
    fps = recipe.fps or fps
    out = io.BytesIO()
    with av.open(out, mode="w", format=recipe.container, options={"fflags": "+bitexact"}) as container:
        vstream = container.add_stream(recipe.video_codec, rate=fps) if with_video else None
        if vstream is not None:
            assert isinstance(vstream, av.VideoStream)
            vstream.width = vstream.height = size
            vstream.pix_fmt = "yuv420p"
            vstream.codec_context.thread_count = 1
            if recipe.video_codec == "libx264":
                vstream.codec_context.options = {"preset": "ultrafast"}
        astream = container.add_stream(recipe.audio_codec, rate=recipe.audio_rate) if with_audio else None
        if astream is not None:
            assert isinstance(astream, av.AudioStream)
            astream.layout = "mono"
            if recipe.audio_bit_rate:
                astream.bit_rate = recipe.audio_bit_rate
        if vstream is not None:
            base = image_array(seed, size)
            for i in range(round(seconds * fps)):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(base, i, axis=1)), "rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, fps)
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode(None))
        if astream is not None:
            _encode_track(container, astream, tone(freq_hz, seconds, recipe.audio_rate), recipe.audio_rate)
    return out.getvalue()


def _encode_track(
    container: av.container.OutputContainer,
    stream: av.AudioStream,
    samples: npt.NDArray[np.float32],
    rate: int,
) -> None:
    """Encode mono `samples` into `stream`, copied to every channel of the stream's layout."""
    ctx = stream.codec_context
    layout = stream.layout.name
    channels = len(stream.layout.channels)
    resampler = av.AudioResampler(
        format=ctx.format, layout=layout, rate=rate, frame_size=ctx.frame_size or None
    )
    planes = np.ascontiguousarray(np.repeat(samples[None, :], channels, axis=0))
    source = av.AudioFrame.from_ndarray(planes, format="fltp", layout=layout)
    source.sample_rate = rate
    source.pts = 0
    source.time_base = Fraction(1, rate)
    for frame in [*resampler.resample(source), *resampler.resample(None)]:
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def mp4(seed: int, seconds: float = 1.0, fps: int = 8, size: int = 64, with_audio: bool = True) -> bytes:
    return video("mp4", seed, seconds, fps, size, with_audio)


def mov(seed: int, seconds: float = 1.0, fps: int = 8, size: int = 64, with_audio: bool = True) -> bytes:
    return video("mov", seed, seconds, fps, size, with_audio)


def mkv(seed: int, seconds: float = 1.0, fps: int = 8, size: int = 64, with_audio: bool = True) -> bytes:
    return video("mkv", seed, seconds, fps, size, with_audio)


def webm(seed: int, seconds: float = 1.0, fps: int = 8, size: int = 64, with_audio: bool = True) -> bytes:
    return video("webm", seed, seconds, fps, size, with_audio)


# ---------------------------------------------------------------- catalog

_TEXTS = {
    "cats.txt": "Cats sleep most of the day and hunt small animals at night.",
    "kittens.txt": "A kitten sleeps all day and plays with a small ball of yarn at night.",
    "markets.txt": "Stock markets fell sharply on Monday as bond yields rose worldwide.",
    "recipe.txt": "Whisk the eggs with sugar, fold in the flour and bake for twenty minutes.",
}


def write_catalog(directory: Path) -> list[Path]:
    """Write a small mixed catalog (texts, PNG and JPEG images, WAV audio, a short MP4) to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {name: text.encode() for name, text in _TEXTS.items()}
    files |= {
        "sunset.png": png(1),
        "forest.png": png(2),
        "harbour.jpg": jpeg(3),
        "a440.wav": wav(440.0, seconds=0.5),
        "a880.wav": wav(880.0, seconds=0.5),
        "clip.mp4": mp4(4, seconds=1.0),
    }
    paths = []
    for name, data in sorted(files.items()):
        path = directory / name
        path.write_bytes(data)
        paths.append(path)
    return paths
