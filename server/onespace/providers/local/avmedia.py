"""PyAV (FFmpeg) demuxing: sampled video frames and the audio track, in one pass, bounded in memory.

Frames are sampled with a decimating reservoir instead of by the container's declared duration
(which may be missing or wrong): every `stride`-th decoded frame is kept as a small RGB thumbnail,
and when the reservoir fills, every other one is dropped and the stride doubles. At most
`_RESERVOIR` thumbnails are held, and the picks spread evenly over the frames actually decoded.

Audio is resampled to 16 kHz mono float while decoding. Media over the length limit is refused
from the declared duration when there is one, otherwise as soon as decoding passes the limit.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import av
import numpy as np
import numpy.typing as npt

from onespace.errors import InvalidArgument
from onespace.models import ModelSpec
from onespace.providers.local.decoding import DURATION_TOLERANCE_SECONDS, check_duration, decode_errors
from onespace.providers.local.image import GRID, Rgb

__all__ = ["AUDIO_RATE", "Media", "read_media"]

AUDIO_RATE = 16_000
_RESERVOIR = 32


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


def read_media(data: bytes, fmt: str, spec: ModelSpec, field: str, *, video: bool, frames: int = 4) -> Media:
    """Decode a container: up to `frames` evenly spread frames when `video`, and its audio track.

    With `video`, a container without a video stream is refused; without, one without audio.
    """
    kind = "video" if video else "audio"
    with decode_errors(field, f"{fmt} {kind}"), av.open(io.BytesIO(data), mode="r") as container:
        vstream = container.streams.video[0] if video and container.streams.video else None
        astream = container.streams.audio[0] if container.streams.audio else None
        if (vstream if video else astream) is None:
            raise InvalidArgument(field, f"the {fmt} data has no {kind} stream")
        if container.duration is not None and container.duration > 0:
            check_duration(field, container.duration / av.time_base, spec)
        limit = spec.limits.max_media_seconds + DURATION_TOLERANCE_SECONDS
        reservoir = _Reservoir()
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        chunks: list[npt.NDArray[np.float32]] = []
        end = 0.0
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
                    reservoir.offer(frame)
                else:
                    chunks.extend(f.to_ndarray()[0] for f in resampler.resample(frame))
        if astream is not None:
            chunks.extend(f.to_ndarray()[0] for f in resampler.resample(None))
        if video and not reservoir.kept:
            raise InvalidArgument(field, f"the {fmt} video stream has no decodable frames")
        audio = None
        if astream is not None and chunks:
            samples = np.concatenate(chunks).astype(np.float32, copy=False)
            check_duration(field, samples.size / AUDIO_RATE, spec)
            audio = (samples, AUDIO_RATE)
        elif not video:
            raise InvalidArgument(field, f"the {fmt} audio stream has no decodable samples")
        return Media(frames=reservoir.pick(frames) if video else [], audio=audio)
