"""Media that costs more than it weighs, media cut short, and a way to set the media limits."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw

from onespace.content import MediaLimits
from onespace.providers.local.decoding import Decoding
from tests import media


def limited(**changes: Any) -> Decoding:
    """The default media limits with `changes`, and a decode budget of their own (pass it to the
    decoders, or `embed_content`, as the local provider passes its own)."""
    return Decoding.of(MediaLimits(**changes))


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims `width` x `height`: refused from the header, never decoded."""
    out = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 30, 30)).save(out, format="PNG")
    data = out.getvalue()
    chunk = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


def big_png(width: int = 6000, height: int = 6000, mode: str = "RGB") -> bytes:
    """A real `width` x `height` PNG of a few hundred KB (a flat picture compresses ~1000:1)."""
    img = Image.new(mode, (width, height), (30, 120, 200, 255)[: len(mode)])
    ImageDraw.Draw(img).ellipse(
        (width // 6, height // 6, width * 2 // 3, height * 5 // 6), fill=(255, 30, 0, 128)[: len(mode)]
    )
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def encoded(img: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


@functools.cache
def picture(width: int, height: int, seed: int = 3, alpha: bool = False) -> Image.Image:
    """media.image_array stretched to `width` x `height`, with a rippled alpha channel if asked."""
    base = Image.fromarray(media.image_array(seed, 64)).resize((width, height), Image.Resampling.BICUBIC)
    if not alpha:
        return base
    yy, xx = np.mgrid[0:height, 0:width]
    ripple = 127.5 + 127.5 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    base.putalpha(Image.fromarray(ripple.astype(np.uint8), "L"))
    return base


def mp4_index_first(seconds: float = 2.0, workdir: Path | None = None) -> bytes:
    """media.mp4 remuxed with its index (`moov`) before the data, as streaming services serve it."""
    assert workdir is not None
    target = workdir / "faststart.mp4"
    with (
        av.open(io.BytesIO(media.mp4(1, seconds=seconds)), mode="r") as source,
        av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return target.read_bytes()


def raw_h264(frames: int, size: int = 32) -> bytes:
    """An H.264 elementary stream: no container, so no duration or frame count is declared."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="h264") as container:
        stream = container.add_stream("libx264", rate=8)
        assert isinstance(stream, av.VideoStream)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast"}
        base = media.image_array(1, size)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(base, i, axis=1)), "rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, 8)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()
