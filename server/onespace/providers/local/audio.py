"""Audio: decode (libsndfile, PyAV as a fallback), then log mel-band energy statistics.

Decoding: soundfile reads WAV, OGG (Vorbis/Opus) and MP3 and reports the length from the header,
so over-long audio is refused before a sample is read; bytes it cannot open go to PyAV (FFmpeg).
Channels are averaged to mono. Sample rates outside 1-384 kHz are refused, and so is audio of more
than `max_audio_samples` samples (seconds x rate x channels, from the header). Blocks of at most
1 MiB are read and down-mixed one at a time (whatever the channel count), under a reservation in the
shared decode budget for the mono signal they make.

Truncated audio is refused, never embedded as if it were the whole: a WAV whose data chunk declares
more than the file holds, an Ogg stream ending inside a page, an MP3 shorter than its Xing/Info
header's byte count. (An MP3 without that header declares no length: cut between frames it is a
shorter valid stream, and FFmpeg and libsndfile drop a last partial frame.)

Features are sample-rate agnostic: 25 ms Hann frames (at most 300, evenly spread, so 30 s cost
the same as 3 s), power spectra pooled into 32 mel bands fixed in Hz (50 Hz to 8 kHz), logged with
a 40 dB floor below the loudest band (so faint noise cannot dominate), then summarised:

- spectral shape: the mean over frames of each frame's log spectrum minus its own mean (what it
  sounds like, independent of volume);
- variation: the standard deviation of each band over time;
- temporal: mean shape in 4 consecutive segments x 8 coarse bands, relative to the whole clip;
- loudness: the RMS level.

Silence (RMS below -100 dBFS) has only the constant bias feature, so it still embeds, always alike.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
import numpy.typing as npt
import soundfile as sf

from onespace.errors import InvalidArgument
from onespace.models import ModelSpec
from onespace.providers.local.avmedia import read_media
from onespace.providers.local.decoding import (
    Decoding,
    Truncated,
    check_duration,
    check_samples,
    decode_errors,
    decode_memory,
)
from onespace.providers.local.projection import Features, unit

__all__ = [
    "AUDIO_FEATURES",
    "Audio",
    "audio_features",
    "check_audio_complete",
    "decode_audio",
    "silence_features",
]

Audio = tuple[npt.NDArray[np.float32], int]  # mono samples in [-1, 1], sample rate

_BANDS = 32
_COARSE = 8
_SEGMENTS = 4
_F_MIN, _F_MAX = 50.0, 8000.0
_MAX_FRAMES = 300
_FLOOR_RATIO = 1e-4  # 40 dB
_SILENCE_RMS = 1e-5  # -100 dBFS
# Sample rates outside this range are refused: a forged header could otherwise ask for huge frames.
_MIN_RATE, _MAX_RATE = 1_000, 384_000
_READ_BLOCK = 1 << 16  # frames a block, fewer when many channels would make it over _BLOCK_BYTES
_BLOCK_BYTES = 1 << 20
_OVERHEAD_BYTES = 1 << 20
# WAVE format tags whose block align is one frame (PCM, float, A-law, mu-law, extensible).
_FRAMED_WAVE_TAGS = frozenset((1, 3, 6, 7, 0xFFFE))
_SIZES = (_BANDS, _BANDS, _SEGMENTS * _COARSE, 1, 1)
AUDIO_FEATURES = sum(_SIZES)
_WEIGHTS = (1.0, 0.5, 0.5, 0.2, 0.05)


def decode_audio(
    data: bytes, fmt: str, spec: ModelSpec, field: str = "content.audio", *, decoding: Decoding
) -> Audio:
    """Decode `data` to mono samples; InvalidArgument on bad or cut-short bytes, or audio over the
    length or sample limits. Waits for room in the decode budget before decoding."""
    with decode_errors(field, f"{fmt} audio"):
        check_audio_complete(data, fmt)
        try:
            handle: sf.SoundFile | None = sf.SoundFile(io.BytesIO(data))
        except Exception:  # libsndfile refuses it: FFmpeg gets a try before we give up
            handle = None
        if handle is None:
            audio = read_media(data, fmt, spec, field, video=False, decoding=decoding).audio
            if audio is None:
                raise InvalidArgument(field, f"the {fmt} data has no audio")
            return audio
        with handle:
            rate, channels, frames = int(handle.samplerate), int(handle.channels), int(handle.frames)
            if not _MIN_RATE <= rate <= _MAX_RATE:
                raise InvalidArgument(field, f"sample rate {rate} Hz is outside {_MIN_RATE}-{_MAX_RATE} Hz")
            check_duration(field, frames / rate, spec)
            how = f"{frames / rate:.1f} s x {rate} Hz x {channels} channels"
            check_samples(field, frames * channels, how, decoding.limits)
            block = max(1, min(_READ_BLOCK, _BLOCK_BYTES // (4 * channels)))
            with decode_memory(decoding.budget) as memory:
                # The mono blocks and their concatenation, one block of every channel, the decoder's own.
                memory.take(frames * 8 + block * channels * 4 + _OVERHEAD_BYTES)
                samples = _mono(handle, block)
            return samples, rate


def _mono(handle: sf.SoundFile, block: int) -> npt.NDArray[np.float32]:
    """Every frame down-mixed, read block by block: only the mono signal is ever held in full."""
    blocks = handle.blocks(blocksize=block, dtype="float32", always_2d=True)
    mono = [b.mean(axis=1, dtype=np.float32) for b in blocks]
    if not mono:
        raise ValueError("no audio samples")
    return np.concatenate(mono)


def check_audio_complete(data: bytes, fmt: str) -> None:
    """Raise Truncated when WAV, Ogg or MP3 bytes end before their headers say (see the module doc)."""
    if fmt == "wav":
        _check_wav(data)
    elif fmt == "ogg":
        _check_ogg(data)
    elif fmt == "mp3":
        _check_mp3(data)


def _check_wav(data: bytes) -> None:
    """The data chunk must hold what it declares (0 and 0xFFFFFFFF mean "unknown": streamed WAVs)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    pos, tag, align = 12, 0, 0
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if kind == b"fmt " and pos + 22 <= len(data):
            tag = int.from_bytes(data[pos + 8 : pos + 10], "little")
            align = int.from_bytes(data[pos + 20 : pos + 22], "little")
        elif kind == b"data":
            present = len(data) - pos - 8
            if size in (0, 0xFFFFFFFF) or size <= present:
                return
            if align and tag in _FRAMED_WAVE_TAGS:
                raise Truncated(
                    f"header declares {size // align} frames, {len(data)} bytes hold {present // align}"
                )
            raise Truncated(f"header declares {size} bytes of audio data, {len(data)} bytes hold {present}")
        pos += 8 + size + (size & 1)


def _check_ogg(data: bytes) -> None:
    """Walk the pages by their lengths: the last must end where the bytes do."""
    pos = 0
    while pos < len(data) and data[pos : pos + 4] == b"OggS":
        header = pos + 27
        if header > len(data) or header + data[pos + 26] > len(data):
            raise Truncated(f"{len(data)} bytes end inside the header of the Ogg page at byte {pos}")
        end = header + data[pos + 26] + sum(data[header : header + data[pos + 26]])
        if end > len(data):
            raise Truncated(
                f"{len(data)} bytes end inside the Ogg page at byte {pos}, which declares {end - pos} bytes"
            )
        pos = end


def _check_mp3(data: bytes) -> None:
    """An MP3 with a Xing/Info header (LAME writes one) must be as long as its byte count."""
    start = 0
    if data[:3] == b"ID3" and len(data) >= 10:  # ID3v2 tag: a synchsafe size, and a footer if flagged
        size = 0
        for byte in data[6:10]:
            size = size << 7 | (byte & 0x7F)
        start = 10 + size + (10 if data[5] & 0x10 else 0)
    for tag in (b"Xing", b"Info"):
        at = data.find(tag, start + 4, start + 64)  # in the first frame, after its side information
        if at < 0 or at + 16 > len(data):
            continue
        flags = int.from_bytes(data[at + 4 : at + 8], "big")
        if flags & 2:  # the byte count is present (after the frame count when that is)
            where = at + 8 + (4 if flags & 1 else 0)
            declared = int.from_bytes(data[where : where + 4], "big")
            if declared > len(data):
                name = tag.decode()
                raise Truncated(f"its {name} header declares {declared} bytes, {len(data)} are present")
        return


@functools.lru_cache(maxsize=16)
def _filterbank(rate: int, n_fft: int) -> tuple[tuple[int, npt.NDArray[np.float64]], ...]:
    """Per band: the first FFT bin and the triangular weights from there (empty above Nyquist)."""

    def mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def hz(m: float) -> float:
        return 700.0 * (math.pow(10.0, m / 2595.0) - 1.0)

    points = [hz(float(m)) for m in np.linspace(mel(_F_MIN), mel(_F_MAX), _BANDS + 2)]
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft
    bands = []
    for lo, mid, hi in zip(points, points[1:], points[2:], strict=False):
        if mid >= rate / 2:
            bands.append((0, np.zeros(0)))
            continue
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        weights = np.clip(np.minimum(rising, falling), 0.0, None)
        nonzero = np.flatnonzero(weights)
        if nonzero.size == 0:  # band narrower than one bin: take the bin nearest its centre
            nearest = int(np.argmin(np.abs(freqs - mid)))
            bands.append((nearest, np.ones(1)))
        else:
            bands.append((int(nonzero[0]), weights[nonzero[0] : nonzero[-1] + 1].copy()))
    return tuple(bands)


def _band_energies(samples: npt.NDArray[np.float32], rate: int) -> npt.NDArray[np.float64]:
    win = max(16, round(0.025 * rate))
    n_fft = 1 << (win - 1).bit_length()
    x = samples.astype(np.float64)
    if x.size < win:
        x = np.pad(x, (0, win - x.size))
    hop = max(round(0.010 * rate), math.ceil((x.size - win) / (_MAX_FRAMES - 1)))
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop] * np.hanning(win)
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    energies = np.zeros((frames.shape[0], _BANDS), dtype=np.float64)
    for band, (start, weights) in enumerate(_filterbank(rate, n_fft)):
        if weights.size:
            energies[:, band] = (power[:, start : start + weights.size] * weights).sum(axis=1)
    return energies


def silence_features() -> Features:
    """The features of silence: only the bias is non-zero."""
    out = np.zeros(AUDIO_FEATURES, dtype=np.float64)
    out[-1] = _WEIGHTS[-1]
    return out


def audio_features(samples: npt.NDArray[np.float32], rate: int) -> Features:
    """The feature vector (AUDIO_FEATURES long) of mono `samples` at `rate` Hz."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    if rms < _SILENCE_RMS:
        return silence_features()
    energies = _band_energies(samples, rate)
    log = np.log10(energies + energies.max() * _FLOOR_RATIO)
    shape = log - log.mean(axis=1, keepdims=True)
    mean_shape = shape.mean(axis=0)
    coarse = shape.reshape(shape.shape[0], _COARSE, _BANDS // _COARSE).mean(axis=2)
    segments = np.array_split(coarse, _SEGMENTS, axis=0)
    profile = np.stack([s.mean(axis=0) if s.size else coarse.mean(axis=0) for s in segments])
    loudness = np.clip((20.0 * math.log10(rms) + 60.0) / 60.0, 0.0, 1.5)
    blocks = (
        unit(mean_shape - mean_shape.mean(), floor=0.5),
        unit(log.std(axis=0), floor=0.5),
        unit((profile - coarse.mean(axis=0)).ravel(), floor=0.5),
        np.array([loudness]),
        np.ones(1),
    )
    return np.concatenate([block * w for block, w in zip(blocks, _WEIGHTS, strict=True)])
