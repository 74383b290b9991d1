"""Images: decode with Pillow, then colour and layout features in CIELAB.

Every image is flattened onto white (alpha), oriented by its EXIF tag, and box-filtered to a 64x64
grid, so size and encoding (PNG vs re-encoded JPEG) hardly matter. Features, each a block:

- colour: a soft (trilinear) 5x5x5 histogram over L*a*b*, square-rooted (Hellinger) and centred;
  soft bins keep a small brightness or noise change from jumping bins;
- layout: an 8x8 grid of mean L*a*b* with each channel's mean removed (where things are);
- structure: 8-bin gradient-orientation histograms over a 4x4 grid of the lightness (edges);
- statistics: mean and spread of each channel (overall tone).

The same featuriser serves video frames (already decoded to RGB by PyAV).

Decoding costs what the picture declares, not what the file weighs (a 120 KB PNG may hold 6000x6000
pixels), so it is bounded before any pixel is decoded:

- the header's width x height against the model's and the server's `max_image_pixels`;
- only the 64x64 grid is needed, so JPEG decodes at 1/2 to 1/8 scale (`Image.draft`: any JPEG over
  1024 pixels a side decodes to an eighth of each);
- an image of up to 4 MP (as decoded) is oriented, flattened and resized whole, as it always was;
  a larger one a band of rows at a time: each band is oriented, flattened and box-filtered to 64
  columns, then one vertical pass makes the grid. That is how Pillow's two-pass box resize works
  (rows first, each alone, into an 8-bit intermediate), so the grid is the whole-image one bit for
  bit, except where a Pillow version filters a tall image's columns first (then within rounding).
  Either way the only full-size buffer is the decoded image itself: 4 bytes a pixel for RGB(A), 1 for
  palette or grey, WEBP 16 with libwebp's canvases (the whole path adds 16 a pixel for its copies).
  The decode reserves that estimate in the shared decode budget before `load()`;
- an image narrower than 64 pixels is stretched to 64 columns by that first pass, so 64 x its length
  counts against `max_image_pixels` too (a 1 x 40,000,000 PNG would need 10 GB);
- a file cut short is refused: PNG must reach its IEND chunk, WEBP its RIFF length; JPEG and GIF are
  refused by Pillow when the picture's data ends early (a GIF's first frame is all that is read: a
  cut in later frames changes nothing embedded and is accepted).
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image

from onespace.content import MediaLimits, check_pixels
from onespace.errors import InvalidArgument
from onespace.models import ModelSpec
from onespace.providers.local.decoding import Decoding, Truncated, decode_errors, decode_memory, short_reason
from onespace.providers.local.projection import Features, unit

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "GRID",
    "IMAGE_FEATURES",
    "Rgb",
    "check_image_complete",
    "decode_image",
    "decoded_bytes",
    "image_features",
]

Rgb = npt.NDArray[np.uint8]
GRID = 64
# Pixel limit when the settings change none (`MediaLimits.max_image_pixels`): larger is refused
# before decoding, a decompression bomb guard independent of Pillow's global MAX_IMAGE_PIXELS.
DEFAULT_MAX_PIXELS = MediaLimits().max_image_pixels

# Images over _WHOLE pixels are oriented, flattened and box-filtered a band of _BAND pixels at a time.
_WHOLE = 1 << 22
_BAND = 1 << 18
# Bytes a pixel takes in Pillow's memory by mode: every mode not listed is stored in 4.
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_WEBP_EXTRA_BYTES = 12  # libwebp's canvas and previous frame, and the frame copied out as bytes
_COPY_BYTES = 16  # an image's (or band's) crop or orientation, RGBA, the white backdrop, the RGB result
_OVERHEAD_BYTES = 1 << 20
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset(method for tag, method in _ORIENTATION.items() if tag >= 5)  # width <-> height

_HIST_BINS = 5
_LAYOUT = 8
_CELLS = 4
_ORIENTATIONS = 8
_SIZES = (_HIST_BINS**3, _LAYOUT * _LAYOUT * 3, _CELLS * _CELLS * _ORIENTATIONS, 6, 1)
IMAGE_FEATURES = sum(_SIZES)
_WEIGHTS = (1.0, 0.9, 0.7, 1.0, 0.05)
_WHITE_D65 = (0.95047, 1.0, 1.08883)
_RGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)


def decode_image(
    data: bytes, fmt: str, spec: ModelSpec, field: str = "content.image", *, decoding: Decoding
) -> Rgb:
    """Decode `data` to a GRID x GRID RGB array; InvalidArgument on bad or cut-short bytes, or too
    many pixels. Waits for room in the decode budget before decoding."""
    with decode_errors(field, f"{fmt} image"), decode_memory(decoding.budget) as memory:
        check_image_complete(data, fmt)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            reason = f"too many pixels to decode safely (decompression bomb guard): {short_reason(exc)}"
            raise InvalidArgument(field, reason) from exc
        try:
            check_pixels(field, *img.size, spec, decoding.limits)
            _check_stretch(field, img.size, decoding.limits)
            img.draft("RGB", (GRID * 2, GRID * 2))  # JPEG: decode at a reduced scale, much faster
            memory.take(decoded_bytes(img.size, img.mode, fmt))
            img.load()
            grid = _grid(img, _ORIENTATION.get(img.getexif().get(ExifTags.Base.Orientation, 1)))
        finally:
            img.close()  # frees the pixels before the reservation ends (`with img` closes only the file)
    return grid


def _grid(img: Image.Image, method: Image.Transpose | None) -> Rgb:
    """The GRID x GRID RGB array of the loaded `img`, oriented (its copies are gone on return)."""
    if img.width * img.height <= _WHOLE:
        flat = _flatten(img.transpose(method) if method is not None else img)
    else:
        flat = _to_grid_columns(img, method)
    return np.asarray(flat.resize((GRID, GRID), Image.Resampling.BOX), dtype=np.uint8)


def decoded_bytes(size: tuple[int, int], mode: str, fmt: str) -> int:
    """The peak memory `decode_image` needs for an image of `size` and (Pillow) `mode`."""
    width, height = size
    pixels = width * height
    per_pixel = _MODE_BYTES.get(mode, 4) + (_WEBP_EXTRA_BYTES if fmt == "webp" else 0)
    copied = pixels if pixels <= _WHOLE else min(pixels, max(_BAND, width, height))
    return pixels * per_pixel + copied * _COPY_BYTES + GRID * max(width, height) * 4 + _OVERHEAD_BYTES


def _check_stretch(field: str, size: tuple[int, int], limits: MediaLimits) -> None:
    """Refuse an image so narrow that stretching it to GRID columns goes over `max_image_pixels`."""
    width, height = size
    stretched = GRID * max(width, height)
    limit = limits.max_image_pixels
    if min(width, height) < GRID and stretched > limit:
        raise InvalidArgument(
            field,
            f"{width}x{height} is stretched to {GRID} pixels across before it is scaled down: {stretched} "
            f"pixels exceeds the limit of {limit} pixels (max_image_pixels)",
        )


def _to_grid_columns(img: Image.Image, method: Image.Transpose | None) -> Image.Image:
    """The oriented, flattened image box-filtered to GRID columns (rows kept), a band at a time.

    Pillow's box resize filters rows first, each alone, into an 8-bit GRID-wide image, then columns;
    doing the first pass per band gives that intermediate, without the full-size copies.
    """
    width, height = img.size
    across, down = (height, width) if method in _SWAPS_AXES else (width, height)
    out = Image.new("RGB", (GRID, down))
    rows = max(1, _BAND // across)
    for top in range(0, down, rows):
        bottom = min(down, top + rows)
        band = img.crop(_source_box(method, width, height, top, bottom))
        if method is not None:
            band = band.transpose(method)
        out.paste(_flatten(band).resize((GRID, bottom - top), Image.Resampling.BOX), (0, top))
    return out


def _source_box(
    method: Image.Transpose | None, width: int, height: int, top: int, bottom: int
) -> tuple[int, int, int, int]:
    """The region of the stored image that rows [top, bottom) of the oriented image come from."""
    if method in (Image.Transpose.ROTATE_180, Image.Transpose.FLIP_TOP_BOTTOM):
        return 0, height - bottom, width, height - top
    if method in (Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270):
        return top, 0, bottom, height
    if method in (Image.Transpose.ROTATE_90, Image.Transpose.TRANSVERSE):
        return width - bottom, 0, width - top, height
    return 0, top, width, bottom  # as stored, or mirrored left to right


def check_image_complete(data: bytes, fmt: str) -> None:
    """Raise Truncated when a PNG ends before its IEND chunk or a WEBP before its RIFF length."""
    if fmt == "png":
        _check_png(data)
    elif fmt == "webp" and len(data) >= 8:
        declared = int.from_bytes(data[4:8], "little") + 8
        if declared > len(data):
            raise Truncated(f"the RIFF header declares {declared} bytes, {len(data)} are present")


def _check_png(data: bytes) -> None:
    """Walk the chunks by their lengths (one step a chunk, never their data) to IEND."""
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8].decode("latin-1")
        if pos + 12 + length > len(data):
            raise Truncated(
                f"{len(data)} bytes end inside the {kind!r} chunk at byte {pos}, which declares "
                f"{length} bytes of data"
            )
        if kind == "IEND":
            return
        pos += 12 + length
    raise Truncated(f"{len(data)} bytes end before the IEND chunk")


def _flatten(img: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white (transparent pixels' colours are arbitrary)."""
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if not has_alpha:
        return img.convert("RGB")
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    return background.convert("RGB")


def _lab(rgb: Rgb) -> Features:
    """sRGB (D65) to CIELAB, element-wise (no BLAS, so bit-stable); shape (H, W, 3)."""
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = lin[..., 0], lin[..., 1], lin[..., 2]
    xyz = [(m[0] * r + m[1] * g + m[2] * b) / w for m, w in zip(_RGB_TO_XYZ, _WHITE_D65, strict=True)]
    delta = 6.0 / 29.0
    fx, fy, fz = (np.where(t > delta**3, np.cbrt(t), t / (3 * delta**2) + 4.0 / 29.0) for t in xyz)
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def _soft_index(
    values: Features, low: float, step: float, bins: int
) -> tuple[npt.NDArray[np.intp], Features]:
    """Lower bin index and the fraction towards the next bin (linear interpolation between centres)."""
    pos = np.clip((values - low) / step, 0.0, bins - 1.0)
    lower = np.minimum(np.floor(pos).astype(np.intp), bins - 2)
    return lower, pos - lower


def _colour_histogram(lab: Features) -> Features:
    axes = (
        _soft_index(lab[..., 0].ravel(), 0.0, 25.0, _HIST_BINS),
        _soft_index(lab[..., 1].ravel(), -60.0, 30.0, _HIST_BINS),
        _soft_index(lab[..., 2].ravel(), -60.0, 30.0, _HIST_BINS),
    )
    hist = np.zeros(_HIST_BINS**3, dtype=np.float64)
    for corner in range(8):
        index = np.zeros_like(axes[0][0])
        weight = np.ones_like(axes[0][1])
        for axis, (lower, frac) in enumerate(axes):
            upper = (corner >> axis) & 1
            index = index * _HIST_BINS + lower + upper
            weight = weight * (frac if upper else 1.0 - frac)
        hist += np.bincount(index, weights=weight, minlength=hist.size)
    root = np.sqrt(hist / hist.sum())
    return unit(root - root.mean())


def _layout(lab: Features) -> Features:
    step = GRID // _LAYOUT
    cells = lab.reshape(_LAYOUT, step, _LAYOUT, step, 3).mean(axis=(1, 3)) / 100.0
    centred = cells - cells.mean(axis=(0, 1))
    return unit(centred.ravel(), floor=1.0)


def _structure(lightness: Features) -> Features:
    """Gradient-orientation histograms of a 32x32 lightness map (halved first: less pixel noise)."""
    half = GRID // 2
    small = lightness.reshape(half, 2, half, 2).mean(axis=(1, 3))
    gy, gx = np.gradient(small)
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi) / (np.pi / _ORIENTATIONS)
    lower = np.floor(angle).astype(np.intp) % _ORIENTATIONS
    frac = angle - np.floor(angle)
    upper = (lower + 1) % _ORIENTATIONS
    step = half // _CELLS
    rows, cols = np.indices((half, half))
    cell = (rows // step) * _CELLS + cols // step
    size = _CELLS * _CELLS * _ORIENTATIONS
    hist = np.bincount((cell * _ORIENTATIONS + lower).ravel(), (magnitude * (1 - frac)).ravel(), size)
    hist += np.bincount((cell * _ORIENTATIONS + upper).ravel(), (magnitude * frac).ravel(), size)
    root = np.sqrt(hist)
    return unit(root - root.mean(), floor=8.0)


def _statistics(lab: Features) -> Features:
    flat = lab.reshape(-1, 3)
    mean = flat.mean(axis=0) - np.array([50.0, 0.0, 0.0])
    return np.concatenate([mean, flat.std(axis=0)]) / 100.0


def image_features(rgb: Rgb) -> Features:
    """The feature vector (IMAGE_FEATURES long) of a GRID x GRID RGB image."""
    if rgb.shape != (GRID, GRID, 3):
        rgb = np.asarray(Image.fromarray(rgb).convert("RGB").resize((GRID, GRID), Image.Resampling.BOX))
    lab = _lab(rgb)
    blocks = (_colour_histogram(lab), _layout(lab), _structure(lab[..., 0]), _statistics(lab), np.ones(1))
    return np.concatenate([block * w for block, w in zip(blocks, _WEIGHTS, strict=True)])
