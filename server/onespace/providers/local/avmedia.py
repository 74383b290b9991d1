"""PyAV (FFmpeg) demuxing: sampled video frames and the audio track, in one pass, bounded in memory.

Frames are sampled with a decimating reservoir instead of by the container's declared duration
(which may be missing or wrong): every `stride`-th decoded frame is kept as a small RGB thumbnail,
and when the reservoir fills, every other one is dropped and the stride doubles. At most
`_RESERVOIR` thumbnails are held, and the picks spread evenly over the frames actually decoded.

Audio is resampled to 16 kHz mono float while decoding. Media over the length limit is refused
from the declared duration when there is one, otherwise as soon as decoding passes the limit.

What decoding costs is bounded before the first packet is decoded, from the container's header:
frames of more than `max_image_pixels`, more than `max_video_frames` frames (its frame count, or
duration x frame rate) or more than `max_audio_samples` samples (duration x rate x channels) are
refused, and the same counts are kept while decoding for containers that do not declare them. The
decode then reserves its estimate in the shared decode budget: the frames a decoder holds at once
(reference and threaded frames: `_FRAME_BYTES` a pixel, measured 5-9 for H.264 and VP8) plus the
16 kHz audio and the thumbnails. (Opening the container probes the first frames; that runs before.)

Truncation: MP4/MOV/3GP must hold every top-level box they start and a `moov` (the index, which
muxers usually write last): cut anywhere, they are refused. Matroska/WEBM, FLV, MPEG and WMV are
stream formats (recordings of live streams routinely end mid-cluster): they decode as far as the
bytes go, and are refused only when FFmpeg finds no frame at all.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import av
import numpy as np
import numpy.typing as npt

from onespace.content import MediaLimits
from onespace.errors import InvalidArgument
from onespace.models import ModelSpec
from onespace.providers.local.decoding import (
    DURATION_TOLERANCE_SECONDS,
    Decoding,
    Truncated,
    check_duration,
    check_frames,
    check_samples,
    decode_errors,
    decode_memory,
)
from onespace.providers.local.image import GRID, Rgb

__all__ = ["AUDIO_RATE", "Media", "check_container_complete", "read_media"]

AUDIO_RATE = 16_000
_RESERVOIR = 32
_FRAME_BYTES = 16  # decoded-frame memory a pixel of frame size (up to ~10 frames of yuv420)
_OVERHEAD_BYTES = 4 << 20
_ISO_BMFF = frozenset(("mp4", "mov", "3gp"))


@dataclass(slots=True)
class _Reservoir:
    kept: list[Rgb] = field(default_factory=list)
    stride: int = 1
    seen: int = 0

    def offer(self, frame: av.VideoFrame) -> None:
        if self.seen % self.stride == 0:
            thumb = frame.to_ndarray(format="rgb24", width=GRID, height=GRID, interpolation="AREA")
            self.kept.append(np.ascontiguousarray(thumb, dtype=np.uint8))
            if len(self.kept) > _RESERVOIR:
                self.kept = self.kept[::2]
                self.stride *= 2
        self.seen += 1

    def pick(self, count: int) -> list[Rgb]:
        n = len(self.kept)
        if n <= count:
            return list(self.kept)
        return [self.kept[int((i + 0.5) * n / count)] for i in range(count)]


@dataclass(frozen=True, slots=True)
class Media:
    """What a container held: sampled frames (empty unless asked for) and mono 16 kHz audio."""

    frames: list[Rgb]
    audio: tuple[npt.NDArray[np.float32], int] | None


def read_media(
    data: bytes, fmt: str, spec: ModelSpec, field: str, *, video: bool, decoding: Decoding, frames: int = 4
) -> Media:
    """Decode a container: up to `frames` evenly spread frames when `video`, and its audio track.

    With `video`, a container without a video stream is refused; without, one without audio.
    """
    kind = "video" if video else "audio"
    with decode_errors(field, f"{fmt} {kind}"), decode_memory(decoding.budget) as memory:
        check_container_complete(data, fmt)
        with av.open(io.BytesIO(data), mode="r") as container:
            vstream = container.streams.video[0] if video and container.streams.video else None
            astream = container.streams.audio[0] if container.streams.audio else None
            if (vstream if video else astream) is None:
                raise InvalidArgument(field, f"the {fmt} data has no {kind} stream")
            seconds = None
            if container.duration is not None and container.duration > 0:
                seconds = container.duration / av.time_base
                check_duration(field, seconds, spec)
            frame_pixels = _check_declared(field, vstream, astream, seconds, decoding.limits)
            audio_bytes = math.ceil((spec.limits.max_media_seconds + 1) * AUDIO_RATE) * 4 * 2
            memory.take(frame_pixels * _FRAME_BYTES + audio_bytes + _OVERHEAD_BYTES)
            media = _decode(
                container, vstream, astream, fmt, spec, field, decoding.limits, video=video, frames=frames
            )
    return media


def _check_declared(
    field: str,
    vstream: av.VideoStream | None,
    astream: av.AudioStream | None,
    seconds: float | None,
    limits: MediaLimits,
) -> int:
    """Refuse what the header says is too much to decode; return the declared frame size in pixels."""
    frame_pixels = 0
    if vstream is not None:
        width, height = vstream.codec_context.width, vstream.codec_context.height
        frame_pixels = width * height
        _check_frame_size(field, width, height, limits)
        declared = vstream.frames
        how = "declared by the container"
        rate = vstream.average_rate or vstream.guessed_rate
        if not declared and seconds is not None and rate:
            declared = math.floor(seconds * float(rate))
            how = f"{seconds:.1f} s x {float(rate):g} fps"
        if declared:
            check_frames(field, declared, how, limits)
    if astream is not None and seconds is not None and astream.rate:
        channels = astream.layout.nb_channels
        samples = math.floor(seconds * astream.rate) * channels
        check_samples(field, samples, f"{seconds:.1f} s x {astream.rate} Hz x {channels} channels", limits)
    return frame_pixels


def _check_frame_size(field: str, width: int, height: int, limits: MediaLimits) -> None:
    limit = limits.max_image_pixels
    if width * height > limit:
        raise InvalidArgument(
            field,
            f"frames of {width}x{height} = {width * height} pixels exceed the limit of {limit} pixels "
            "(max_image_pixels)",
        )


def _decode(
    container: av.container.InputContainer,
    vstream: av.VideoStream | None,
    astream: av.AudioStream | None,
    fmt: str,
    spec: ModelSpec,
    field: str,
    limits: MediaLimits,
    *,
    video: bool,
    frames: int,
) -> Media:
    limit = spec.limits.max_media_seconds + DURATION_TOLERANCE_SECONDS
    max_frames = limits.max_video_frames
    reservoir = _Reservoir()
    resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
    chunks: list[npt.NDArray[np.float32]] = []
    end = 0.0
    samples = 0
    for packet in container.demux([s for s in (vstream, astream) if s is not None]):
        for frame in packet.decode():
            if not isinstance(frame, av.VideoFrame | av.AudioFrame):
                continue
            if frame.time is not None:
                end = max(end, float(frame.time))
                if end > limit:
                    raise InvalidArgument(
                        field,
                        f"duration exceeds the {spec.limits.max_media_seconds:g} s limit of {spec.id} "
                        f"(still decoding at {end:.1f} s)",
                    )
            if isinstance(frame, av.VideoFrame):
                _check_frame_size(field, frame.width, frame.height, limits)
                if reservoir.seen >= max_frames:
                    check_frames(field, reservoir.seen + 1, "counted while decoding", limits)
                reservoir.offer(frame)
            else:
                samples += frame.samples * len(frame.layout.channels)
                check_samples(field, samples, "counted while decoding", limits)
                chunks.extend(f.to_ndarray()[0] for f in resampler.resample(frame))
    if astream is not None:
        chunks.extend(f.to_ndarray()[0] for f in resampler.resample(None))
    if video and not reservoir.kept:
        raise InvalidArgument(field, f"the {fmt} video stream has no decodable frames")
    audio = None
    if astream is not None and chunks:
        decoded = np.concatenate(chunks).astype(np.float32, copy=False)
        check_duration(field, decoded.size / AUDIO_RATE, spec)
        audio = (decoded, AUDIO_RATE)
    elif not video:
        raise InvalidArgument(field, f"the {fmt} audio stream has no decodable samples")
    return Media(frames=reservoir.pick(frames) if video else [], audio=audio)


def check_container_complete(data: bytes, fmt: str) -> None:
    """Raise Truncated when an ISO-BMFF container (MP4, MOV, 3GP) ends before its boxes say."""
    if fmt in _ISO_BMFF:
        _check_boxes(data)


def _check_boxes(data: bytes) -> None:
    """Walk the top-level boxes by their sizes (a handful: ftyp, moov, mdat, ...)."""
    pos = 0
    seen: set[bytes] = set()
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        header = 8
        if size == 1:  # a 64-bit size follows the type
            if pos + 16 > len(data):
                break
            size, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:  # the box runs to the end of the file
            seen.add(kind)
            pos = len(data)
            break
        if size < header:  # not a box size: corrupt, the decoder will say so
            return
        if pos + size > len(data):
            name = kind.decode("latin-1")
            raise Truncated(
                f"{len(data)} bytes end inside the {name!r} box at byte {pos}, which declares {size} bytes"
            )
        seen.add(kind)
        pos += size
    if b"moov" not in seen:
        raise Truncated(f"{len(data)} bytes hold no 'moov' box (the index, which muxers usually write last)")
