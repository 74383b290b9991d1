"""One Content model for every input, format sniffing from magic bytes, and per-model checks.

Pure functions, no I/O: everything here runs on the event loop in microseconds. Decoding (which
can fail on bytes that merely look right) belongs to the providers and runs off the loop, but an
image's size is read from its header here, for every provider: a decompression bomb (a small file
declaring a huge picture) is refused before anything decodes it or sends it to Bedrock.

`MediaLimits` are the server's settings on what media may cost once decoded. They are a value, passed
to what needs them (`check` here; the local provider hands them to its decoders), never process
state: two gateways in one process may hold different limits.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
import struct
from dataclasses import dataclass, fields, replace

from onespace.errors import InvalidArgument
from onespace.models import Modality, ModelSpec

__all__ = [
    "Content",
    "DetailLevel",
    "EmbeddingType",
    "MediaLimits",
    "Modality",
    "Purpose",
    "TruncationMode",
    "VideoMode",
    "b64_size",
    "check",
    "check_pixels",
    "format_modality",
    "image_size",
    "normalize_format",
    "retrieval_purpose",
    "sniff_format",
]


class Purpose(enum.Enum):
    """Nova `embeddingPurpose` values."""

    GENERIC_INDEX = "GENERIC_INDEX"
    GENERIC_RETRIEVAL = "GENERIC_RETRIEVAL"
    TEXT_RETRIEVAL = "TEXT_RETRIEVAL"
    IMAGE_RETRIEVAL = "IMAGE_RETRIEVAL"
    VIDEO_RETRIEVAL = "VIDEO_RETRIEVAL"
    DOCUMENT_RETRIEVAL = "DOCUMENT_RETRIEVAL"
    AUDIO_RETRIEVAL = "AUDIO_RETRIEVAL"
    CLASSIFICATION = "CLASSIFICATION"
    CLUSTERING = "CLUSTERING"


class TruncationMode(enum.Enum):
    START = "START"
    END = "END"
    NONE = "NONE"


class DetailLevel(enum.Enum):
    STANDARD_IMAGE = "STANDARD_IMAGE"
    DOCUMENT_IMAGE = "DOCUMENT_IMAGE"


class VideoMode(enum.Enum):
    AUDIO_VIDEO_COMBINED = "AUDIO_VIDEO_COMBINED"
    AUDIO_VIDEO_SEPARATE = "AUDIO_VIDEO_SEPARATE"


class EmbeddingType(enum.Enum):
    """What one returned vector represents (Nova `embeddingType`)."""

    TEXT = "TEXT"
    IMAGE = "IMAGE"
    AUDIO = "AUDIO"
    VIDEO = "VIDEO"
    AUDIO_VIDEO_COMBINED = "AUDIO_VIDEO_COMBINED"


@dataclass(frozen=True, slots=True)
class Content:
    """Exactly one input. `data` holds media bytes, `text` the text, `s3_uri` a reference."""

    modality: Modality
    text: str | None = None
    data: bytes | None = None
    s3_uri: str | None = None
    format: str | None = None
    truncation: TruncationMode = TruncationMode.END
    detail_level: DetailLevel = DetailLevel.STANDARD_IMAGE
    video_mode: VideoMode = VideoMode.AUDIO_VIDEO_COMBINED
    s3_bucket_owner: str | None = None

    def digest(self) -> bytes:
        """A content hash covering everything that changes the vector (used for dedup and cache)."""
        h = hashlib.blake2b(digest_size=20)
        for part in (
            self.modality.value,
            self.format or "",
            self.truncation.value,
            self.detail_level.value,
            self.video_mode.value,
            self.s3_uri or "",
            self.s3_bucket_owner or "",
        ):
            h.update(part.encode())
            h.update(b"\0")
        if self.text is not None:
            h.update(self.text.encode("utf-8", "surrogatepass"))
        if self.data is not None:
            h.update(self.data)
        return h.digest()

    @property
    def size(self) -> int:
        """Payload size in bytes before base64 (UTF-8 for text)."""
        if self.data is not None:
            return len(self.data)
        if self.text is not None:
            return len(self.text.encode("utf-8", "surrogatepass"))
        return 0


@dataclass(frozen=True, slots=True)
class MediaLimits:
    """What one item's media may cost once decoded, and the memory all decodes share (settings
    `max_image_pixels`, `max_audio_samples`, `max_video_frames`, `decode_budget_bytes`).

    Encoded size says little: a 120 KB PNG can declare 6000x6000 pixels. Each bound is read from the
    header before decoding (and counted while decoding where a header does not say); over one, the
    item is refused with InvalidArgument naming the setting.
    """

    max_image_pixels: int = 40_000_000  # 40 MP: every common camera photo; ~160 MB decoded (RGB)
    max_audio_samples: int = 1 << 24  # seconds x rate x channels: 30 s of 8 channels at 64 kHz
    max_video_frames: int = 4000  # 30 s at 120 fps, and some
    decode_budget_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f"{f.name} must be positive, not {getattr(self, f.name)}")

    @classmethod
    def of(cls, settings: object) -> MediaLimits:
        """The limits an object with attributes of these names sets (the server's `Settings`)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


# The defaults, for callers that set none (libraries, tests): frozen, so sharing it shares no state.
_DEFAULT_LIMITS = MediaLimits()


_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (0, b"OggS", "ogg"),
    (0, b"ID3", "mp3"),
    (0, b"FLV\x01", "flv"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "wmv"),
    (0, b"\x00\x00\x01\xba", "mpeg"),
    (0, b"\x00\x00\x01\xb3", "mpeg"),
)
_FORMAT_ALIASES = {"jpg": "jpeg", "mpg": "mpeg", "qt": "mov", "matroska": "mkv", "3gpp": "3gp"}
_FORMAT_MODALITY = {
    **{f: Modality.IMAGE for f in ("png", "jpeg", "gif", "webp")},
    **{f: Modality.AUDIO for f in ("mp3", "wav", "ogg")},
    **{f: Modality.VIDEO for f in ("mp4", "mov", "mkv", "webm", "flv", "mpeg", "wmv", "3gp")},
}


def normalize_format(fmt: str) -> str:
    f = fmt.strip().lower().lstrip(".")
    return _FORMAT_ALIASES.get(f, f)


def format_modality(fmt: str) -> Modality | None:
    """The modality a file format (or file extension) belongs to, if known."""
    return _FORMAT_MODALITY.get(normalize_format(fmt))


def sniff_format(data: bytes) -> str | None:
    """The container format of `data` from its magic bytes, or None when unrecognised."""
    for offset, magic, fmt in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return fmt
    if data[:4] == b"RIFF" and len(data) >= 12:
        return {b"WEBP": "webp", b"WAVE": "wav"}.get(data[8:12])
    if len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0 and (data[1] & 0x06) != 0:
        return "mp3"  # MPEG audio frame sync without an ID3 tag
    if data[4:8] == b"ftyp" and len(data) >= 12:
        brand = data[8:12]
        if brand == b"qt  ":
            return "mov"
        if brand.startswith(b"3g"):
            return "3gp"
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in data[:64] else "mkv"
    return None


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...): they carry the size.
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_JPEG_SEGMENTS = 4096  # real files have a few dozen before the frame header (EXIF, ICC, XMP, tables)


def image_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) from an image's header, without decoding; None when the header is cut short
    or not understood (the decoder then has the last word). GIF: the logical screen; WEBP: the
    canvas; JPEG: the first start-of-frame segment."""
    try:
        if fmt == "png" and data[12:16] == b"IHDR":
            width, height = struct.unpack_from(">II", data, 16)
            return int(width), int(height)
        if fmt == "gif":
            width, height = struct.unpack_from("<HH", data, 6)
            return int(width), int(height)
        if fmt == "webp":
            return _webp_size(data)
        if fmt == "jpeg":
            return _jpeg_size(data)
    except struct.error:  # shorter than its header
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the marker segments up to the first start of frame (a handful, never the scan data; at
    most _JPEG_SEGMENTS, so forged bytes cannot hold the event loop)."""
    pos = 2
    for _ in range(_JPEG_SEGMENTS):
        if pos + 4 > len(data) or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            pos += 2
        elif marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        elif marker in _JPEG_SOF:
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return int(width), int(height)
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def check_pixels(
    field: str, width: int, height: int, spec: ModelSpec, limits: MediaLimits = _DEFAULT_LIMITS
) -> None:
    """Refuse an image over the model's pixel limit or the server's `max_image_pixels`."""
    pixels = width * height
    if spec.limits.max_image_pixels is not None and pixels > spec.limits.max_image_pixels:
        raise InvalidArgument(
            field,
            f"{width}x{height} = {pixels} pixels exceeds the limit of {spec.limits.max_image_pixels} "
            f"pixels for {spec.id}",
        )
    limit = limits.max_image_pixels
    if pixels > limit:
        raise InvalidArgument(
            field,
            f"{width}x{height} = {pixels} pixels exceeds the limit of {limit} pixels (max_image_pixels, "
            "a decompression bomb guard: refused before decoding)",
        )


def b64_size(n: int) -> int:
    """Size of `n` bytes after base64 encoding."""
    return 4 * math.ceil(n / 3)


_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>.+)$")


def check(
    content: Content, spec: ModelSpec, field: str = "content", limits: MediaLimits = _DEFAULT_LIMITS
) -> Content:
    """Validate `content` against what `spec` and the server's `limits` accept; return it with its
    format filled in.

    Raises InvalidArgument naming `field` and the reason. Text over the model's length limit
    passes when a truncation mode allows it (the provider truncates), and fails with NONE.
    """
    if content.modality not in spec.modalities:
        accepted = ", ".join(sorted(m.value for m in spec.modalities))
        raise InvalidArgument(
            field, f"model {spec.id} does not accept {content.modality.value} (accepts {accepted})"
        )
    if content.s3_uri is not None:
        return _check_s3(content, spec, field)
    if content.modality is Modality.TEXT:
        _check_text(content, spec, f"{field}.text")
        return content
    return _check_media(content, spec, f"{field}.{content.modality.value}", limits)


def _check_text(content: Content, spec: ModelSpec, field: str) -> None:
    text = content.text or ""
    if not text.strip():
        raise InvalidArgument(field, "must not be empty or only whitespace")
    limits = spec.limits
    if len(text) > limits.hard_max_text_chars:
        raise InvalidArgument(
            field, f"{len(text)} characters exceeds the maximum of {limits.hard_max_text_chars} for {spec.id}"
        )
    if len(text) > limits.max_text_chars and (
        content.truncation is TruncationMode.NONE or not spec.text_truncation
    ):
        raise InvalidArgument(
            field,
            f"{len(text)} characters exceeds the model limit of {limits.max_text_chars} for {spec.id} "
            "and truncation_mode is NONE (use START or END to truncate)",
        )


def _check_media(content: Content, spec: ModelSpec, field: str, limits: MediaLimits) -> Content:
    data = content.data or b""
    if not data:
        raise InvalidArgument(field, "must not be empty")
    encoded = b64_size(len(data))
    if encoded > spec.limits.max_inline_bytes:
        raise InvalidArgument(
            field,
            f"{len(data)} bytes ({encoded} after base64) exceeds the inline limit of "
            f"{spec.limits.max_inline_bytes} bytes for {spec.id}",
        )
    sniffed = sniff_format(data)
    declared = normalize_format(content.format) if content.format else None
    allowed = spec.limits.formats(content.modality)
    if declared is not None and declared not in allowed:
        raise InvalidArgument(
            f"{field.rsplit('.', 1)[0]}.format",
            f"{declared!r} is not a supported {content.modality.value} format for {spec.id} "
            f"(supported: {', '.join(allowed)})",
        )
    if sniffed is None:
        raise InvalidArgument(field, f"bytes are not a recognised {content.modality.value} format")
    if declared is not None and not _same_family(declared, sniffed):
        raise InvalidArgument(field, f"bytes are {sniffed}, not the declared format {declared!r}")
    fmt = declared or sniffed
    if format_modality(sniffed) is not content.modality:
        raise InvalidArgument(field, f"bytes are {sniffed}, which is not {content.modality.value}")
    if fmt not in allowed:
        raise InvalidArgument(
            field,
            f"{fmt} is not a supported {content.modality.value} format for {spec.id} "
            f"(supported: {', '.join(allowed) or 'none'})",
        )
    if content.modality is Modality.IMAGE and (size := image_size(data, fmt)) is not None:
        check_pixels(field, *size, spec, limits)
    return replace(content, format=fmt)


def _same_family(declared: str, sniffed: str) -> bool:
    """ISO-BMFF (mp4/mov/3gp) and Matroska (mkv/webm) brands overlap: accept either name."""
    families = ({"mp4", "mov", "3gp"}, {"mkv", "webm"}, {"mpeg"})
    return declared == sniffed or any(declared in f and sniffed in f for f in families)


def _check_s3(content: Content, spec: ModelSpec, field: str) -> Content:
    uri = content.s3_uri or ""
    if not spec.supports_s3:
        raise InvalidArgument(f"{field}.s3_uri", f"model {spec.id} does not accept s3:// references")
    if not _S3_URI.match(uri):
        raise InvalidArgument(f"{field}.s3_uri", f"{uri!r} is not of the form s3://bucket/key")
    if content.format:
        fmt = normalize_format(content.format)
    else:
        ext = uri.rsplit(".", 1)[-1] if "." in uri.rsplit("/", 1)[-1] else ""
        fmt = normalize_format(ext) if ext else ""
    if content.modality is Modality.TEXT:
        return replace(content, format=fmt or "txt")
    allowed = spec.limits.formats(content.modality)
    if fmt not in allowed:
        raise InvalidArgument(
            f"{field}.format",
            f"cannot tell a supported {content.modality.value} format for {uri!r} "
            f"(got {fmt or 'none'}; supported: {', '.join(allowed)})",
        )
    return replace(content, format=fmt)


def retrieval_purpose(held: frozenset[Modality] | set[Modality]) -> Purpose:
    """The query purpose matching what a collection holds (Nova: `*_RETRIEVAL` pairs with
    GENERIC_INDEX items of that modality; GENERIC_RETRIEVAL for a mixed or empty collection)."""
    if len(held) != 1:
        return Purpose.GENERIC_RETRIEVAL
    (only,) = held
    return {
        Modality.TEXT: Purpose.TEXT_RETRIEVAL,
        Modality.IMAGE: Purpose.IMAGE_RETRIEVAL,
        Modality.AUDIO: Purpose.AUDIO_RETRIEVAL,
        Modality.VIDEO: Purpose.VIDEO_RETRIEVAL,
    }[only]
